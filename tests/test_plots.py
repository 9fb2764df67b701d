"""plot, compare and list on real and hand-written run folders, through the library and the CLI."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import pytest
import yaml
from typer.testing import CliRunner

from collapse_cli.cli import app
from collapse_cli.errors import CollapseError, ConfigError
from collapse_cli.reading import load_run, run_table
from collapse_cli.reading.compare import ABSENT, compare_runs, differing_keys
from collapse_cli.reading.figures import figures, plot_run
from collapse_cli.reading.overlays import compare_figures

PNG = b"\x89PNG\r\n\x1a\n"
D, N, RANK = 16, 64, 8  # synthetic runs: rank 8 of 16, so λ_9…λ_16 are structurally zero

BASE = {
    "name": "synth",
    "seed": 0,
    "device": "cpu",
    "data": {"name": "gaussian", "n": N, "dim": 8},
    "encoder": {"name": "linear", "out_dim": D},
    "loss": {"name": "variance"},
    "optimizer": {"name": "adam", "lr": 0.001},
    "train": {"steps": 100, "batch_size": None},
    "log": {"every": 10, "spectrum": True},
}


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return out


def write_run(
    root: Path,
    name: str,
    config: dict | None = None,
    steps: int = 100,
    every: int = 10,
    extra: dict | None = None,
    finished: bool = True,
    decay: float = 0.02,
) -> Path:
    """A run folder written by hand, shaped like `collapse run` writes them."""
    from collapse_cli.summary import build_summary

    path = root / name
    path.mkdir(parents=True)
    cfg = _merge(BASE, config or {})
    (path / "config.yaml").write_text(yaml.safe_dump(cfg))
    status = "completed" if finished else "running"
    (path / "meta.json").write_text(json.dumps({"id": name, "name": cfg["name"], "status": status}))
    rows, spectra = [], []
    for step in range(0, steps, every):
        scale = math.exp(-decay * step)
        eigs = [scale * (RANK - i) / RANK for i in range(RANK)] + [1e-17] * (D - RANK)
        row = {"step": step, "time": step / 100, "loss": scale, "variance": sum(eigs) / D}
        row |= {"min_eig": eigs[-1], "max_eig": eigs[0], "rank": RANK, "effective_rank": 7.5}
        row |= {"rankme": 7.0, "participation_ratio": 6.0, "std_l2": 0.2 * scale}
        row |= {"grad_norm": scale, **(extra or {})}
        rows.append(row)
        spectra.append({"step": step, "eigenvalues": eigs})
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (path / "spectrum.jsonl").write_text("".join(json.dumps(s) + "\n" for s in spectra))
    if finished:
        summary = build_summary(
            rows, run_id=name, name=cfg["name"], status=status, loss=cfg["loss"]["name"],
            steps=steps, steps_done=steps, batch_size=N, dim=D,
        )  # fmt: skip
        summary |= {"verdict": "healthy", "verdict_reason": "synthetic"}
        (path / "summary.json").write_text(json.dumps(summary))
    return path


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The article's demo 1, short: a real run folder written by `run_experiment`."""
    from collapse_cli import run_experiment

    runs = tmp_path_factory.mktemp("runs")
    # N = 128 keeps it fast and makes the rank ceiling min(d, N − 1) = 127, not d.
    overrides = ["train.steps=60", "log.every=10", "data.n=128"]
    path, _ = run_experiment("configs/collapse.yaml", overrides, runs_dir=runs)
    return path


def _is_image(path: Path) -> bool:
    return path.read_bytes()[:8] == PNG and matplotlib.image.imread(path).ndim == 3


def _lines(ax) -> dict[str, object]:
    return {line.get_label(): line for line in ax.get_lines()}


# --------------------------------------------------------------------------- plot


def test_plot_run_writes_the_standard_figures(demo: Path) -> None:
    paths = plot_run(demo)
    names = {p.name for p in paths}
    assert names == {
        f"{n}.png"
        for n in ["loss", "variance", "min_eig", "rank", "std_l2", "spectrum", "final_spectrum"]
    } | {"overview.png"}
    assert all(p.parent == demo / "plots" and _is_image(p) for p in paths)
    from PIL import Image

    with Image.open(demo / "plots" / "overview.png") as im:
        assert im.size[0] >= 1200


def test_figures_have_their_panels_and_reference_lines(demo: Path) -> None:
    figs = figures(demo)
    dim = 128

    (ax,) = figs["variance"].axes
    assert ax.get_yscale() == "log" and "Variance" in ax.get_title()

    top, strip = figs["min_eig"].axes  # λ_min above, the numerical rank in a strip below
    assert top.get_yscale() == "log" and "λ_min" in top.get_title()
    lines = _lines(top)  # rank 32 of 128: λ_min is a band of structural zeros, no line
    assert set(lines) == {"λ_r, r = rank (smallest non-zero)"}
    (band,) = top.collections  # drawn along the bottom of the axes, not at a made-up value
    assert band.get_label() == "λ_min structurally 0 (rank 32/128)"
    assert band.get_transform() == top.get_xaxis_transform()  # y in axes units: a band
    (y0, y1) = band.get_paths()[0].get_extents().intervaly
    assert (y0, y1) == (0, 0.05)
    assert strip.get_ylabel() == "rank" and set(strip.get_lines()[0].get_ydata()) == {32}

    (ax,) = figs["rank"].axes
    lines = _lines(ax)
    assert {"effective rank", "RankMe", "numerical rank"} <= set(lines)
    # The rank the embeddings can reach (32, their rank at step 0), not d or N − 1.
    ceiling = lines["reachable rank 32 (rank at step 0); min(d, N−1) = 127"]
    assert ceiling.get_linestyle() == "--" and list(ceiling.get_ydata()) == [32, 32]

    (ax,) = figs["std_l2"].axes
    iso = next(line for label, line in _lines(ax).items() if label.startswith("1/√d"))
    assert iso.get_ydata()[0] == pytest.approx(1 / math.sqrt(dim))
    limit = next(line for label, line in _lines(ax).items() if "complete collapse" in label)
    assert limit.get_ydata()[0] == pytest.approx(0.05 / math.sqrt(dim))  # log.verdict default

    (ax, _colorbar) = figs["spectrum"].axes
    mesh = ax.collections[0]
    assert mesh.get_array().shape == (dim, 7)  # (index, step): 7 log steps of a 60-step run
    assert mesh.get_array().mask[32:].all() and not mesh.get_array().mask[:32].any()

    (ax,) = figs["final_spectrum"].axes
    assert ax.get_yscale() == "log" and len(ax.get_lines()) == 2  # step 0 and the last
    assert all(len(line.get_xdata()) == 32 for line in ax.get_lines())

    titles = [a.get_title() for a in figs["overview"].axes if a.get_title()]
    assert len(titles) == 6 and "Loss" in titles


def test_formats_out_folder_and_a_diverged_run(tmp_path: Path) -> None:
    run = write_run(tmp_path, "20250101-000000-nan")
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for row in rows[5:]:  # diverged: every metric non-finite, written as null
        row.update({k: None for k in row if k not in ("step", "time")})
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    paths = plot_run(run, out=tmp_path / "figs", fmt="svg")
    assert len(paths) == 8
    assert all(p.suffix == ".svg" and p.parent == tmp_path / "figs" for p in paths)
    assert paths[0].read_text().lstrip().startswith("<?xml")
    with pytest.raises(ConfigError, match="png, svg, pdf"):
        plot_run(run, fmt="jpg")


# --------------------------------------------------------------------------- load_run


def test_load_run_tolerates_a_torn_line_and_no_summary(tmp_path: Path) -> None:
    path = write_run(tmp_path, "20250101-000000-live", finished=False)
    with open(path / "metrics.jsonl", "a") as f:
        f.write('{"step": 9')  # the run died (or is still writing) mid-line
    run = load_run(path)
    assert len(run.metrics) == 10 and run.column("step")[-1] == 90
    assert not run.finished and run.summary["steps_done"] == 91
    assert run.summary["final"]["variance"] == run.metrics[-1]["variance"]
    assert "verdict" not in run.summary and run.dim == D and run.rank_ceiling == D
    with open(path / "spectrum.jsonl", "a") as f:
        f.write('{"step": 100, "eigenvalues": [0.5, 0.')
    # What a figure of a long run reads: lines 0, 3, 7 of 11, and for the torn 10th the 9th.
    sample = load_run(path).spectra(max_rows=4)
    assert sample.steps == [0, 30, 70, 90] and sample.array().shape == (4, D)
    assert len(run.spectrum) == 10 and run.spectrum.array().shape == (10, D)
    assert run_table(tmp_path)[0]["verdict"] is None


def test_frame_needs_pandas(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = load_run(write_run(tmp_path, "20250101-000000-a"))
    monkeypatch.setitem(sys.modules, "pandas", None)  # as if it were not installed
    with pytest.raises(CollapseError, match="pip install pandas"):
        run.frame()


def test_load_run_is_exported_lazily() -> None:
    import collapse_cli

    assert collapse_cli.load_run is load_run


def test_reading_and_comparing_import_neither_torch_nor_matplotlib() -> None:
    code = (
        "import sys, collapse_cli.reading.run, collapse_cli.reading.compare,"
        " collapse_cli.reading.figures, collapse_cli.reading.overlays\n"
        "print(sorted(m for m in ('torch', 'matplotlib') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


# --------------------------------------------------------------------------- compare


def test_compare_ten_runs_finds_exactly_the_differing_keys(tmp_path: Path) -> None:
    paths = [
        write_run(
            tmp_path,
            f"20250101-00000{i}-sweep",
            {"seed": i % 2, "optimizer": {"lr": 0.001 * (1 + i // 2)}},
            decay=0.01 * (1 + i),
        )
        for i in range(10)
    ]
    result = compare_runs(paths)
    assert set(result.differing) == {"seed", "optimizer.lr"}
    assert result.differing["seed"] == [i % 2 for i in range(10)]
    assert len(set(result.labels)) == 10
    assert all("lr: " in label and "seed: " in label for label in result.labels)
    assert result.out.parent == tmp_path and result.out.name.startswith("compare-")
    assert all(_is_image(p) for p in result.figures)
    assert {p.stem for p in result.figures} >= {"overview", "loss", "variance", "effective_rank"}
    (ax,) = compare_figures(result.runs, result.labels, ["loss"])["loss"].axes
    assert [t.get_text() for t in ax.get_legend().get_texts()] == result.labels
    assert len({(line.get_color(), line.get_linestyle()) for line in ax.get_lines()}) == 10

    row = next(r for r in result.rows if (r.metric, r.stat) == ("loss", "max"))
    assert row.values == [1.0] * 10 and row.diffs == [None] + [0.0] * 9
    final = next(r for r in result.rows if (r.metric, r.stat) == ("min_eig", "final"))
    assert final.texts == [f"0 (rank {RANK}/{D})"] * 10  # structural, not round-off


def test_compare_labels_by_the_keys_that_tell_runs_apart(tmp_path: Path) -> None:
    a = write_run(tmp_path, "20250101-000000-a", {"name": "collapse"})
    b = write_run(tmp_path, "20250101-000001-b", {"name": "infonce", "loss": {"temperature": 1.0}})
    cfg_b = yaml.safe_load((b / "config.yaml").read_text())
    cfg_b["loss"]["name"] = "infonce_self"
    (b / "config.yaml").write_text(yaml.safe_dump(cfg_b))
    result = compare_runs([a, b], out=tmp_path / "cmp", figures=False)
    assert set(result.differing) == {"name", "loss.name", "loss.temperature"}
    assert result.labels == ["loss: variance", "loss: infonce_self"]  # in words, not key=value
    assert result.figures == [] and not (tmp_path / "cmp").exists()
    c = write_run(tmp_path, "20250101-000002-c", {"name": "collapse"})
    same = compare_runs([a, c], figures=False)
    assert same.differing == {} and same.labels == [same.runs[0].id, same.runs[1].id]
    absent_in_one = differing_keys([{"a": {"b": 1}}, {"a": {"b": 1, "c": [1, 2]}}])
    assert absent_in_one == {"a.c": [ABSENT, [1, 2]]}  # lists are values, not flattened


def test_compare_runs_of_different_lengths_and_metrics(tmp_path: Path) -> None:
    long = write_run(tmp_path, "20250101-000000-long", steps=200, extra={"alignment": 0.5})
    short = write_run(tmp_path, "20250101-000001-short", steps=50, finished=False)
    with open(short / "metrics.jsonl", "a") as f:
        f.write('{"step": 9')
    result = compare_runs([long, short], figures=False)
    metrics = {r.metric for r in result.rows}
    assert "alignment" not in metrics and {"loss", "variance", "effective_rank"} <= metrics
    (ax,) = compare_figures(result.runs, result.labels, ["variance"])["variance"].axes
    assert [len(line.get_xdata()) for line in ax.get_lines()] == [20, 5]  # each on its own steps


def test_labelled_runs_get_a_knn_panel_and_overlay(tmp_path: Path) -> None:
    """knn.png only for runs that logged knn_acc; its line is the logged values on a 0-1 axis."""
    a = write_run(tmp_path, "20250101-000000-a", {"log": {"knn_k": 5}}, extra={"knn_acc": 0.0})
    b = write_run(tmp_path, "20250101-000001-b", extra={"knn_acc": 0.0})
    accuracies = [0.9 - 0.05 * i for i in range(10)]  # one per logged step (100 steps, every 10)
    rows = [json.loads(line) for line in (a / "metrics.jsonl").read_text().splitlines()]
    for row, acc in zip(rows, accuracies, strict=True):
        row["knn_acc"] = acc
    (a / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = json.loads((a / "summary.json").read_text())
    (a / "summary.json").write_text(json.dumps(summary | {"knn_chance": 0.125}))

    (ax,) = figures(a)["knn"].axes
    line, chance = ax.get_lines()
    assert list(chance.get_ydata()) == [0.125, 0.125] and "chance" in chance.get_label()
    assert list(line.get_ydata()) == accuracies and list(line.get_xdata()) == list(
        range(0, 100, 10)
    )
    assert ax.get_ylim() == (0, 1.02) and "k = 5" in ax.get_ylabel()
    assert "knn" not in figures(write_run(tmp_path, "20250101-000002-plain"))

    result = compare_runs([a, b], figures=False)
    (ax,) = compare_figures(result.runs, result.labels, ["knn_acc"])["knn_acc"].axes
    lines = [list(line.get_ydata()) for line in ax.get_lines()]
    assert lines == [accuracies, [0.0] * 10, [0.125, 0.125]]  # the runs, then run a's chance
    assert "kNN" in ax.get_title() and ax.get_ylim() == (0, 1.02)


def test_compare_shows_log_at_places_after_the_runs_own_metrics(tmp_path: Path) -> None:
    """encoder/... and predictor/... rows follow the run's own metrics and its loss parts, the
    overview's metrics only, - where a run did not measure that place."""
    from .synthetic import write_run as write_two_rows

    own = {"loss": 1.0, "variance": 0.5, "effective_rank": 8.0, "kl": 0.3, "lr/head": 0.01}
    encoder = {
        "encoder/variance": 0.2,
        "encoder/rank": 32,
        "encoder/effective_rank": 30.0,
        "encoder/std_l2": 0.05,
        "encoder/rankme": 31.0,
        "encoder/min_eig": 1e-9,
    }
    later = {"encoder/effective_rank": 24.0, "effective_rank": 6.0}
    a = write_two_rows(
        tmp_path / "20250101-000000-a",
        {"name": "a", "seed": 0},
        first=own | encoder,
        final=own | encoder | later,
    )
    b = write_two_rows(tmp_path / "20250101-000001-b", {"name": "b", "seed": 0},
                       first=own | {"predictor/effective_rank": 5.0},
                       final=own | {"predictor/effective_rank": 3.0})  # fmt: skip
    result = compare_runs([a, b], figures=False)
    order = list(dict.fromkeys(r.metric for r in result.rows))
    # lr/head is a number of the user's (head is no metric), not a place's; encoder/rankme and
    # encoder/min_eig are left out; the places in the order encoder, projector, predictor.
    assert order == ["loss", "variance", "effective_rank", "kl", "lr/head", "encoder/variance",
                     "encoder/rank", "encoder/effective_rank", "encoder/std_l2",
                     "predictor/effective_rank"]  # fmt: skip
    rows = {(r.metric, r.stat): r for r in result.rows}
    assert [rows["encoder/effective_rank", s].values for s in ("step 0", "final", "min", "max")] \
        == [[30.0, None], [24.0, None], [24.0, None], [30.0, None]]  # fmt: skip
    assert rows["encoder/effective_rank", "final"].diffs == [None, None]
    assert rows["predictor/effective_rank", "min"].values == [None, 3.0]
    assert rows["effective_rank", "final"].diffs == [None, 8.0 - 6.0]

    cli = CliRunner()
    shown = cli.invoke(app, ["compare", str(a), str(b), "--out", str(tmp_path / "figs")])
    assert shown.exit_code == 0, shown.output
    line = next(x for x in shown.output.splitlines() if "encoder/effective_rank" in x)
    assert [c.strip() for c in line.split("│")[1:-1]] == ["encoder/effective_rank", "step 0",
                                                         "30", "-"]  # fmt: skip
    table = cli.invoke(app, ["compare", str(a), str(b), "--table", "csv",
                             "--out", str(tmp_path / "figs2")])  # fmt: skip
    header, *body = list(csv.reader(table.stdout.splitlines()))
    final = header.index("encoder/effective_rank (final)")
    assert [row[final] for row in body] == ["24", "-"]
    assert "encoder/rankme (final)" not in header


# --------------------------------------------------------------------------- the CLI


def test_cli_plot_compare_list_end_to_end(tmp_path: Path, demo: Path) -> None:
    runs = tmp_path / "runs"
    write_run(runs, "20250101-000000-first")
    write_run(runs, "20250101-000001-second", {"optimizer": {"lr": 0.1}}, finished=False)
    with open(runs / "20250101-000001-second" / "metrics.jsonl", "a") as f:
        f.write('{"step": 9')
    cli = CliRunner()
    opts = ["--runs-dir", str(runs)]

    done = cli.invoke(app, ["plot", "latest", *opts])
    assert done.exit_code == 0, done.output
    assert (runs / "20250101-000001-second" / "plots" / "overview.png").is_file()

    done = cli.invoke(app, ["plot", "2025", *opts])  # a prefix of both
    assert done.exit_code == 2
    assert "ambiguous" in done.output and "-first" in done.output and "-second" in done.output

    done = cli.invoke(app, ["plot", "nope", *opts])
    assert done.exit_code == 2 and "no such run" in done.output
    assert "Traceback" not in done.output

    done = cli.invoke(app, ["compare", "20250101-000000", "latest", str(demo), *opts])
    assert done.exit_code == 0, done.output
    assert "optimizer.lr" in done.output and "variance" in done.output
    assert len(list(runs.glob("compare-*/overview.png"))) == 1

    done = cli.invoke(app, ["compare", "20250101-000000", *opts])
    assert done.exit_code == 2 and "at least two" in done.output

    done = cli.invoke(app, ["list", *opts])
    assert done.exit_code == 0, done.output
    lines = [line for line in done.output.splitlines() if "20250101-" in line]
    assert "-second" in lines[0] and "running" in lines[0]  # newest first, still going
    assert "-first" in lines[1] and "healthy" in lines[1]
    assert "no runs" in cli.invoke(app, ["list", "--runs-dir", str(tmp_path / "none")]).output
