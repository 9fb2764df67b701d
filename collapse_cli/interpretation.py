"""One line per metric saying what its value means for this (N, d) matrix (no torch, no Rich).
The rules are listed in docs/inspect.md; the collapse bands use the verdict's thresholds."""

from __future__ import annotations

import math
from typing import Any

from .verdict import SUB, zero_range

# Bands: (upper bound, text); the first bound the value is below picks the text.
ALPHA_BANDS = [
    (0.5, "flat: variance spread evenly (whitened)"),
    (1.5, "decay near α ≈ 1, typical of good SSL features"),
]
ALPHA_ABOVE = "steep decay: a few directions dominate"
COSINE_BANDS = [
    (-0.1, "rows point apart"),
    (0.1, "no common direction (≈ 0 is healthy)"),
    (0.3, "a weak common direction"),
    (0.9, "a common direction"),
]
COSINE_ABOVE = "all rows point the same way"
UNIFORMITY_BANDS = [(0.25, "bunched together"), (0.75, "partly clustered")]  # share of ideal
UNIFORMITY_ABOVE = "close to uniform on the sphere"
NARROW_CONE = 0.5  # std_l2·√d below this (and above complete_std_l2): a narrow cone
TIGHT_CLOUD = 0.1  # RMS distance to the mean below this × the mean norm: a tight cloud
AT_CHANCE = 0.05  # knn_acc within this of chance reads "at chance"


def _band(x: float, bands: list[tuple[float, str]], above: str) -> str:
    return next((text for bound, text in bands if x < bound), above)


def spread(x: float, ref: float, frac: float) -> str:
    """How a rank-like value ``x`` compares with the ``ref`` directions it could reach: below
    ``frac`` of them (the verdict's dimensional_fraction) is collapse, below half concentrated."""
    if x == 0:
        return "0: no spread, a point"
    if x < 1.5:
        return "collapsed to a line"
    share = f"{x / ref:.0%} of {ref:.3g}"
    if x < frac * ref:
        return f"{share}: collapsed to ≈ {round(x)} directions"
    return f"{share}: {'concentrated' if x < 0.5 * ref else 'spread'}"


def _min_eig(eigs: list[float], rank: int, n: int) -> str:
    d = len(eigs)
    if rank == 0:
        return "every eigenvalue is 0"
    if rank == d:
        return f"full rank; λ_min / λ_max = {eigs[-1] / eigs[0]:.2g}"
    why = "N − 1 < d" if rank == n - 1 < d else f"the rows span {rank} of {d} dimensions"
    r = str(rank).translate(SUB)
    return f"{zero_range(rank, d)} are 0 ({why}); the smallest nonzero λ{r} = {eigs[rank - 1]:.3g}"


def readings(
    m: dict[str, float],
    eigs: list[float],
    n: int,
    thresholds: dict[str, float],
    knn: dict[str, Any] | None = None,
) -> dict[str, str]:
    """A reading of every metric in ``m`` (`compute_metrics` of N = ``n`` rows, plus
    ``knn_acc`` with ``knn``, its split and chance level) given the spectrum ``eigs``."""
    d, rank, frac = len(eigs), int(m["rank"]), thresholds["dimensional_fraction"]
    ref, total, var = min(n - 1, d), sum(eigs), m["variance"]
    out: dict[str, str] = {}

    out["variance"] = "0: every row is the same point"
    if var > 0:
        out["variance"] = f"σ ≈ {math.sqrt(var):.3g} per dimension (depends on scale)"
    out["min_eig"] = _min_eig(eigs, rank, n)
    out["max_eig"] = "0: no variance"
    if total > 0:
        out["max_eig"] = f"{eigs[0] / total:.0%} of the total variance"
        out["max_eig"] += ": one direction dominates" * (eigs[0] > total / 2)
    out["rank"] = _band(rank, [(1, "a point"), (2, "a line")], f"{rank} of {ref} attainable")
    out["rank"] += f" (N − 1 = {n - 1} < d caps it)" * (n - 1 < d)

    out["effective_rank"] = spread(m["effective_rank"], ref, frac)
    if 1 < rank < ref:  # how evenly the directions it does span are used
        out["effective_rank"] += f"; {m['effective_rank'] / rank:.0%} of its rank {rank}"
    out["rankme"] = spread(m["rankme"], min(n, d), frac)
    if m["rankme"] < m["effective_rank"] / 2:
        out["rankme"] += "; far below effective_rank: the rows share an offset"
    iso = d * (n - 1) / (n + d)  # participation ratio of isotropic Gaussian data of this shape
    pr = spread(m["participation_ratio"], iso, frac)
    out["participation_ratio"] = f"{pr} (isotropic Gaussian data: ≈ {iso:.3g})"
    if "alpha_req" in m:
        out["alpha_req"] = _band(m["alpha_req"], ALPHA_BANDS, ALPHA_ABOVE)

    s = m["std_l2"] * math.sqrt(d)
    cone = [(thresholds["complete_std_l2"], ": all rows point one way")]
    cone += [(NARROW_CONE, ": a narrow cone")]
    out["std_l2"] = f"{s:.2g} × 1/√d (1 = spread over the sphere)" + _band(s, cone, "")
    if "uniformity" in m:
        ideal = -4 + 8 / d - 64 / (d * d * (d + 2))  # rows uniform on the sphere (metrics.md)
        word = _band(m["uniformity"] / ideal, UNIFORMITY_BANDS, UNIFORMITY_ABOVE)
        out["uniformity"] = f"{word} (0 = collapsed, {ideal:.2f} = uniform)"
    if "mean_cosine" in m:
        out["mean_cosine"] = _band(m["mean_cosine"], COSINE_BANDS, COSINE_ABOVE)
    if m["norm_mean"] > 0:
        rel = math.sqrt(d * var) / m["norm_mean"]  # RMS distance to the mean / mean norm
        out["norm_mean"] = f"the RMS distance to the mean is {rel:.2g} × this"
        out["norm_mean"] += ": a tight cloud away from the origin" * (rel < TIGHT_CLOUD)
        if rel < TIGHT_CLOUD:  # the ranks above measure the shape of that tiny cloud
            out["effective_rank"] += " (the shape of a tight cloud: see norm_mean)"

    if knn is not None and "knn_acc" in m:
        acc, chance = m["knn_acc"], knn["chance"]
        out["knn_acc"] = f"chance {chance:.2f} ({knn['classes']} classes, {knn['test']} held out)"
        out["knn_acc"] += ": at chance" if acc < chance + AT_CHANCE else f", {acc / chance:.1f}×"
    return out
