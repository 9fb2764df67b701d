"""`collapse compare`'s rank correlation between each final metric and the final accuracies:
Kendall's τ-b in plain Python against hand-computed cases and scipy, and its table."""

from __future__ import annotations

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
