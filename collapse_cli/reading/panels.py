"""The panels of one run's figures: one function per panel, each drawing on an Axes from a
loaded run, and the overview that puts the main ones together."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ..catalogue import AT_SEPARATOR, KNN_K
from ..verdict import min_eig_text, zero_label
from .run import Run, config_value
from .style import (
    CENTRED,
    OKABE_ITO,
    REF,
    SPECTRUM_ROWS,
    STRUCTURAL,
    draw_ceiling,
    draw_empty,
    draw_isotropic,
    draw_reference,
    log_if_positive,
    write_note,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes


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
    ratio = run.thresholds()["complete_variance_ratio"]
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
        if len(lam_r):
            top.plot(s, lam_r, color=OKABE_ITO[0], label="λ_r, r = rank (smallest non-zero)")
        # Zero by construction is not a value: a band along the bottom, never a floor that
        # would read as one on a log axis.
        k = int(np.flatnonzero(structural)[-1])
        text = "λ_min structurally " + min_eig_text(lam[k], int(rank[k]), run.dim)
        band = {"transform": top.get_xaxis_transform(), "step": "post", "lw": 0}
        top.fill_between(steps, 0, 0.05, where=structural, color=STRUCTURAL, label=text, **band)
        if not len(lam_r) and not len(real):
            why = "λ_r needs the spectrum (log.spectrum: false)" if run.dim else ""
            write_note(top, 0.5, 0.5, f"{text} at every step\n{why}", top.transAxes, **CENTRED)
            top.set_yticks([])
    log_if_positive(top, real, lam_r)
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
    names.append(("lidar", "LiDAR (its own probe set)"))  # drawn only when log.lidar was on
    for color, (key, label) in zip(OKABE_ITO, names, strict=False):
        if key in (run.summary.get("max") or {}):  # logged, with a finite value
            ds = "steps-post" if key == "rank" else "default"
            ax.plot(steps, run.array(key), color=color, ds=ds, label=label)
    draw_ceiling(ax, run.reachable_rank, run.rank_ceiling)
    ax.set(title="Rank measures", xlabel="step", ylabel="rank (dimensions)")
    ax.legend(loc="center right")


def _std_l2(ax: Axes, run: Run) -> None:
    y = run.array("std_l2")
    ax.plot(run.array("step"), y, color=OKABE_ITO[2], label="std_l2")
    draw_isotropic(ax, run.dim, y, threshold=run.thresholds()["complete_std_l2"])
    ax.set(title="Std of L2-normalised embeddings", xlabel="step", ylabel="std_l2 (0 = collapsed)")
    ax.legend(loc="best")


def _knn(ax: Axes, run: Run) -> None:
    k = config_value(run.config, "log.knn_k")
    k = k if isinstance(k, int) else KNN_K  # a Monitor's config is the user's own
    ax.plot(run.array("step"), run.array("knn_acc"), color=OKABE_ITO[4], label="kNN accuracy")
    probe = "probe_acc" in (run.summary.get("max") or {})  # log.probe: linear
    if probe:
        ax.plot(run.array("step"), run.array("probe_acc"), color=OKABE_ITO[1], label="linear probe")
    chance = run.summary.get("knn_chance")
    if chance is not None:
        draw_reference(ax, chance, f"chance (largest class) = {chance:.3g}", note=False)
        point = run.summary.get("knn_collapsed")
        if point is not None and point < chance - 0.005:  # what one point scores, when lower
            draw_reference(ax, point, f"collapsed to one point = {point:.3g}", note=False, ls=":")
    if chance is not None or probe:
        ax.legend(loc="best")
    ax.set_ylim(0, 1.02)
    title = "kNN and linear-probe accuracy" if probe else "kNN accuracy"
    ylabel = f"accuracy (kNN: k = {k})" if probe else f"accuracy (k = {k})"
    ax.set(title=f"{title} on held-out data", xlabel="step", ylabel=ylabel)


def _recall(ax: Axes, run: Run) -> None:
    ax.plot(run.array("step"), run.array("recall_at_1"), color=OKABE_ITO[5], label="recall@1")
    chance = run.summary.get("recall_chance")
    if chance is not None:
        draw_reference(ax, chance, f"chance (1/M) = {chance:.3g}", note=False)
        ax.legend(loc="best")
    ax.set_ylim(0, 1.02)
    ax.set(title="Recall@1 of held-out pairs", xlabel="step", ylabel="recall@1")


def _final_spectrum(ax: Axes, run: Run) -> None:
    import numpy as np

    steps, eigs, zero = run.structural_spectrum(SPECTRUM_ROWS)
    if not len(steps):
        why = "no spectrum logged (log.spectrum: false)"
        return draw_empty(ax, "Sorted eigenvalue spectrum", why)
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
        return draw_empty(ax, "Eigenvalue spectrum over training", "no spectrum logged")
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


def _loss_parts(ax: Axes, run: Run) -> None:
    """The loss's logged parts (vicreg's terms, barlow_twins' diagonals, dino's entropy),
    unweighted, one line each."""
    import numpy as np

    steps, ys = run.array("step"), []
    for color, key in zip(OKABE_ITO[1:] + OKABE_ITO[:1], run.loss_parts, strict=False):
        y = run.array(key)
        ax.plot(steps, y, color=color, label=key.replace("_", " "))
        ys.append(y)
    if ys and all(np.nanmin(y, initial=1) > 0 for y in ys):
        log_if_positive(ax, *ys)
    loss = run.summary.get("loss") or "?"
    ax.set(title=f"Parts of the loss ({loss})", xlabel="step", ylabel="value (unweighted)")
    ax.legend(loc="best")


def measured_at(run: Run) -> list[tuple[str, str]]:
    """(label, key) of the effective rank at each place log.at measured, the unprefixed one
    first: ``[("projector", "effective_rank"), ("encoder", "encoder/effective_rank")]``."""
    logged = run.summary.get("max") or {}
    names = list(run.summary.get("measured_at") or [])
    suffix = AT_SEPARATOR + "effective_rank"
    others = [k[: -len(suffix)] for k in logged if k.endswith(suffix)]
    first = names[0] if names else "as logged"
    found = [(first, "effective_rank")] if "effective_rank" in logged else []
    return found + [(name, name + suffix) for name in others]


def _ranks_at(ax: Axes, run: Run) -> None:
    """The effective rank at each representation of log.at (encoder, projector, predictor):
    collapse can differ between the backbone and its heads."""
    import numpy as np

    steps = run.array("step")
    for color, (name, key) in zip(OKABE_ITO, measured_at(run), strict=False):
        rank = run.array(key.replace("effective_rank", "rank"))  # each place has its own d
        start = f" (rank {int(rank[0])} at step 0)" if len(rank) and np.isfinite(rank[0]) else ""
        ax.plot(steps, run.array(key), color=color, label=f"at the {name}{start}")
    ax.set_ylim(bottom=0)
    ax.set(title="Effective rank where it is measured (log.at)", xlabel="step",
           ylabel="effective rank (dimensions)")  # fmt: skip
    ax.legend(loc="best")


PANELS: dict[str, Callable[[Axes, Run], None]] = {
    "loss": _loss,
    "loss_parts": _loss_parts,
    "variance": _variance,
    "min_eig": _min_eig_rank,
    "rank": _ranks,
    "std_l2": _std_l2,
    "knn": _knn,
    "recall": _recall,
    "spectrum": _heatmap,
    "final_spectrum": _final_spectrum,
    "rank_at": _ranks_at,
}


def _forces(ax: Axes, run: Run) -> None:
    """InfoNCE's two gradient terms per anchor over training, their difference (the net force)
    on the same log axis, and the ratio repulsion / attraction in a strip underneath: where
    the two balance, the net force is 0 and the ratio 1."""
    fig, spec = ax.figure, ax.get_subplotspec()
    ax.remove()
    grid = spec.subgridspec(2, 1, height_ratios=[3, 1], hspace=0.08)
    top = fig.add_subplot(grid[0])
    strip = fig.add_subplot(grid[1], sharex=top)
    steps, ys = run.array("step"), []
    names = [("force_attraction", "attraction ‖z_i⁺‖/τ"),
             ("force_repulsion", "repulsion ‖Σ P(k|i) z_k‖/τ"),
             ("force_net", "net ‖repulsion − attraction‖")]  # fmt: skip
    for color, (key, label) in zip(OKABE_ITO[1:], names, strict=False):
        y = run.array(key)
        top.plot(steps, y, color=color, ls="--" if key == "force_net" else "-", label=label)
        ys.append(y)
    log_if_positive(top, *ys)
    top.set(title="Forces on an anchor (terms of ∇ InfoNCE, mean over anchors)", ylabel="norm")
    top.tick_params(labelbottom=False)
    top.legend(loc="best")
    strip.plot(steps, run.array("force_ratio"), color=REF, label="repulsion / attraction")
    strip.axhline(1, color=REF, ls=":", lw=1)
    strip.set(xlabel="step", ylabel="ratio")


PANELS["forces"] = _forces  # drawn for runs of InfoNCE objectives, which log them
OVERVIEW = ["loss", "variance", "min_eig", "rank", "std_l2", "final_spectrum"]
OPTIONAL = ["knn", "recall", "loss_parts"]  # in the overview too, for runs that logged them


def drawn(run: Run) -> list[str]:
    """The panels a run has data for: kNN only with labelled data, the loss parts only when the
    loss logs some, the spectra only with log.spectrum (the overview's panel then says so)."""
    has = {
        "knn": any(v is not None for v in run.column("knn_acc")),
        "recall": any(v is not None for v in run.column("recall_at_1")),
        "loss_parts": bool(run.loss_parts),
        "spectrum": bool(len(run.spectra(SPECTRUM_ROWS))),
        "forces": any(v is not None for v in run.column("force_ratio")),
        "rank_at": len(measured_at(run)) > 1,  # log.at measured more than one place
    }
    has["final_spectrum"] = has["spectrum"]
    return [name for name in PANELS if has.get(name, True)]


def overview(run: Run) -> list[str]:
    """The overview's panels: the main six, then kNN accuracy and the loss parts if logged."""
    have = drawn(run)
    return OVERVIEW + [name for name in OPTIONAL if name in have]
