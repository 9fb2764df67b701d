"""The figures of one run, drawn from its folder into ``plots/`` (or anywhere): one figure per
panel of panels.py and an overview; a sweep folder gets its study figure (study.py).
matplotlib is imported inside the functions only, on the Agg canvas (no pyplot)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import CollapseError, ConfigError
from ..rundir import (
    COMPARISON,
    PLOTS,
    is_run_dir,
    is_sweep_dir,
    read_json,
    resolve_run,
    resolve_sweep,
)
from .panels import PANELS, drawn, overview
from .run import Run, load_run
from .style import (
    DPI,
    FORMATS,
    OVERVIEW_MARGINS,
    PANEL_SIZE,
    figure_style,
    new_figure,
    overview_size,
    readable_log_ticks,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def figure_names(run: Run) -> list[str]:
    """The figures `figures` draws for ``run``, in order: its panels, then ``overview``."""
    return [*drawn(run), "overview"]


def figures(
    run: Run | str | Path, label: str | None = None, only: list[str] | None = None
) -> dict[str, Figure]:
    """One Figure per panel the run has data for (panels.py) and ``overview`` with the main
    ones; ``only`` some of them (names from `figure_names`). ``label`` names the run in the
    overview's title (default: its name)."""
    import math

    run = run if isinstance(run, Run) else load_run(run)
    out: dict[str, Figure] = {}
    with figure_style():
        for name in drawn(run):
            if only is not None and name not in only:
                continue
            fig = new_figure(1, 1, PANEL_SIZE, right=0.98 if name == "spectrum" else 0.96)
            PANELS[name](fig.axes[0], run)
            out[name] = fig
        if only is not None and "overview" not in only:
            return out
        names = overview(run)
        cols = math.ceil(len(names) / 2)
        fig = new_figure(2, cols, overview_size(cols), **OVERVIEW_MARGINS, bottom=0.07)
        for ax in fig.axes[len(names) :]:
            ax.remove()
        for ax, name in zip(list(fig.axes), names, strict=False):
            PANELS[name](ax, run)
        verdict = run.summary.get("verdict") or (
            f"not judged ({run.status})" if run.finished else f"{run.status}, no verdict yet"
        )
        name = label or run.meta.get("name") or run.id
        fig.suptitle(f"{name}  ·  {run.summary.get('loss') or '?'}  ·  {verdict}", weight="bold")
        out["overview"] = fig
    return out


def check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt}: choose one of {', '.join(FORMATS)}")


def save(
    figs: dict[str, Figure], out: Path, fmt: str = "png", dpi: int | None = None
) -> list[Path]:
    """Write each figure as ``out/<name>.<fmt>`` (png at ``dpi``); returns the paths."""
    check_format(fmt)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.{fmt}" for name in figs]
    with figure_style():
        for path, fig in zip(paths, figs.values(), strict=True):
            readable_log_ticks(fig)
            fig.savefig(path, dpi=dpi or DPI)
    return paths


def plot_run(
    run_dir: Path,
    out: Path | None = None,
    fmt: str = "png",
    *,
    dpi: int | None = None,
    label: str | None = None,
    shared: bool = False,
) -> list[Path]:
    """Draw the standard figures of a run into ``RUN/plots/`` (or ``out``) and return their
    paths; [] when the run has logged nothing yet. ``shared``: drawn by this process and
    forked copies of it, one per core (drawer.in_shares; a figure weighs its panels)."""
    check_format(fmt)
    run = load_run(run_dir)
    if not run.metrics:
        return []
    folder = Path(out) if out else run.path / PLOTS
    if not shared:
        return save(figures(run, label), folder, fmt, dpi)
    from .drawer import in_shares

    names = figure_names(run)
    panels = len(overview(run))
    weights = {name: float(panels if name == "overview" else 1) for name in names}
    in_shares(weights, lambda group: save(figures(run, label, only=group), folder, fmt, dpi))
    return [folder / f"{name}.{fmt}" for name in names]


def plot_named(
    run: str | Path,
    runs_dir: str | Path = "runs",
    out: Path | None = None,
    fmt: str = "png",
    *,
    dpi: int | None = None,
    labels: list[str] | None = None,
) -> list[Path]:
    """``collapse plot RUN``: resolve the name a user typed and draw the run's figures, shared
    out over the cores (drawer.in_shares); ``labels`` are ``RUN=TEXT`` (or plain ``TEXT``)
    names for its titles. A sweep folder gets its study figure (reading/study.py)."""
    if is_sweep_dir(Path(run)) or (not Path(run).exists() and str(run).startswith("sweep-")):
        from .study import plot_sweep

        return plot_sweep(resolve_sweep(run, runs_dir), out, fmt, dpi=dpi)
    path = _resolve_plottable(run, runs_dir)
    named = parse_labels(labels or [], runs_dir)
    text = named.get(path.resolve()) or next((t for k, t in named.items() if k is None), None)
    paths = plot_run(path, out, fmt, dpi=dpi, label=text, shared=True)
    if not paths:
        raise CollapseError(f"{run}: no metrics logged yet, nothing to plot")
    return paths


def _resolve_plottable(run: str | Path, runs_dir: str | Path) -> Path:
    """A run folder, or a clear word about the comparison folder given in its place."""
    candidate = Path(run)
    index = read_json(candidate / COMPARISON) if candidate.is_dir() else None
    if index is not None and not is_run_dir(candidate):
        raise ConfigError(
            f"{run}: is a comparison folder (collapse compare drew its figures there, of "
            f"{len(index.get('runs', []))} runs); plot takes one run"
        )
    return resolve_run(run, runs_dir)


def parse_labels(items: list[str], runs_dir: str | Path) -> dict[Path | None, str]:
    """``--label RUN=TEXT`` by resolved run folder; a ``TEXT`` without ``RUN=`` is keyed None."""
    out: dict[Path | None, str] = {}
    for item in items:
        spec, sep, text = item.partition("=")
        if not sep:
            out[None] = item
            continue
        if not text.strip():
            raise ConfigError(
                f"--label {item!r}: give RUN=TEXT, e.g. --label latest='no stop-grad'"
            )
        out[resolve_run(spec, runs_dir).resolve()] = text
    return out
