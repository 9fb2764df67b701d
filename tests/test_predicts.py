"""`collapse compare`'s rank correlation between each final metric and the final accuracies:
Kendall's τ-b in plain Python against hand-computed cases and scipy, and its table."""

from __future__ import annotations

import csv
import random

import pytest

from collapse_cli.reading.compare import compare_runs
from collapse_cli.reading.predicts import kendall_tau_b, predictors

from .synthetic import write_run, write_sweep


def test_kendall_tau_b_of_hand_computed_cases() -> None:
    # One discordant pair (2, 3) of six: (5 − 1) / 6.
    assert kendall_tau_b([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)
    # Ties: pairs (0, 1) tied in x, (1, 2) tied in y, the other four concordant:
    # 4 / √((6 − 1)(6 − 1)) = 0.8 (τ-a would say 4/6).
    assert kendall_tau_b([1, 1, 2, 3], [1, 2, 2, 3]) == pytest.approx(0.8)
    assert kendall_tau_b([3, 2, 1], [1, 2, 3]) == -1.0
    assert kendall_tau_b([1, 1, 1], [1, 2, 3]) is None  # a constant variable ranks nothing
    assert kendall_tau_b([1.0], [2.0]) is None
    with pytest.raises(ValueError, match="3 x values but 2 y values"):
        kendall_tau_b([1, 2, 3], [1, 2])


def test_kendall_tau_b_agrees_with_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = random.Random(0)
    for n in (3, 7, 25):
        x = [rng.choice([0.1, 0.2, 0.3, 0.5]) for _ in range(n)]  # many ties
        y = [rng.random() if i % 3 else 0.5 for i in range(n)]
        theirs = stats.kendalltau(x, y, variant="b").statistic
        assert kendall_tau_b(x, y) == pytest.approx(theirs, abs=1e-12)


def runs_with(tmp_path, finals):
    paths = []
    for i, final in enumerate(finals):
        config = {"name": "r", "seed": 0, "loss": {"name": "infonce", "temperature": 0.1 * i + 0.1}}
        paths.append(write_run(tmp_path / f"20260101-00000{i}-r", config, final))
    return paths


def test_compare_ranks_each_metric_against_the_accuracies(tmp_path, cli) -> None:
    # effective_rank orders the four runs as kNN does; rankme in reverse; lidar with one swap.
    finals = [
        {"effective_rank": 4.0, "rankme": 9.0, "lidar": 2.0, "knn_acc": 0.2, "probe_acc": 0.3},
        {"effective_rank": 6.0, "rankme": 8.0, "lidar": 4.0, "knn_acc": 0.4, "probe_acc": 0.5},
        {"effective_rank": 8.0, "rankme": 7.0, "lidar": 3.0, "knn_acc": 0.6, "probe_acc": 0.5},
        {"effective_rank": 9.0, "rankme": 6.0, "lidar": 5.0, "knn_acc": 0.9, "probe_acc": 0.8},
    ]
    paths = runs_with(tmp_path, finals)
    result = compare_runs(paths, figures=False)
    p = result.predictors
    assert p is not None and p.targets == ["knn_acc", "probe_acc"] and p.runs == 4
    taus = {r.metric: r.taus for r in p.rows}
    assert taus["effective_rank"]["knn_acc"] == 1.0 and taus["rankme"]["knn_acc"] == -1.0
    assert taus["lidar"]["knn_acc"] == pytest.approx(4 / 6)
    # probe ties runs 2 and 3: lidar's pairs (2, 3) tied in y, the other five concordant
    assert taus["lidar"]["probe_acc"] == pytest.approx(5 / (6 * 5) ** 0.5)
    assert {r.metric for r in p.rows[:2]} == {"rankme", "effective_rank"}  # |τ| = 1 first
    out = cli("compare", *paths, "--runs-dir", tmp_path)
    assert out.exit_code == 0, out.output
    assert "which metric tracks accuracy" in out.output and "Kendall τ-b over 4 runs" in out.output
    assert "τ vs kNN accuracy" in out.output and "+0.67" in out.output


def test_too_few_runs_say_so_and_no_accuracy_shows_nothing(tmp_path, cli) -> None:
    paths = runs_with(tmp_path, [{"effective_rank": 4.0, "knn_acc": 0.2}] * 2)
    out = cli("compare", *paths, "--runs-dir", tmp_path)
    assert out.exit_code == 0 and "2 runs with a final accuracy" in out.output
    assert "needs at least 3" in out.output
    assert predictors([{"effective_rank": 4.0}] * 5) is None  # no accuracy: no table


def test_a_sweep_correlates_over_its_completed_runs(tmp_path, cli) -> None:
    points = [
        {"params": {"optimizer.lr": lr}, "seed": seed,
         "final": {"effective_rank": 10 * lr + seed, "knn_acc": 0.1 * lr + 0.01 * seed}}
        for lr in (1, 2, 3) for seed in (0, 1)
    ]  # fmt: skip
    sweep = write_sweep(tmp_path, {"optimizer.lr": [1, 2, 3]}, points, [0, 1])
    out = cli("compare", sweep)
    assert out.exit_code == 0, out.output
    assert "Kendall τ-b over 6 runs" in out.output and "+1.00" in out.output


# --------------------------------------------------------------------------- --table
# Four runs; the last has no probe accuracy, so τ against it is over three runs.
EXPORTED = [
    {"effective_rank": 4.0, "rankme": 9.0, "lidar": 2.0, "knn_acc": 0.2, "probe_acc": 0.3},
    {"effective_rank": 6.0, "rankme": 8.0, "lidar": 4.0, "knn_acc": 0.4, "probe_acc": 0.5},
    {"effective_rank": 8.0, "rankme": 7.0, "lidar": 3.0, "knn_acc": 0.6, "probe_acc": 0.5},
    {"effective_rank": 9.0, "rankme": 6.0, "lidar": 5.0, "knn_acc": 0.9},
]


def _scipy_tau(metric: str, target: str) -> float:
    stats = pytest.importorskip("scipy.stats")
    pairs = [(f[metric], f[target]) for f in EXPORTED if target in f]
    return stats.kendalltau(*zip(*pairs, strict=True), variant="b").statistic


def _tau(cell: str, runs: str = "") -> float:
    """A τ cell as printed to two decimals, ``+0.67`` or ``+1.00 (3 runs)``."""
    assert cell.endswith(runs), cell
    return float(cell.removesuffix(runs))


def test_table_exports_carry_the_tau_table(tmp_path, cli) -> None:
    paths = runs_with(tmp_path, EXPORTED)
    out = ["--out", tmp_path / "figs"]
    md = cli("compare", *paths, "--table", "markdown", *out)
    assert md.exit_code == 0, md.output
    first, caption, second = md.stdout.strip().split("\n\n")
    assert len(first.splitlines()) == 2 + 4  # header, rule, one row per run
    assert caption.startswith("Kendall τ-b over 4 runs: the final value of each metric")
    header, rule, *rows = second.splitlines()
    assert (
        header == "| metric | τ vs kNN accuracy | τ vs probe accuracy |" and rule.count("---") == 3
    )
    cells = {r.split(" | ")[0].strip("| "): r.strip("| ").split(" | ")[1:] for r in rows}
    for metric in ("effective_rank", "rankme", "lidar"):
        knn, probe = cells[metric]
        assert _tau(knn) == pytest.approx(_scipy_tau(metric, "knn_acc"), abs=0.005)
        assert _tau(probe, " (3 runs)") == pytest.approx(_scipy_tau(metric, "probe_acc"), abs=0.005)

    tex = cli("compare", *paths, "--table", "latex", *out).stdout
    assert tex.count(r"\begin{tabular}") == 2 and tex.count(r"\end{tabular}") == 2
    assert r"metric & $\tau$ vs kNN accuracy & $\tau$ vs probe accuracy \\" in tex
    assert "\n% Kendall τ-b over 4 runs" in tex  # a comment, not text in the document

    table = list(csv.reader(cli("compare", *paths, "--table", "csv", *out).stdout.splitlines()))
    assert len({len(row) for row in table}) == 1  # one rectangle: a frame reads it whole
    assert [row[0] for row in table[5:]] == ["Kendall τ-b vs kNN accuracy (4 runs)",
                                             "Kendall τ-b vs probe accuracy (4 runs)"]  # fmt: skip
    knn, probe = table[5], table[6]
    for metric in ("effective_rank", "rankme", "lidar"):
        final, start = table[0].index(f"{metric} (final)"), table[0].index(f"{metric} (step 0)")
        assert _tau(knn[final]) == pytest.approx(_scipy_tau(metric, "knn_acc"), abs=0.005)
        assert _tau(probe[final], " (3 runs)") == pytest.approx(
            _scipy_tau(metric, "probe_acc"), abs=0.005
        )
        assert knn[start] == "" and probe[start] == ""
    assert knn[1:3] == ["", ""] and knn[table[0].index("knn_acc (final)")] == ""  # no predictor


def test_table_exports_without_enough_runs_have_no_tau_table(tmp_path, cli) -> None:
    paths = runs_with(tmp_path, EXPORTED[:2])  # two runs with an accuracy: no τ table
    out = ["--out", tmp_path / "figs"]
    md = cli("compare", *paths, "--table", "markdown", *out).stdout
    assert "Kendall" not in md and "\n\n" not in md.strip() and len(md.splitlines()) == 4
    assert cli("compare", *paths, "--table", "latex", *out).stdout.count("tabular}") == 2
    rows = list(csv.reader(cli("compare", *paths, "--table", "csv", *out).stdout.splitlines()))
    assert len(rows) == 3 and not any(r[0].startswith("Kendall") for r in rows)


def test_a_sweeps_table_export_carries_its_tau_table(tmp_path, cli) -> None:
    points = [
        {"params": {"optimizer.lr": lr}, "seed": seed,
         "final": {"effective_rank": 10 * lr - 3 * seed, "knn_acc": 0.1 * lr + 0.01 * seed}}
        for lr in (1, 2, 3) for seed in (0, 1)
    ]  # fmt: skip
    sweep = write_sweep(tmp_path, {"optimizer.lr": [1, 2, 3]}, points, [0, 1])
    # τ over the six runs, not over the three means. A hand count of the 15 pairs: the pair of
    # seeds of each lr is discordant (rank down, accuracy up), the 12 across lrs concordant.
    expected = (12 - 3) / 15
    ranks, accuracies = ([p["final"][k] for p in points] for k in ("effective_rank", "knn_acc"))
    stats = pytest.importorskip("scipy.stats")
    assert stats.kendalltau(ranks, accuracies).statistic == pytest.approx(expected)
    md = cli("compare", sweep, "--table", "markdown").stdout
    assert "| optimizer.lr | seeds | majority | effective_rank (mean ± std) |" in md
    assert "| 1 | 2/2 | healthy 2/2 | 8.5 ± 2.121 |" in md  # 10 and 7
    assert "Kendall τ-b over 6 runs" in md and f"| effective_rank | {expected:+.2f} |" in md
    table = list(csv.reader(cli("compare", sweep, "--table", "csv").stdout.splitlines()))
    assert table[-1][0] == "Kendall τ-b vs kNN accuracy (6 runs)"
    assert _tau(table[-1][table[0].index("effective_rank (mean ± std)")]) == pytest.approx(expected)


def test_a_tau_over_fewer_runs_says_how_many_in_good_english() -> None:
    """Three runs with kNN accuracy, the forces logged by one of them only: its cell reads
    '- (1 run)', a metric of two runs '- (2 runs)' (too few for τ), the others plain."""
    from collapse_cli.reading.predicts import predictors

    finals = [
        {"knn_acc": 0.9, "effective_rank": 30.0, "force_ratio": 0.5, "rankme": 2.0},
        {"knn_acc": 0.5, "effective_rank": 10.0, "rankme": 3.0},
        {"knn_acc": 0.1, "effective_rank": 5.0},
    ]
    found = predictors(finals)
    assert found is not None and found.runs == 3
    cells = {row.metric: found.text(row, "knn_acc") for row in found.rows}
    assert cells["force_ratio"] == "- (1 run)" and cells["rankme"] == "- (2 runs)"
    assert cells["effective_rank"] == "+1.00"
