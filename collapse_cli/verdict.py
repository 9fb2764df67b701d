"""The collapse verdict and the run summary, computed from logged metric rows (no torch)."""

from __future__ import annotations

import math
from typing import Any

COMPLETE, DIMENSIONAL, HEALTHY = "complete collapse", "dimensional collapse", "healthy"


def verdict(
    final: dict[str, Any],
    dim: int,
    reference_rank: int,
    thresholds: dict[str, float],
    initial: dict[str, Any] | None = None,
) -> tuple[str, str]:
    """(verdict, reason) for one set of metrics.

    complete collapse: the variance fell below ``complete_variance_ratio`` of its value at
      step 0, or is exactly 0, or std_l2·√d (1 for a well spread cloud) is below
      ``complete_std_l2``: the embeddings have contracted to a point or a single direction.
    dimensional collapse: the effective rank is below ``dimensional_fraction`` of
      ``reference_rank`` (the rank the embeddings had at step 0, the rank they can reach).
    healthy: neither.
    """
    var = final.get("variance")
    var0 = (initial or {}).get("variance")
    ratio = thresholds["complete_variance_ratio"]
    if var is not None and var0 and var <= ratio * var0:
        return COMPLETE, f"variance fell to {var / var0:.2g} of its step-0 value (limit {ratio:g})"
    if var == 0:
        return COMPLETE, "variance is exactly 0: every embedding is the same point"
    std = final.get("std_l2")
    if std is not None and std * math.sqrt(dim) < thresholds["complete_std_l2"]:
        return COMPLETE, (
            f"std_l2·√d = {std * math.sqrt(dim):.2g} < {thresholds['complete_std_l2']:g}: "
            "the normalised embeddings all point one way"
        )
    er = final.get("effective_rank")
    frac = thresholds["dimensional_fraction"]
    if er is not None and reference_rank > 0 and er < frac * reference_rank:
        return DIMENSIONAL, (
            f"effective rank {er:.3g} < {frac:g} × attainable rank {reference_rank}"
        )
    return HEALTHY, (
        f"effective rank {er:.3g} of attainable {reference_rank}" if er is not None else ""
    )


def summarize(rows: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """Final, minimum and maximum of every logged number (non-finite values skipped)."""
    final = rows[-1] if rows else {}
    lows: dict[str, float] = {}
    highs: dict[str, float] = {}
    for row in rows:
        for k, v in row.items():
            if k in ("step", "time") or not isinstance(v, (int, float)) or not math.isfinite(v):
                continue
            lows[k] = min(lows.get(k, v), v)
            highs[k] = max(highs.get(k, v), v)
    return {**extra, "final": final, "min": lows, "max": highs}


def min_eig_text(min_eig: float | None, rank: int | None, dim: int) -> str:
    """λ_min as it should be read: ``0 (rank 32/128)`` when it is below the rank tolerance."""
    if min_eig is None:
        return "-"
    if rank is not None and rank < dim:
        return f"0 (rank {rank}/{dim})"
    return f"{min_eig:.3g}"
