"""Overlays of several runs for ``collapse compare``: one line per run for each metric of the
catalogue that ``compare`` draws, and an overview of the main six."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ..catalogue import BY_KEY, CEILED, LOG_SCALE, OVERVIEW
from .run import Run
from .style import (
    DASHES,
    OKABE_ITO,
    OVERVIEW_MARGINS,
    SPECTRUM_ROWS,
    draw_ceiling,
    draw_isotropic,
    draw_reference,
    figure_style,
    log_if_positive,
    new_figure,
    write_note,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def _overlay(ax: Axes, runs: list[Run], labels: list[str], key: str) -> None:
    """One line per run; each run on its own steps, so runs of different lengths overlay."""
    import numpy as np

    ys = []
    for i, (run, label) in enumerate(zip(runs, labels, strict=True)):
        x, y = (
            run.smallest_nonzero(SPECTRUM_ROWS)
            if key == "min_eig"
            else (run.array("step"), run.array(key))
        )
        ax.plot(x, y, color=OKABE_ITO[i % 8], ls=DASHES[i // 8 % 4], label=label)
        ys.append(y)
    if key in LOG_SCALE or (key == "loss" and all(np.nanmin(y, initial=1) > 0 for y in ys)):
        log_if_positive(ax, *ys)
    if key in CEILED:
        for reachable in sorted({r.reachable_rank for r in runs if r.reachable_rank}):
            draw_ceiling(ax, reachable, None, note=True)
        ax.set_ylim(bottom=0)
    if key == "knn_acc":
        ax.set_ylim(0, 1.02)
        for chance in sorted({r.summary["knn_chance"] for r in runs if "knn_chance" in r.summary}):
            draw_reference(ax, chance, f"chance (largest class) = {chance:.3g}", note=True)
    if key == "std_l2":
        limit = runs[0].thresholds()["complete_std_l2"]
        for d in sorted({r.dim for r in runs if r.dim}):
            draw_isotropic(ax, d, *ys, threshold=limit, note=True)
    if key == "min_eig" and any(r.structural_min_eig().any() for r in runs):
        write_note(ax, 0.01, 0.02, "λ_min itself is structurally 0 where rank < d", ax.transAxes)
    ax.set(title=BY_KEY[key].title, xlabel="step", ylabel=BY_KEY[key].axis)


def compare_figures(
    runs: list[Run], labels: list[str], keys: list[str], title: str | None = None
) -> dict[str, Figure]:
    """One overlay Figure per metric in ``keys`` and ``overview`` with the main ones (kNN
    accuracy with its chance line among them when the runs logged it)."""
    out: dict[str, Figure] = {}
    n = len(runs)
    # No layout engine (see new_figure): room for the legend is estimated from its longest label,
    # about 0.07 in per character at 8 pt.
    right = max(0.45, 0.95 - (0.07 * max(map(len, labels)) + 0.45) / 8)
    legend_rows = math.ceil(n / 4)
    with figure_style():
        for key in keys:
            fig = new_figure(1, 1, (8, 4.2), right=right)
            _overlay(fig.axes[0], runs, labels, key)
            fig.axes[0].legend(loc="upper left", bbox_to_anchor=(1.02, 1), title="run")
            out[key] = fig
        main = [k for k in [*OVERVIEW, "knn_acc"] if k in keys]  # kNN too, when logged
        cols = math.ceil(len(main) / 2) or 1
        size = (16 * cols / 3, 9)
        fig = new_figure(2, cols, size, **OVERVIEW_MARGINS, bottom=0.08 + 0.022 * legend_rows)
        for ax in fig.axes[len(main) :]:
            ax.remove()
        for ax, key in zip(list(fig.axes), main, strict=False):
            _overlay(ax, runs, labels, key)
        handles = fig.axes[0].get_legend_handles_labels() if main else ([], [])
        fig.legend(*[h[:n] for h in handles], loc="lower center", ncols=min(n, 4), title="run")
        fig.suptitle(title or f"Comparison of {n} runs", weight="bold")
        out["overview"] = fig
    return out
