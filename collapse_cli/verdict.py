"""The collapse verdict, and how a structurally zero λ_min reads (standard library only).

One function, `findings`, applies the thresholds; the verdict, the summary and the live
table's colouring all read its result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

COMPLETE, DIMENSIONAL, HEALTHY = "complete collapse", "dimensional collapse", "healthy"
# log.verdict's defaults (config.VerdictConfig validates them; readers of old runs use these)
DEFAULT_THRESHOLDS = {
    "complete_variance_ratio": 1e-3,
    "complete_std_l2": 0.05,
    "dimensional_fraction": 0.25,
}
# train.stop_on's verdicts, the most severe first: stopping on one stops on any more severe.
STOP_VERDICTS = (COMPLETE, DIMENSIONAL)
NOT_JUDGED = "not judged"  # how readers show the missing verdict of a diverged or interrupted run
SUB = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")


@dataclass(frozen=True)
class Finding:
    """One threshold crossed: the verdict it gives, the metric that crossed it, and why."""

    verdict: str
    key: str
    reason: str


def findings(
    row: dict[str, Any],
    dim: int,
    reference_rank: int,
    thresholds: dict[str, float],
    initial: dict[str, Any] | None = None,
) -> list[Finding]:
    """Every collapse threshold that ``row`` crosses, the most severe first.

    complete collapse: the variance fell below ``complete_variance_ratio`` of its value at
      step 0 (``initial``), or is exactly 0, or std_l2·√d (1 for a well spread cloud) is below
      ``complete_std_l2``: the embeddings have contracted to a point or a single direction.
    dimensional collapse: the effective rank is below ``dimensional_fraction`` of
      ``reference_rank`` (the rank the embeddings had at step 0, the rank they can reach).
    """
    out = []
    var, var0 = row.get("variance"), (initial or {}).get("variance")
    ratio = thresholds["complete_variance_ratio"]
    if var is not None and var0 and var <= ratio * var0:
        why = f"variance fell to {var / var0:.2g} of its step-0 value (limit {ratio:g})"
        out.append(Finding(COMPLETE, "variance", why))
    elif var == 0:
        why = "variance is exactly 0: every embedding is the same point"
        out.append(Finding(COMPLETE, "variance", why))
    std, limit = row.get("std_l2"), thresholds["complete_std_l2"]
    if std is not None and std * math.sqrt(dim) < limit:
        why = f"std_l2·√d = {std * math.sqrt(dim):.2g} < {limit:g}: "
        why += "the normalised embeddings all point one way"
        if _spread_intact(row, reference_rank, thresholds):
            why += (
                f"; centred, they still span {row['rank']} directions (effective rank "
                f"{row['effective_rank']:.3g}): an offset cone, not a point"
            )
        out.append(Finding(COMPLETE, "std_l2", why))
    er, frac = row.get("effective_rank"), thresholds["dimensional_fraction"]
    if er is not None and reference_rank > 0 and er < frac * reference_rank:
        why = f"effective rank {er:.3g} < {frac:g} × attainable rank {reference_rank}"
        out.append(Finding(DIMENSIONAL, "effective_rank", why))
    return out


def _spread_intact(row: dict[str, Any], reference_rank: int, thresholds: dict[str, float]) -> bool:
    """The centred cloud is resolved (rank > 0) and not dimensionally collapsed: a cloud whose
    normalised rows coincide only because they share a large offset (an offset cone)."""
    rank, er = row.get("rank"), row.get("effective_rank")
    if not rank or er is None or not row.get("variance"):
        return False
    return reference_rank > 0 and er >= thresholds["dimensional_fraction"] * reference_rank


def verdict(
    final: dict[str, Any],
    dim: int,
    reference_rank: int,
    thresholds: dict[str, float],
    initial: dict[str, Any] | None = None,
) -> tuple[str, str]:
    """(verdict, reason) for one set of metrics: the first of `findings`, else healthy."""
    found = findings(final, dim, reference_rank, thresholds, initial)
    if found:
        return found[0].verdict, found[0].reason
    er = final.get("effective_rank")
    why = f"effective rank {er:.3g} of attainable {reference_rank}" if er is not None else ""
    return HEALTHY, why


# --------------------------------------------------------------------------- structural zeros
def is_structural(rank: int | None, dim: int | None) -> bool:
    """λ_min is zero by construction when the numerical rank is below d."""
    return rank is not None and bool(dim) and rank < dim  # type: ignore[operator]


def min_eig_text(min_eig: float | None, rank: int | None, dim: int) -> str:
    """λ_min as it should be read: ``0 (rank 32/128)`` when it is below the rank tolerance."""
    if min_eig is None:
        return "-"
    if is_structural(rank, dim):
        return f"0 (rank {rank}/{dim})"
    return f"{min_eig:.3g}"


def max_eig_text(max_eig: float | None, rank: int | None, dim: int) -> str:
    """λ₁ as it should be read: ``0 (rank 0/32)`` when every eigenvalue is below the rank
    tolerance (round-off of the values), so that a rank of 0 never stands beside a positive λ₁;
    else the value."""
    if max_eig is None:
        return "-"
    if rank == 0:
        return f"0 (rank 0/{dim})"
    return f"{max_eig:.4g}" if 1e-3 <= abs(max_eig) < 1e5 else f"{max_eig:.3e}"


def zero_range(rank: int, dim: int) -> str:
    """``λ₃₃…λ₁₂₈``: the eigenvalues past the rank."""
    return f"λ{str(rank + 1).translate(SUB)}…λ{str(dim).translate(SUB)}"


def zero_label(rank: int, dim: int) -> str:
    """The label of the shaded span of structural zeros in a spectrum figure."""
    return f"{zero_range(rank, dim)}\nstructurally 0\n(rank {rank}/{dim})"


def min_eig_note(final_rank: int | None, dim: int, reference_rank: int) -> str | None:
    """The summary's note when the final λ_min is structurally zero, else None."""
    if not is_structural(final_rank, dim):
        return None
    return (
        f"min_eig is structurally zero: the embeddings have rank {final_rank} of {dim} "
        f"(rank {reference_rank} at step 0)"
    )
