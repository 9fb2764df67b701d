"""One line per metric saying what its value means for this (N, d) matrix (no torch, no Rich).
The rules are listed in docs/inspect.md; the collapse bands use the verdict's thresholds."""

from __future__ import annotations

import bisect
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
NOISE_MARGIN = 0.15  # α within max(this, this × α_noise) of white noise's reads as noise


def _band(x: float, bands: list[tuple[float, str]], above: str) -> str:
    return next((text for bound, text in bands if x < bound), above)


def alpha_of_noise(n: int, d: int, points: int = 2000) -> float:
    """The α-ReQ that isotropic Gaussian data of N rows in d dimensions reads, from the
    Marchenko–Pastur law: the r = min(d, N − 1) nonzero sample eigenvalues of white noise fill
    [(1 − √γ)², (1 + √γ)²], γ = r / max(d, N − 1), with density √((b − x)(x − a)) / (2πγx); the
    i-th largest sits near the quantile 1 − (i − ½)/r, and α is the least-squares fit of
    `metrics.alpha_req_from_spectrum` over those quantiles (i = 2 … ⌊0.9 r⌋). A flat population
    spectrum still decays in a finite sample: 0.25 at N/d = 16, 0.51 at 4, 0.76 at 2, 1.3 at 1.
    """
    r = min(d, n - 1)
    end = int(0.9 * r + 1e-9)
    if end < 3:
        return math.nan
    g = r / max(d, n - 1)
    a, b = (1 - math.sqrt(g)) ** 2, (1 + math.sqrt(g)) ** 2
    # x = a + (b − a)(1 − cos θ)/2 makes the density's square roots smooth: f dx ∝ sin²θ / x dθ
    th = [math.pi * k / points for k in range(points + 1)]
    xs = [a + (b - a) * (1 - math.cos(t)) / 2 for t in th]
    f = [math.sin(t) ** 2 / x if x > 0 else 4 / b for t, x in zip(th, xs, strict=True)]
    cdf = [0.0]
    for k in range(points):
        cdf.append(cdf[-1] + (f[k] + f[k + 1]) / 2)
    cdf = [c / cdf[-1] for c in cdf]

    def quantile(p: float) -> float:
        k = min(max(bisect.bisect_left(cdf, p), 1), points)
        w = (p - cdf[k - 1]) / (cdf[k] - cdf[k - 1])
        return xs[k - 1] + w * (xs[k] - xs[k - 1])

    lx = [math.log(i) for i in range(2, end + 1)]
    ly = [math.log(quantile(1 - (i - 0.5) / r)) for i in range(2, end + 1)]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    cov = sum((x - mx) * (y - my) for x, y in zip(lx, ly, strict=True))
    return -cov / sum((x - mx) ** 2 for x in lx)


def _alpha(alpha: float, n: int, d: int) -> str:
    """α against the paper's bands and against white noise of the same shape."""
    noise = alpha_of_noise(n, d)
    ratio = f"N/d = {n / d:.2g}"
    if math.isfinite(noise) and abs(alpha - noise) < max(NOISE_MARGIN, NOISE_MARGIN * noise):
        return (
            f"as white noise of this shape (isotropic Gaussian data: α ≈ {noise:.2f} at {ratio}): "
            "the decay is the finite sample's, not the features'"
        )
    text = _band(alpha, ALPHA_BANDS, ALPHA_ABOVE)
    if math.isfinite(noise) and noise >= ALPHA_BANDS[0][0]:  # N/d ≲ 4: noise is not flat here
        text = text.replace(", typical of good SSL features", "")
        text += (
            f"; but white noise of this shape reads α ≈ {noise:.2f} ({ratio}): compare with that"
        )
    return text


def dims_text(dims: dict[str, Any], d: int, limit: int = 12) -> str:
    """``3 of 384 axes carry no variance (127, 223, 319, counting from 0)``: the first ``limit``
    indices of `metrics.dimensions`'s dead axes, then …"""
    dead = dims["dead"]
    if not dead:
        return f"all {d} axes carry variance"
    if len(dead) == d:
        return f"none of the {d} axes carries variance"
    shown = ", ".join(map(str, dead[:limit])) + (", …" if len(dead) > limit else "")
    return f"{len(dead)} of {d} axes carry no variance ({shown}, counting from 0)"


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
    if rank == 0 and eigs[0] > 0:
        return f"every eigenvalue is round-off of the values (λ₁ = {eigs[0]:.3g}), counted as 0"
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
    dims: dict[str, Any] | None = None,
) -> dict[str, str]:
    """A reading of every metric in ``m`` (`compute_metrics` of N = ``n`` rows, plus
    ``knn_acc`` with ``knn``, its split and chance levels) given the spectrum ``eigs``;
    ``dims``: `metrics.dimensions` (dead axes, the rank threshold), when known."""
    d, rank, frac = len(eigs), int(m["rank"]), thresholds["dimensional_fraction"]
    ref, total, var = min(n - 1, d), sum(eigs), m["variance"]
    roundoff = rank == 0 and total > 0  # a spread, but all of it below the rank threshold
    tol = f" ({dims['threshold']:.3g})" if dims else ""
    # The centred spread is intact: resolved above round-off and not dimensionally collapsed.
    intact = rank > 0 and m["effective_rank"] >= frac * ref
    out: dict[str, str] = {}

    out["variance"] = "0: every row is the same point"
    if var > 0:
        out["variance"] = f"σ ≈ {math.sqrt(var):.3g} per dimension (depends on scale)"
    out["min_eig"] = _min_eig(eigs, rank, n)
    out["max_eig"] = "0: no variance"
    if roundoff:
        out["max_eig"] = f"round-off: λ₁ = {eigs[0]:.3g} is below the rank threshold{tol}"
    elif total > 0:
        out["max_eig"] = f"{eigs[0] / total:.0%} of the total variance"
        out["max_eig"] += ": one direction dominates" * (eigs[0] > total / 2)
    out["rank"] = _band(rank, [(1, "a point"), (2, "a line")], f"{rank} of {ref} attainable")
    if roundoff:
        out["rank"] = "a point at this precision: the spread is round-off of the values"
    out["rank"] += f" (N − 1 = {n - 1} < d caps it)" * (n - 1 < d)

    out["effective_rank"] = spread(m["effective_rank"], ref, frac)
    if 1 < rank < ref:  # how evenly the directions it does span are used
        out["effective_rank"] += f"; {m['effective_rank'] / rank:.0%} of its rank {rank}"
    if roundoff:
        out["effective_rank"] += " (the shape of round-off: rank 0)"
    out["rankme"] = _rankme(m["rankme"], min(n, d), frac)
    if m["rankme"] < m["effective_rank"] / 2:
        out["rankme"] += "; far below effective_rank: the rows share an offset"
    iso = d * (n - 1) / (n + d)  # participation ratio of isotropic Gaussian data of this shape
    pr = spread(m["participation_ratio"], iso, frac)
    out["participation_ratio"] = f"{pr} (isotropic Gaussian data: ≈ {iso:.3g})"
    if "alpha_req" in m:
        out["alpha_req"] = _alpha(m["alpha_req"], n, d)

    s = m["std_l2"] * math.sqrt(d)
    cone = [(thresholds["complete_std_l2"], ": all rows point one way")]
    cone += [(NARROW_CONE, ": a narrow cone")]
    out["std_l2"] = f"{s:.2g} × 1/√d (1 = spread over the sphere)" + _band(s, cone, "")
    if s < NARROW_CONE and intact:
        out["std_l2"] += ", around a shared offset; centred, the spread is intact (see norm_mean)"
    if "uniformity" in m:
        ideal = -4 + 8 / d - 64 / (d * d * (d + 2))  # rows uniform on the sphere (metrics.md)
        word = _band(m["uniformity"] / ideal, UNIFORMITY_BANDS, UNIFORMITY_ABOVE)
        out["uniformity"] = f"{word} (0 = collapsed, {ideal:.2f} = uniform)"
    if "mean_cosine" in m:
        out["mean_cosine"] = _band(m["mean_cosine"], COSINE_BANDS, COSINE_ABOVE)
    out["norm_mean"] = _norm_mean(m["norm_mean"], math.sqrt(d * var), rank, intact)
    if var > 0 and not roundoff and math.sqrt(d * var) < TIGHT_CLOUD * m["norm_mean"]:
        # the ranks above measure the shape of that tiny cloud
        out["effective_rank"] += " (the shape of a tight cloud: see norm_mean)"

    if knn is not None and "knn_acc" in m:
        acc, chance = m["knn_acc"], knn["chance"]
        out["knn_acc"] = f"chance {chance:.2f} ({knn['classes']} classes, {knn['test']} held out)"
        point = knn.get("collapsed")
        if point is not None and point < chance - 0.005:  # the two differ: show both
            out["knn_acc"] += f"; one point (collapsed) scores {point:.2f}"
        floor = chance if point is None else max(chance, point)
        out["knn_acc"] += ": at chance" if acc < floor + AT_CHANCE else f", {acc / chance:.1f}×"
    return out


def _rankme(x: float, ref: int, frac: float) -> str:
    """RankMe counts singular values of the uncentred rows: ≈ 1 is one vector repeated (or
    rows along one line through the origin), not a line of points."""
    if x == 0:
        return "0: every row is the zero vector"
    if x < 1.5:
        return "≈ 1: the rows are multiples of one vector (one point repeated, or a cone's axis)"
    return spread(x, ref, frac)


def _norm_mean(norm: float, rms: float, rank: int, intact: bool) -> str:
    """The mean row norm against the RMS distance to the mean, √(d · variance)."""
    if norm == 0:
        return "0: every row is the zero vector"
    if rms == 0:
        return f"every row is the same point, at distance {norm:.3g} from the origin"
    rel = rms / norm
    head = f"the RMS distance to the mean is {rel:.2g} × this"
    if rel >= 0.9:
        return head + ": the rows spread around the origin (their mean is near 0)"
    if rel >= TIGHT_CLOUD:
        return head + ": the rows share an offset (a cone)"
    head += ": a tight cloud away from the origin"
    if intact:
        return (
            head + "; an offset cone: the rows share one direction, their centred spread is intact"
        )
    return head + ("; a point at this precision" if rank == 0 else "")
