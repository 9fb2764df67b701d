"""The cost around the loop (issue 18) and of ``collapse inspect`` (issue 15, 9): what is
imported when, ``log.figures`` and its older spelling ``log.plots``, the sweep's default, and
that the cheaper paths give the same answers as the ones they replace. No timings here: the
benchmarks in bench/ measure them."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch

from collapse_cli.config import load_config, resolved
from collapse_cli.errors import ConfigError
from collapse_cli.inspection import all_finite, check_embeddings
from collapse_cli.training.plan import SWEEP_FIGURES, plan_sweep, sweep_figures

from .conftest import CONFIGS, ROOT, write
from .test_plots import write_run

HEAVY = "print(sorted(m for m in ('torch', 'matplotlib') if m in sys.modules))"


def _imports(args: list[str]) -> list[str]:
    """Which of torch and matplotlib ``collapse ARGS`` imports, in a fresh interpreter."""
    code = (
        "import sys; from typer.testing import CliRunner; from collapse_cli.cli import app; "
        f"r = CliRunner().invoke(app, {args!r}); assert r.exit_code == 0, r.output; {HEAVY}"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1].replace("'", '"'))


# --------------------------------------------------------------------------- imports
def test_list_imports_neither_torch_nor_matplotlib(tmp_path: Path) -> None:
    write_run(tmp_path / "runs", "20250101-000000-a")
    assert _imports(["list", "--runs-dir", str(tmp_path / "runs")]) == []
    assert _imports(["--help"]) == []


def test_inspect_imports_matplotlib_only_to_draw(tmp_path: Path) -> None:
    file = tmp_path / "z.npy"
    np.save(file, np.random.default_rng(0).standard_normal((64, 8)).astype(np.float32))
    assert _imports(["inspect", str(file)]) == ["torch"]  # the table: no figure, no matplotlib


def test_inspect_ends_without_teardown_yet_flushes_and_writes_everything(tmp_path: Path) -> None:
    file, out = tmp_path / "z.npy", tmp_path / "out"
    np.save(file, np.random.default_rng(0).standard_normal((64, 8)).astype(np.float32))
    cmd = [sys.executable, "-m", "collapse_cli", "inspect", str(file), "--json", "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)  # the whole document reached stdout
    assert report["shape"] == [64, 8] and json.loads((out / "inspect.json").read_text()) == report
    assert matplotlib.image.imread(out / "spectrum.png").ndim == 3


# --------------------------------------------------------------------------- inspect's check
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
def test_all_finite_agrees_with_isfinite_everywhere(dtype: torch.dtype) -> None:
    z = torch.randn(30, 7).to(dtype)
    assert all_finite(z) and bool(torch.isfinite(z).all())
    for bad in (float("nan"), float("inf"), -float("inf")):
        for at in (0, 1, 104, 209):  # first, second, middle, last entry
            y = z.clone()
            y.view(-1)[at] = bad
            assert all_finite(y) is bool(torch.isfinite(y).all()) is False, (bad, at)


def test_a_non_finite_matrix_still_gets_its_counts_and_first_row() -> None:
    z = torch.zeros(6, 3)
    z[2, 1], z[4, 0], z[4, 2] = float("nan"), float("inf"), -float("inf")
    with pytest.raises(ConfigError, match=r"1 NaN and 2 infinite values \(the first in row 2"):
        check_embeddings(z)


# --------------------------------------------------------------------------- log.figures
def test_log_figures_and_its_older_spelling() -> None:
    def figures(*overrides: str) -> str:
        return load_config(CONFIGS / "collapse.yaml", list(overrides)).log.figures

    assert figures() == "end"
    assert figures("log.figures=none") == "none"
    assert figures("log.plots=false") == "none" and figures("log.plots=true") == "end"
    assert figures("log.figures=false") == "none"  # a boolean reads as log.plots did
    assert figures("log.plots=false", "log.figures=none") == "none"  # both, agreeing
    cfg = load_config(CONFIGS / "collapse.yaml", ["log.plots=false"])
    assert cfg.log.plots is False  # code that reads the older name still can
    log = resolved(cfg)["log"]
    assert log["figures"] == "none" and "plots" not in log  # config.yaml says figures


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        (["log.plots=true", "log.figures=none"], "plots (the older spelling of figures) is true"),
        (["log.plots=3"], "plots: 3 is not true or false"),
        (["log.figures=later"], "log.figures: input should be 'end' or 'none'"),
    ],
)
def test_bad_figures_settings_are_one_line_errors(overrides: list[str], words: str) -> None:
    with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace(")", r"\)")):
        load_config(CONFIGS / "collapse.yaml", overrides)


def test_a_run_folder_written_with_log_plots_still_loads(tmp_path: Path) -> None:
    text = (CONFIGS / "collapse.yaml").read_text() + "  plots: false\n"  # under log:
    cfg = load_config(write(tmp_path / "run" / "config.yaml", text))
    assert cfg.log.figures == "none"


def test_figures_none_draws_nothing_and_plot_draws_them_later(tmp_path: Path) -> None:
    from collapse_cli import run_experiment
    from collapse_cli.reading.figures import plot_run

    overrides = ["train.steps=20", "log.every=10", "data.n=64", "log.figures=none"]
    path, _ = run_experiment(CONFIGS / "collapse.yaml", overrides, runs_dir=tmp_path)
    assert not (path / "plots").exists()
    assert {p.name for p in plot_run(path)} >= {"overview.png", "loss.png", "spectrum.png"}


# --------------------------------------------------------------------------- the sweep
def test_a_sweep_draws_no_figures_unless_told() -> None:
    doc = {"log": {"every": 10}}
    assert sweep_figures(doc, {}, []) == [SWEEP_FIGURES]
    assert sweep_figures({"log": {"figures": "end"}}, {}, []) == []
    assert sweep_figures({"log": {"plots": True}}, {}, []) == []  # the older spelling
    assert sweep_figures(doc, {}, ["log.figures=end"]) == []
    assert sweep_figures(doc, {"log.plots": ["true", "false"]}, []) == []
    plan = plan_sweep(CONFIGS / "collapse.yaml", ["optimizer.lr=1e-3,1e-2"])
    assert plan.overrides == [SWEEP_FIGURES]  # recorded in sweep.json, so --resume agrees


# --------------------------------------------------------------------------- figures
def test_titles_sit_where_matplotlib_would_place_them(tmp_path: Path) -> None:
    """The style fixes every title's height instead of letting matplotlib search for
    collisions at each draw; on every axes of the overview (every kind of panel, the λ_min
    one with its strip included), matplotlib's own automatic placement puts the title at the
    same pixels."""
    from collapse_cli.reading.figures import figures

    run = write_run(tmp_path, "20250101-000000-a")
    figs = figures(run)
    fig = figs["overview"]
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    fixed = [ax.title.get_window_extent(renderer).bounds for ax in fig.axes]
    for ax in fig.axes:
        ax._autotitlepos = True  # matplotlib's automatic placement, the reference
    fig.canvas.draw()
    auto = [ax.title.get_window_extent(renderer).bounds for ax in fig.axes]
    assert len([ax for ax in fig.axes if ax.get_title()]) == 6
    assert fixed == auto
    assert matplotlib.rcParams["axes.titley"] is None  # the style did not leak out


# --------------------------------------------------------------------------- the figures
def _pixels(fig: object) -> np.ndarray:
    fig.canvas.draw()  # type: ignore[attr-defined]
    return np.asarray(fig.canvas.buffer_rgba()).copy()  # type: ignore[attr-defined]


def _wide_log_figure(low: float = 3e-7, high: float = 2e1) -> object:
    from collapse_cli.reading.style import PANEL_SIZE, new_figure

    fig = new_figure(1, 1, PANEL_SIZE)
    ax = fig.axes[0]
    ax.plot([0, 50, 100], [1e-8, 1e-3, 1e2], label="λ")
    ax.set_yscale("log")
    ax.set(ylim=(low, high), title="a log axis over eight decades", ylabel="λ")
    ax.legend()
    return fig


def test_minor_tick_marks_draw_what_matplotlibs_own_ticks_draw() -> None:
    """On a log axis over many decades (matplotlib draws minor ticks up to ten) the unlabelled
    minor ticks are one line of marks: the
    same pixels as matplotlib's own minor ticks, at the places k·10^e (k = 2…9) inside the
    limits, with no minor Tick objects to draw."""
    from matplotlib.ticker import NullFormatter

    from collapse_cli.reading.style import figure_style, readable_log_ticks

    with figure_style():
        ours, theirs = _wide_log_figure(), _wide_log_figure()
        readable_log_ticks(ours)
        theirs.axes[0].yaxis.set_minor_formatter(NullFormatter())  # matplotlib's ticks
        expected = sorted(
            k * 10.0**e for e in range(-8, 3) for k in range(2, 10) if 3e-7 <= k * 10.0**e <= 2e1
        )
        (marks,) = [a for a in ours.axes[0].get_children() if type(a).__name__ == "Line2D"][1:]
        np.testing.assert_allclose(sorted(marks.get_ydata()), expected, rtol=1e-12)
        assert len(ours.axes[0].yaxis.get_minorticklocs()) == 0  # the axis draws none itself
        theirs_in_view = [v for v in theirs.axes[0].yaxis.get_minorticklocs() if 3e-7 <= v <= 2e1]
        np.testing.assert_allclose(theirs_in_view, expected, rtol=1e-12)
        assert (_pixels(ours) == _pixels(theirs)).all()
        readable_log_ticks(ours)  # a second save of the same figure changes nothing
        assert (_pixels(ours) == _pixels(theirs)).all()


def test_figures_of_one_size_share_a_renderer_and_look_as_if_drawn_alone() -> None:
    """Every figure of the same pixel size draws with one renderer (so measured texts and
    parsed labels are reused), and each looks exactly as it does on a canvas of its own."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from collapse_cli.reading.style import figure_style

    with figure_style():
        a, b = _wide_log_figure(), _wide_log_figure(1e-4, 1e4)
        a_alone, b_alone = _wide_log_figure(), _wide_log_figure(1e-4, 1e4)
        FigureCanvasAgg(a_alone)
        FigureCanvasAgg(b_alone)
        assert (_pixels(a) == _pixels(a_alone)).all()
        assert (_pixels(b) == _pixels(b_alone)).all()
        assert a.canvas.get_renderer() is b.canvas.get_renderer()
        assert a_alone.canvas.get_renderer() is not b_alone.canvas.get_renderer()


def test_a_forked_copy_draws_with_renderers_of_its_own() -> None:
    """Renderers hold parsed labels whose font objects read their files through handles a
    forked copy shares with its parent; a copy starts without them, and parent and copy draw
    log labels at the same time without garbling each other's glyphs."""
    code = """
import os
from collapse_cli.reading import style
from tests.test_cost import _pixels, _wide_log_figure
with style.figure_style():
    reference = _pixels(_wide_log_figure())
    for _ in range(3):
        pid = os.fork()
        if pid == 0:
            ok = not style._RENDERERS and (_pixels(_wide_log_figure()) == reference).all()
            os._exit(0 if ok else 1)
        same = (_pixels(_wide_log_figure()) == reference).all()
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0 and same
    assert (_pixels(_wide_log_figure()) == reference).all()
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0 and done.stdout == "ok\n", done.stderr[-3000:]


def test_figures_are_shared_out_by_weight() -> None:
    """The overview (six to eight panels) against one-panel figures: into two shares of seven
    each, into three with the overview alone, never more shares than figures, heaviest first."""
    from collapse_cli.reading.drawer import share_out

    singles = {f"f{i}": 1.0 for i in range(7)}
    weights = {"overview": 7.0, **singles}
    two = share_out(weights, 2)
    assert two[0] == ["overview"] and sorted(two[1]) == sorted(singles)
    three = share_out(weights, 3)
    assert three[0] == ["overview"] and sorted(len(g) for g in three[1:]) == [3, 4]
    assert share_out(weights, 1) == [["overview", *singles]]
    assert sorted(map(sorted, share_out(weights, 20))) == sorted([n] for n in weights)
    assert share_out({"a": 1.0, "b": 2.0, "c": 2.0}, 2) == [["b", "a"], ["c"]]
    for k in (1, 2, 3, 20):
        groups = share_out(weights, k)
        assert sorted(n for g in groups for n in g) == sorted(weights)  # each exactly once


@pytest.mark.parametrize("copies_fail", [False, True])
def test_shared_out_figures_are_plot_runs_figures(tmp_path: Path, copies_fail: bool) -> None:
    """The helper's drawing, shared out over five processes, writes the files `plot_run`
    writes, pixel for pixel; a copy that fails has its figures drawn by the helper itself."""
    from collapse_cli.reading.figures import plot_run

    run = write_run(tmp_path, "20250101-000000-a", extra={"knn_acc": 0.5})
    code = f"""
import os, sys
from pathlib import Path
import collapse_cli.reading.figures as F
from collapse_cli.reading import drawer
drawer.cores = lambda: 5
main, save = os.getpid(), F.save
def recorded(figs, out, *a, **k):  # which process saves what
    with open(sys.argv[2], "a") as f:
        f.write(f"{{os.getpid()}} {{' '.join(figs)}}\\n")
    if {copies_fail} and os.getpid() != main:
        raise RuntimeError("a copy fails")
    return save(figs, out, *a, **k)
F.save = recorded
print("\\n".join(map(str, F.plot_run(Path(sys.argv[1]), shared=True))))
"""
    log = tmp_path / "saves.txt"
    done = subprocess.run(
        [sys.executable, "-c", code, str(run), str(log)], capture_output=True, text=True, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr[-3000:]
    saves = [line.split() for line in log.read_text().splitlines()]
    pids = Counter(pid for pid, *_ in saves)
    assert len(pids) == 5  # five processes drew
    every = sorted(Path(p).stem for p in done.stdout.split())
    if copies_fail:  # the helper drew the shares of the four copies that failed, again
        (helper, times), *_ = pids.most_common()
        assert times == 5
        assert sorted(n for pid, *names in saves if pid == helper for n in names) == every
    else:  # each figure once
        assert sorted(n for _, *names in saves for n in names) == every
    paths = [Path(p) for p in done.stdout.split()]
    here = plot_run(run, tmp_path / "here")
    assert [p.name for p in paths] == [p.name for p in here]  # the same files, in order
    for a, b in zip(paths, here, strict=True):
        assert (matplotlib.image.imread(a) == matplotlib.image.imread(b)).all(), a.name


def test_collapse_plot_shares_its_figures_out_and_draws_what_plot_run_draws(
    tmp_path: Path,
) -> None:
    """`collapse plot RUN --out DIR --label TEXT` in a process of its own (no torch loaded, so
    it shares the figures out over the cores) writes what `plot_run` writes with the same
    folder and label, pixel for pixel."""
    from collapse_cli.reading.figures import plot_run

    run = write_run(tmp_path, "20250101-000000-a", extra={"knn_acc": 0.5})
    code = (
        "import sys; from collapse_cli.cli import main; "
        "sys.argv = ['collapse', *sys.argv[1:]]; main()"
    )
    args = ["plot", str(run), "--out", str(tmp_path / "cli"), "--label", "my run"]
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    here = plot_run(run, tmp_path / "here", label="my run")
    drawn = sorted((tmp_path / "cli").glob("*.png"))
    assert [p.name for p in drawn] == sorted(p.name for p in here) and len(here) >= 8
    for a in drawn:
        assert (
            matplotlib.image.imread(a) == matplotlib.image.imread(tmp_path / "here" / a.name)
        ).all()


# --------------------------------------------------------------------------- the helper
def test_the_helper_draws_what_plot_run_draws_and_reports_its_errors(tmp_path: Path) -> None:
    from collapse_cli.reading import drawer
    from collapse_cli.reading.figures import plot_run

    run = write_run(tmp_path, "20250101-000000-a")
    helper = drawer.start()
    assert helper is not None and drawer.start() is helper  # one per process
    assert drawer.take() is helper and drawer.take() is None  # handed out once
    paths = helper.draw(run)
    assert paths and helper.proc.returncode == 0  # it answered and exited
    here = plot_run(run, tmp_path / "here")
    assert sorted(p.name for p in paths) == sorted(p.name for p in here)
    for a, b in zip(sorted(paths), sorted(here), strict=True):
        assert (matplotlib.image.imread(a) == matplotlib.image.imread(b)).all(), a.name

    broken = drawer.start()  # a fresh one
    assert broken is not None and drawer.take() is broken
    with pytest.raises(RuntimeError, match="not a run folder"):
        broken.draw(tmp_path / "nothing-here")


def test_a_helper_that_died_leaves_the_run_to_draw_its_own(tmp_path: Path) -> None:
    from collapse_cli.reading import drawer
    from collapse_cli.training.lifecycle import _plot

    run = write_run(tmp_path, "20250101-000000-a")
    helper = drawer.start()
    assert helper is not None
    helper.proc.kill()
    helper.proc.wait()
    meta: dict = {}
    _plot(run, meta)  # takes the dead helper, gets no answer, draws the figures itself
    assert meta == {} and (run / "plots" / "overview.png").is_file()
    assert drawer.take() is None


def test_an_exit_code_survives_the_skipped_teardown() -> None:
    code = (
        "import collapse_cli.cli as c\n"
        "def app():\n"
        "    c._skip_teardown.add('run'); print('summary'); raise SystemExit(3)\n"
        "c.app = app\n"
        "c.main()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 3 and done.stdout == "summary\n"
