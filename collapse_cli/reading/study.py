"""The figures of runs grouped by seed: mean curves with a band of ± one standard deviation
(``collapse compare``), and a sweep's study figure (``collapse plot SWEEP``): each final metric
against each swept parameter, one line per value of the others, error bars over seeds, and for
two parameters a map of the grid coloured by the majority verdict.

Drawn with the helpers and the look of style.py (matplotlib, lazily).
"""

from __future__ import annotations

import itertools
import math
import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..catalogue import LOG_SCALE
from ..errors import CollapseError
from ..verdict import COMPLETE, DIMENSIONAL, HEALTHY
from .figures import check_format, save
from .overlays import curve, decorate
from .run import Run
from .style import DASHES, OKABE_ITO, REF, figure_style, log_if_positive, new_figure, write_note
from .sweep import OUTCOMES, STUDY, TITLES, Group, Sweep, open_sweep, sweep_groups

if TYPE_CHECKING:
    import numpy as np
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

# Each outcome's colour in the verdict map: Okabe-Ito's green, orange and vermillion for the
# verdicts, greys for runs without one.
OUTCOME_COLOURS = {
    HEALTHY: OKABE_ITO[2],
    DIMENSIONAL: OKABE_ITO[1],
    COMPLETE: OKABE_ITO[3],
    "diverged": "0.15",
    "failed": "0.45",
    "no result": "0.88",
}


# --------------------------------------------------------------------------- mean curves
def mean_curve(runs: list[Run], key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(steps, mean, std) of one metric over runs, step by step on the union of their logged
    steps: the mean of the runs that have a finite value there, the sample standard deviation
    (n − 1) where at least two do (NaN elsewhere)."""
    import numpy as np

    curves = [curve(r, key) for r in runs]
    steps = np.unique(np.concatenate([x for x, _ in curves])) if curves else np.array([])
    values = np.full((len(curves), len(steps)), np.nan)
    for i, (x, y) in enumerate(curves):
        values[i, np.searchsorted(steps, x)] = y
    finite = np.isfinite(values)
    n = finite.sum(axis=0)
    total = np.where(finite, values, 0.0).sum(axis=0)
    mean = np.divide(total, n, out=np.full(len(steps), np.nan), where=n > 0)
    squares = np.where(finite, (values - mean) ** 2, 0.0).sum(axis=0)
    std = np.sqrt(np.divide(squares, n - 1, out=np.full(len(steps), np.nan), where=n > 1))
    return steps, mean, std


def draw_bands(ax: Axes, groups: list[Group], labels: list[str], key: str) -> None:
    """One mean curve per group over its completed runs, shaded ± one standard deviation."""
    import numpy as np

    means = []
    for i, (group, label) in enumerate(zip(groups, labels, strict=True)):
        if not group.used:
            continue
        steps, mean, std = mean_curve(group.used, key)
        colour = OKABE_ITO[i % 8]
        ax.plot(steps, mean, color=colour, ls=DASHES[i // 8 % 4], label=label)
        low, high = mean - std, mean + std
        if key in LOG_SCALE and np.any(mean > 0):  # a log axis cannot show a band below 0
            low = np.maximum(low, np.nanmin(mean[mean > 0]) / 10)
        ax.fill_between(steps, low, high, color=colour, alpha=0.2, lw=0)
        means.append(mean)
    decorate(ax, [r for g in groups for r in g.used], key, means)


# --------------------------------------------------------------------------- the study figure
def _numbers(values: list[Any]) -> list[float] | None:
    nums = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return sorted(nums) if len(nums) == len(values) and len(set(nums)) == len(nums) else None


def _spread(gaps: list[float]) -> float:
    """How unevenly spaced: the coefficient of variation of the gaps between values."""
    return statistics.pstdev(gaps) / statistics.fmean(gaps)


def is_logarithmic(values: list[Any]) -> bool:
    """Whether a grid reads better on a log axis: every value a positive number, spaced more
    evenly in log than in linear terms (two values: a factor of ten or more apart)."""
    s = _numbers(values)
    if s is None or len(s) < 2 or s[0] <= 0:
        return False
    if len(s) == 2:
        return s[1] / s[0] >= 10
    linear = [b - a for a, b in itertools.pairwise(s)]
    logs = [math.log(b / a) for a, b in itertools.pairwise(s)]
    return _spread(logs) < _spread(linear)


def axis_kind(values: list[Any]) -> str:
    """``log`` for a logarithmic grid; ``linear`` for numbers spaced about evenly (or two);
    ``category`` for anything else (names, lists, or numbers like 0, 1, 25), drawn at evenly
    spaced positions labelled with the values."""
    if is_logarithmic(values):
        return "log"
    s = _numbers(values)
    if s is None:
        return "category"
    if len(s) <= 2 or _spread([b - a for a, b in itertools.pairwise(s)]) <= 0.5:
        return "linear"
    return "category"


def _text(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _panel(ax: Axes, groups: list[Group], keys: list[str], key: str, grid: dict, metric: str):
    """``metric`` against ``key``: one line per combination of the other swept values."""
    values = grid[key]
    kind = axis_kind(values)
    xs = list(range(len(values))) if kind == "category" else list(values)
    others = [k for k in keys if k != key]
    lines: dict[str, dict[int, Group]] = {}
    for g in groups:
        label = ", ".join(
            _text(g.params.get(k)) if len(others) == 1 else f"{k}={_text(g.params.get(k))}"
            for k in others
        )
        if g.params.get(key) in values:
            lines.setdefault(label, {})[values.index(g.params.get(key))] = g
    ys = []
    for i, (label, by_x) in enumerate(lines.items()):
        stats = [by_x[j].stat(metric) if j in by_x else (None, None, 0) for j in range(len(xs))]
        mean = [math.nan if m is None else m for m, _, _ in stats]
        err = [0.0 if s is None else s for _, s, _ in stats]
        ax.errorbar(xs, mean, yerr=err, color=OKABE_ITO[i % 8], ls=DASHES[i // 8 % 4],
                    marker="o", ms=4, capsize=3, label=label or None)  # fmt: skip
        ys += [m for m in mean if not math.isnan(m)]
    if kind == "log":
        ax.set_xscale("log")
    if kind == "category":
        ax.set_xticks(xs, [_text(v) for v in values])
        ax.set_xlim(-0.4, len(xs) - 0.6)
    ax.set(xlabel=key, ylabel=TITLES[metric])
    _references(ax, groups, metric, ys)


def _references(ax: Axes, groups: list[Group], metric: str, ys: list[float]) -> None:
    """The lines a reader judges a final metric by: the verdict's thresholds, chance, 1."""
    import numpy as np

    runs = [r for g in groups for r in g.used]
    verdict = ((runs[0].config.get("log") or {}).get("verdict") or {}) if runs else {}
    if metric == "variance_ratio":
        log_if_positive(ax, np.array(ys))
        limit = verdict.get("complete_variance_ratio", 1e-3)
        ax.axhline(limit, color=REF, ls=":", lw=1)
        write_note(ax, 0.01, limit, f"complete collapse ({limit:g})", ax.get_yaxis_transform(),
                   va="bottom")  # fmt: skip
    elif metric == "std_l2_sqrt_d":
        limit = verdict.get("complete_std_l2", 0.05)
        ax.axhline(1, color=REF, ls="--", lw=1)
        ax.axhline(limit, color=REF, ls=":", lw=1)
        write_note(ax, 0.01, 1, "spread out (1)", ax.get_yaxis_transform(), va="bottom")
        ax.set_ylim(0, max([1.15, *ys]) * 1.05)
    elif metric == "knn_acc":
        chance = [r.summary.get("knn_chance") for r in runs if r.summary.get("knn_chance")]
        if chance:
            ax.axhline(statistics.fmean(chance), color=REF, ls="--", lw=1)
            write_note(ax, 0.01, statistics.fmean(chance), "chance", ax.get_yaxis_transform(),
                       va="bottom")  # fmt: skip
        ax.set_ylim(0, 1.02)
    elif metric == "effective_rank":
        ceilings = {r.reachable_rank for r in runs if r.reachable_rank}  # rank at step 0
        if len(ceilings) == 1:
            ceiling = ceilings.pop()
            ax.axhline(ceiling, color=REF, ls="--", lw=1)
            write_note(ax, 0.01, ceiling, f"reachable rank {ceiling}", ax.get_yaxis_transform(),
                       va="bottom")  # fmt: skip
            ax.set_ylim(0, ceiling * 1.12)
        else:
            ax.set_ylim(bottom=0)


def verdict_map(ax: Axes, groups: list[Group], keys: list[str], grid: dict) -> None:
    """The grid of two swept parameters, each cell coloured by the majority outcome of its
    seeds and labelled with how many of them had it."""
    import numpy as np
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    rows, cols = grid[keys[0]], grid[keys[1]]
    codes = np.full((len(rows), len(cols)), OUTCOMES.index("no result"))
    for g in groups:
        i, j = rows.index(g.params.get(keys[0])), cols.index(g.params.get(keys[1]))
        outcome, count = g.majority()
        codes[i, j] = OUTCOMES.index(outcome)
        dark = outcome in ("diverged", "failed", COMPLETE)
        short = {COMPLETE: "complete", DIMENSIONAL: "dimensional"}.get(outcome, outcome)
        ax.text(j, i, f"{short}\n{count}/{len(g.members)}", ha="center", va="center",
                fontsize=8, color="white" if dark else "black")  # fmt: skip
    cmap = ListedColormap([OUTCOME_COLOURS[o] for o in OUTCOMES])
    ax.imshow(codes, cmap=cmap, vmin=-0.5, vmax=len(OUTCOMES) - 0.5, aspect="auto")
    ax.set_xticks(range(len(cols)), [_text(v) for v in cols])
    ax.set_yticks(range(len(rows)), [_text(v) for v in rows])
    ax.set(xlabel=keys[1], ylabel=keys[0], title="Majority verdict over seeds")
    ax.grid(False)
    shown = sorted({int(c) for c in codes.flat})
    handles = [Patch(color=OUTCOME_COLOURS[OUTCOMES[c]], label=OUTCOMES[c]) for c in shown]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(0, -0.18), ncols=2)


def study_figure(sweep: Sweep) -> Figure:
    """The study of a sweep: rows are the final metrics of `STUDY` that its runs have, columns
    the swept parameters, plus the verdict map when there are two."""
    groups, keys, grid = sweep_groups(sweep), sweep.keys, sweep.grid
    if not keys:
        raise CollapseError(
            f"{sweep.path}: a sweep over seeds only has no parameter to draw against; "
            "collapse compare shows its means"
        )
    metrics = [m for m in STUDY if any(g.stat(m)[2] for g in groups)]
    if not metrics:
        raise CollapseError(f"{sweep.path}: no run of the sweep has completed yet, nothing to plot")
    two = len(keys) == 2
    rows, cols = len(metrics), len(keys) + two
    width = 4.4 * cols
    fig = new_figure(rows, cols, (width, 2.7 * rows + 1.0), left=0.8 / width, right=0.98,
                     top=1 - 0.55 / (2.7 * rows + 1), bottom=0.55 / (2.7 * rows + 1) + 0.03,
                     wspace=0.3, hspace=0.45)  # fmt: skip
    axes = [fig.axes[r * cols : (r + 1) * cols] for r in range(rows)]
    for r, metric in enumerate(metrics):
        for c, key in enumerate(keys):
            _panel(axes[r][c], groups, keys, key, grid, metric)
            if r == 0 and len(keys) > 1:
                others = ", ".join(k for k in keys if k != key)
                axes[r][c].legend(loc="best", title=others, fontsize=7, title_fontsize=7)
    if two:
        spec = axes[0][-1].get_subplotspec().get_gridspec()
        for r in range(rows):
            axes[r][-1].remove()
        verdict_map(fig.add_subplot(spec[: min(2, rows), -1]), groups, keys, grid)
    seeds = len(sweep.index.get("seeds") or [])
    spread = f"mean ± std over {seeds} seeds" if seeds != 1 else "one seed"
    title = f"{sweep.index.get('id', sweep.path.name)}\n{spread}"
    fig.suptitle(title, weight="bold")
    return fig


def plot_sweep(
    path: Path, out: Path | None = None, fmt: str = "png", *, dpi: int | None = None
) -> list[Path]:
    """``collapse plot SWEEP``: the study figure into ``SWEEP/plots/study.<fmt>`` (or ``out``)."""
    check_format(fmt)
    sweep = open_sweep(path)
    with figure_style():
        fig = study_figure(sweep)
    return save({"study": fig}, Path(out) if out else path / "plots", fmt, dpi)
