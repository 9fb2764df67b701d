"""The figures of one run, drawn from its folder, and the look every figure shares.

With overlays.py the only modules that import matplotlib, always inside functions and on the
Agg canvas (no pyplot: no global figure state, no GUI backend).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..catalogue import KNN_K
from ..errors import CollapseError, ConfigError
from ..rundir import PLOTS, resolve_run
from ..verdict import min_eig_text, zero_label
from .run import Run, config_value, load_run

if TYPE_CHECKING:
    import numpy as np
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

FORMATS = ("png", "svg", "pdf")
DPI = 100
# Okabe & Ito (2008): told apart under every common colour-vision deficiency. Yellow goes last
# because it is faint on white.
OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000", "#F0E442"]
DASHES = ["-", "--", ":", "-."]  # past eight runs the colours come round again with a new dash
REF = "0.4"  # reference lines (ceilings, 1/√d, floors) are grey so none is taken for a run
STRUCTURAL = "0.85"  # what is structurally zero: masked heatmap cells, shaded indices
CENTRED = {"ha": "center", "va": "center"}
# Spectra drawn per figure at most: more than its pixels can show (see Run.spectra).
SPECTRUM_ROWS = 2000


@contextlib.contextmanager
def figure_style() -> Iterator[None]:
    """The one look of every figure the project draws."""
    import matplotlib
    from cycler import cycler

    rc = {
        "axes.prop_cycle": cycler(color=OKABE_ITO),
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "axes.titlesize": 10,
        "axes.titleweight": "bold",
        "axes.labelsize": 9,
        "xtick.labelsize": 8,
        "ytick.labelsize": 8,
        "legend.fontsize": 8,
        "legend.frameon": False,
        "lines.linewidth": 1.6,
        "image.cmap": "viridis",
        "figure.dpi": DPI,
    }
    with matplotlib.rc_context(rc):
        yield


def new_figure(rows: int, cols: int, size: tuple[float, float], **margins: float) -> Figure:
    """A Figure on the Agg canvas. Margins are fixed rather than solved by a layout engine,
    which would double the drawing time of a figure."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size)
    FigureCanvasAgg(fig)
    fig.subplots(rows, cols, squeeze=False)
    fig.subplots_adjust(**{"left": 0.13, "right": 0.96, "bottom": 0.13, "top": 0.9, **margins})
    return fig


# --------------------------------------------------------------------------- data


def log_if_positive(ax: Axes, *ys: np.ndarray) -> None:
    """Log y only when there is something positive to show (else matplotlib warns and blanks)."""
    import numpy as np

    if any(np.any(np.isfinite(y) & (y > 0)) for y in ys):
        ax.set_yscale("log")


def log_floor(*ys: np.ndarray) -> float:
    """A decade below the smallest real value: where structural zeros sit on a log axis."""
    import numpy as np

    pos = np.concatenate([y[np.isfinite(y) & (y > 0)] for y in ys])
    return 10.0 ** (math.floor(math.log10(pos.min())) - 1) if pos.size else 1e-12


# --------------------------------------------------------------------------- panels of one run


def _loss(ax: Axes, run: Run) -> None:
    import numpy as np

    y = run.array("loss")
    ax.plot(run.array("step"), y, color=OKABE_ITO[0], label="loss")
    ok = y[np.isfinite(y)]
    if ok.size and ok.min() > 0 and ok.max() > 100 * ok.min():  # decades read better in log
        ax.set_yscale("log")
    ax.set(title="Loss", xlabel="step", ylabel=f"loss ({run.summary.get('loss') or '?'})")


def _variance(ax: Axes, run: Run) -> None:
    y = run.array("variance")
    ax.plot(run.array("step"), y, color=OKABE_ITO[1], label="variance")
    log_if_positive(ax, y)
    ratio = config_value(run.config, "log.verdict.complete_variance_ratio")
    ratio = ratio if isinstance(ratio, float) else None  # a Monitor's config is the user's
    if ratio and len(y) and y[0] > 0:
        ax.axhline(
            ratio * y[0], color=REF, ls=":", lw=1, label=f"complete collapse ({ratio:g} × step 0)"
        )
    ax.set(title="Variance (mean per dimension)", xlabel="step", ylabel="variance (log)")
    ax.legend(loc="best")


def _min_eig_rank(ax: Axes, run: Run) -> None:
    """λ_min on a log axis with structural zeros drawn at a floor, the smallest non-zero
    eigenvalue λ_r beside it, and the numerical rank in a strip underneath."""
    import numpy as np

    fig, spec = ax.figure, ax.get_subplotspec()
    ax.remove()
    grid = spec.subgridspec(2, 1, height_ratios=[3, 1], hspace=0.08)
    top = fig.add_subplot(grid[0])
    strip = fig.add_subplot(grid[1], sharex=top)

    steps, lam, rank = run.array("step"), run.array("min_eig"), run.array("rank")
    structural = run.structural_min_eig()
    real = lam[~structural]
    if (~structural).any():
        top.plot(steps[~structural], real, color=OKABE_ITO[3], label="λ_min")
    lam_r = np.array([])
    if structural.any():
        s, lam_r = run.smallest_nonzero(SPECTRUM_ROWS)
        top.plot(s, lam_r, color=OKABE_ITO[0], label="λ_r, r = rank (smallest non-zero)")
        at = log_floor(real, lam_r)
        ss = steps[structural]
        top.axhline(at, color=REF, lw=0.8, ls=":")
        k = int(np.flatnonzero(structural)[-1])
        text = "structurally " + min_eig_text(lam[k], int(rank[k]), run.dim)  # 0 (rank 32/128)
        marks = {"ls": "none", "marker": "v", "ms": 5, "markevery": max(1, len(ss) // 25)}
        label = "λ_min: structurally 0, drawn at a floor"
        top.plot(ss, np.full(len(ss), at), color=OKABE_ITO[3], label=label, **marks)
        where = {"xytext": (-4, 5), "textcoords": "offset points", "ha": "right", "va": "bottom"}
        top.annotate(text, (ss[-1], at), fontsize=8, color=OKABE_ITO[3], **where)
        top.set_yscale("log")
        top.set_ylim(bottom=at / 4)
    else:
        log_if_positive(top, real)
    top.set(title="Smallest eigenvalue λ_min and rank", ylabel="eigenvalue (log)")
    top.tick_params(labelbottom=False)
    top.legend(loc="best")

    strip.plot(steps, rank, color=REF, ds="steps-post", label="numerical rank")
    if run.dim:  # ticks: 0, the last rank and d, so the strip reads "32 of 128"
        strip.axhline(run.dim, color=REF, ls="--", lw=1)
        strip.set_ylim(0, run.dim * 1.15)
        last = rank[np.isfinite(rank)][-1:].astype(int).tolist()
        ticks = sorted({0, run.dim, *last})
        strip.set_yticks(ticks, [f"d={t}" if t == run.dim else str(t) for t in ticks])
    strip.set(xlabel="step", ylabel="rank")


def _ranks(ax: Axes, run: Run) -> None:
    steps = run.array("step")
    names = [("effective_rank", "effective rank"), ("rankme", "RankMe"), ("rank", "numerical rank")]
    for color, (key, label) in zip(OKABE_ITO, names, strict=False):
        if key in (run.summary.get("max") or {}):  # logged, with a finite value
            ds = "steps-post" if key == "rank" else "default"
            ax.plot(steps, run.array(key), color=color, ds=ds, label=label)
    draw_ceiling(ax, run.rank_ceiling)
    ax.set(title="Rank measures", xlabel="step", ylabel="rank (dimensions)")
    ax.legend(loc="center right")


def _reference(ax: Axes, y: float, label: str, note: bool) -> None:
    """A grey dashed reference line; ``note`` also writes its label on it (for overlays, whose
    legends name the runs only)."""
    ax.axhline(y, color=REF, ls="--", lw=1, label=None if note else label)
    if note:
        write_note(ax, 0.99, y, label, ax.get_yaxis_transform(), ha="right", va="bottom")


def draw_ceiling(ax: Axes, ceiling: int | None, note: bool = False) -> None:
    if ceiling:
        _reference(ax, ceiling, f"ceiling min(d, N−1) = {ceiling}", note)
        ax.set_ylim(0, max(ax.get_ylim()[1], ceiling * 1.1))


def _std_l2(ax: Axes, run: Run) -> None:
    y = run.array("std_l2")
    ax.plot(run.array("step"), y, color=OKABE_ITO[2], label="std_l2")
    draw_isotropic(ax, run.dim, y)
    ax.set(title="Std of L2-normalised embeddings", xlabel="step", ylabel="std_l2 (0 = collapsed)")
    ax.legend(loc="best")


def _knn(ax: Axes, run: Run) -> None:
    k = config_value(run.config, "log.knn_k") or KNN_K
    ax.plot(run.array("step"), run.array("knn_acc"), color=OKABE_ITO[4], label="kNN accuracy")
    chance = run.summary.get("knn_chance")
    if chance is not None:
        _reference(ax, chance, f"chance (largest class) = {chance:.3g}", note=False)
        ax.legend(loc="best")
    ax.set_ylim(0, 1.02)
    ax.set(title="kNN accuracy on held-out data", xlabel="step", ylabel=f"accuracy (k = {k})")


def _recall(ax: Axes, run: Run) -> None:
    ax.plot(run.array("step"), run.array("recall_at_1"), color=OKABE_ITO[5], label="recall@1")
    chance = run.summary.get("recall_chance")
    if chance is not None:
        _reference(ax, chance, f"chance (1/M) = {chance:.3g}", note=False)
        ax.legend(loc="best")
    ax.set_ylim(0, 1.02)
    ax.set(title="Recall@1 of held-out pairs", xlabel="step", ylabel="recall@1")


def draw_isotropic(ax: Axes, d: int | None, *ys: np.ndarray, note: bool = False) -> None:
    import numpy as np

    top = max([float(np.nanmax(y, initial=0)) for y in ys] + [1 / math.sqrt(d) if d else 0])
    if d:
        _reference(ax, 1 / math.sqrt(d), f"1/√d = {1 / math.sqrt(d):.3g} (spread out)", note)
    ax.set_ylim(0, max(ax.get_ylim()[1], top * 1.2 or 1))


def _final_spectrum(ax: Axes, run: Run) -> None:
    import numpy as np

    steps, eigs, zero = run.structural_spectrum(SPECTRUM_ROWS)
    if not len(steps):
        return _empty(ax, "Sorted eigenvalue spectrum", "no spectrum logged (log.spectrum: false)")
    d = eigs.shape[1]
    index = np.arange(1, d + 1)
    for k, color, ls in [(0, OKABE_ITO[5], "--"), (-1, OKABE_ITO[0], "-")]:
        ok = ~zero[k]
        ax.plot(index[ok], eigs[k, ok], color=color, ls=ls, label=f"step {int(steps[k])}")
    r = int((~zero[-1]).sum())
    if r < d:
        ax.axvspan(r + 0.5, d + 0.5, color=STRUCTURAL, alpha=0.6, lw=0)
        write_note(
            ax,
            (r + d + 1) / 2,
            0.5,
            zero_label(r, d),
            ax.get_xaxis_transform(),
            color="k",
            fontsize=8,
            **CENTRED,
        )
    log_if_positive(ax, eigs[~zero])
    ax.set(title="Sorted eigenvalue spectrum", xlabel="index i (λ₁ largest)", ylabel="λ_i (log)")
    ax.set_xlim(0.5, d + 0.5)
    ax.legend(loc="lower left")


def _heatmap(ax: Axes, run: Run) -> None:
    import matplotlib
    import numpy as np
    from matplotlib.patches import Patch

    steps, eigs, zero = run.structural_spectrum(SPECTRUM_ROWS)
    if not len(steps):
        return _empty(ax, "Eigenvalue spectrum over training", "no spectrum logged")
    # A figure is a few hundred pixels wide: more columns than that only cost time.
    keep = np.unique(np.linspace(0, len(steps) - 1, min(len(steps), 600)).astype(int))
    with np.errstate(divide="ignore", invalid="ignore"):  # zeros and NaN are masked anyway
        z = np.ma.masked_array(np.log10(eigs[keep]), mask=zero[keep])
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad=STRUCTURAL)
    index = np.arange(1, eigs.shape[1] + 1)
    mesh = ax.pcolormesh(steps[keep], index, z.T, shading="nearest", cmap=cmap, rasterized=True)
    ax.figure.colorbar(mesh, ax=ax, label="log10 λ_i", pad=0.02)
    if zero[keep].any():
        patch = Patch(color=STRUCTURAL, label="structurally 0 (i > rank)")
        ax.legend(handles=[patch], loc="upper right", frameon=True)
    ax.grid(False)
    ax.set(title="Eigenvalue spectrum over training", xlabel="step", ylabel="index i (λ₁ largest)")


def write_note(ax: Axes, x: float, y: float, text: str, transform: Any, **kw: Any) -> None:
    """Small grey text: what a reference line, a shaded span or an empty panel means."""
    ax.text(x, y, text, transform=transform, **{"color": REF, "fontsize": 7, **kw})


def _empty(ax: Axes, title: str, why: str) -> None:
    write_note(ax, 0.5, 0.5, why, ax.transAxes, fontsize=9, **CENTRED)
    ax.set(title=title, xticks=[], yticks=[])


PANELS: dict[str, Callable[[Axes, Run], None]] = {
    "loss": _loss,
    "variance": _variance,
    "min_eig": _min_eig_rank,
    "rank": _ranks,
    "std_l2": _std_l2,
    "spectrum": _heatmap,
    "final_spectrum": _final_spectrum,
    "knn": _knn,
    "recall": _recall,
}
NEEDS = {"knn": "knn_acc", "recall": "recall_at_1"}  # drawn only for runs that logged it
OVERVIEW_MARGINS = {"left": 0.05, "right": 0.985, "top": 0.91, "wspace": 0.22, "hspace": 0.32}
OVERVIEW = ["loss", "variance", "min_eig", "rank", "std_l2", "final_spectrum"]


def figures(run: Run | str | Path) -> dict[str, Figure]:
    """One Figure per panel (the keys of PANELS; ``knn`` only for a run that logged
    ``knn_acc``) and ``overview`` with the main six."""
    run = run if isinstance(run, Run) else load_run(run)
    out: dict[str, Figure] = {}
    with figure_style():
        for name, panel in PANELS.items():
            if name in NEEDS and not any(v is not None for v in run.column(NEEDS[name])):
                continue
            fig = new_figure(1, 1, (6.4, 4), right=0.98 if name == "spectrum" else 0.96)
            panel(fig.axes[0], run)
            out[name] = fig
        fig = new_figure(2, 3, (16, 8.5), **OVERVIEW_MARGINS, bottom=0.07)
        for ax, name in zip(list(fig.axes), OVERVIEW, strict=True):
            PANELS[name](ax, run)
        verdict = run.summary.get("verdict") or f"{run.status}, no verdict yet"
        fig.suptitle(f"{run.id}  ·  {run.summary.get('loss') or '?'}  ·  {verdict}", weight="bold")
        out["overview"] = fig
    return out


def check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt}: choose one of {', '.join(FORMATS)}")


def save(figs: dict[str, Figure], out: Path, fmt: str = "png") -> list[Path]:
    """Write each figure as ``out/<name>.<fmt>``; returns the paths."""
    check_format(fmt)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.{fmt}" for name in figs]
    with figure_style():
        for path, fig in zip(paths, figs.values(), strict=True):
            fig.savefig(path, dpi=DPI)
    return paths


def plot_run(run_dir: Path, out: Path | None = None, fmt: str = "png") -> list[Path]:
    """Draw the standard figures of a run into ``RUN/plots/`` (or ``out``) and return their
    paths; [] when the run has logged nothing yet."""
    check_format(fmt)
    run = load_run(run_dir)
    if not run.metrics:
        return []
    return save(figures(run), Path(out) if out else run.path / PLOTS, fmt)


def plot_named(
    run: str | Path, runs_dir: str | Path = "runs", out: Path | None = None, fmt: str = "png"
) -> list[Path]:
    """``collapse plot RUN``: resolve the name a user typed and draw the run's figures."""
    paths = plot_run(resolve_run(run, runs_dir), out, fmt)
    if not paths:
        raise CollapseError(f"{run}: no metrics logged yet, nothing to plot")
    return paths
