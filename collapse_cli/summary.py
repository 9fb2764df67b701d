"""``summary.json``: the one function that builds a run's summary from its logged rows, for a
run that has ended (with its verdict) and for one still going (without). Standard library only.
"""

from __future__ import annotations

import math
from typing import Any

from .verdict import min_eig_note, verdict


def extremes(rows: list[dict[str, Any]]) -> tuple[dict[str, float], dict[str, float]]:
    """(minimum, maximum) of every logged number over ``rows`` (non-finite values skipped)."""
    lows: dict[str, float] = {}
    highs: dict[str, float] = {}
    for row in rows:
        for k, v in row.items():
            if k in ("step", "time") or not isinstance(v, (int, float)) or not math.isfinite(v):
                continue
            lows[k] = min(lows.get(k, v), v)
            highs[k] = max(highs.get(k, v), v)
    return lows, highs


ESCAPE_FACTOR = 10.0  # a run started near collapse has escaped once its variance is 10 × step 0's


def escape_step(rows: list[dict[str, Any]], factor: float = ESCAPE_FACTOR) -> int | None:
    """The first logged step whose variance exceeds ``factor`` × the starting variance, or None
    when none does. The starting variance is step 0's; at exact collapse (variance 0 at step 0,
    where any spread would be "10 × 0") it is the first non-zero variance logged, the spread that
    round-off seeded. The resolution is log.every: this is the first *logged* step past it."""
    variances = [
        (row.get("step"), v)
        for row in rows
        if isinstance(v := row.get("variance"), (int, float)) and math.isfinite(v)
    ]
    start = next((v for _, v in variances if v > 0), None)
    if start is None:
        return None
    return next((step for step, v in variances if v > factor * start), None)


def escape(rows: list[dict[str, Any]], eps: float) -> dict[str, Any]:
    """The fields of a run that started near collapse (encoder init: near_collapse): the ε it
    started from, its first and last variance, and the step it escaped at (None: never)."""
    first, final = (rows[0], rows[-1]) if rows else ({}, {})
    return {
        "eps": eps,
        "variance_start": first.get("variance"),
        "variance_final": final.get("variance"),
        "escape_step": escape_step(rows),
    }


def near_collapse_eps(encoder: dict[str, Any]) -> float | None:
    """The ε of an encoder block that starts near collapse (init: near_collapse), else None."""
    eps = encoder.get("eps")
    return float(eps) if encoder.get("init") == "near_collapse" and eps is not None else None


def build_summary(
    rows: list[dict[str, Any]],
    *,
    run_id: str,
    name: str | None,
    status: str,
    loss: str | None,
    steps: int | None,
    steps_done: int,
    batch_size: int | None,
    dim: int | None,
    thresholds: dict[str, float] | None = None,
    wall_time_s: float | None = None,
    knn_chance: float | None = None,
    diverged_at: int | None = None,
    recall_chance: float | None = None,
    dimensions: dict[str, Any] | None = None,
    knn_collapsed: float | None = None,
    eps: float | None = None,
    stop_reason: str | None = None,
) -> dict[str, Any]:
    """The summary of a run from its finite metric rows.

    ``thresholds`` (log.verdict) are given once the run has ended: a completed run's verdict
    is judged from the last row against step 0; a run that diverged or was interrupted gets
    no verdict (None) and a reason that says so. A run still going has no verdict yet.
    ``wall_time_s``, ``knn_chance``, ``recall_chance`` (1/M for M held-out pairs) and
    ``diverged_at`` are known only to the process that ran it; so is ``dimensions``
    (`metrics.dimensions` of the last logged embeddings: the dead axes and the dominant share)
    and ``knn_collapsed`` (`metrics.knn_collapsed`). ``eps``: the ε of a run whose encoder
    started near collapse (its escape fields are added, `escape`); None otherwise.
    A run ``stopped`` by train.stop_on is judged like a completed one, from its last row
    (where the verdict it stopped on holds), and says why it stopped in ``stop_reason``.
    """
    first, final = (rows[0], rows[-1]) if rows else ({}, {})
    reference_rank = first.get("rank")
    summary: dict[str, Any] = {"id": run_id, "name": name, "status": status, "loss": loss}
    summary |= {"steps": steps, "steps_done": steps_done}
    if wall_time_s is not None:
        summary["wall_time_s"] = round(wall_time_s, 4)
        summary["steps_per_second"] = round(steps_done / wall_time_s, 2) if wall_time_s else None
    summary |= {
        "batch_size": batch_size,
        "dim": dim,
        "rank_ceiling": min(dim, batch_size - 1) if dim and batch_size else dim,
        "initial_rank": reference_rank,
    }
    lows, highs = extremes(rows)
    summary |= {"final": final, "min": lows, "max": highs}
    if eps is not None:
        summary |= escape(rows, eps)
    if knn_chance is not None:
        summary["knn_chance"] = knn_chance
    if knn_collapsed is not None:  # what embeddings collapsed to one point score (≤ chance)
        summary["knn_collapsed"] = knn_collapsed
    if recall_chance is not None:
        summary["recall_chance"] = recall_chance
    if dimensions is not None:
        summary["dimensions"] = dimensions
    if diverged_at is not None:
        last = final.get("step")
        summary["diverged_at"] = diverged_at
        summary["divergence"] = (
            f"the loss or the embeddings became NaN or infinite by step {diverged_at}"
            + (f"; the last good metrics are from step {last}" if last is not None else "")
        )
    if stop_reason is not None:
        summary["stopped_at"] = final.get("step")
        summary["stop_reason"] = stop_reason
    if thresholds is not None and status not in ("completed", "stopped"):
        summary["verdict"] = None  # partial data is no verdict: say why instead
        how = {"diverged": f"diverged at step {diverged_at}"}.get(
            status, f"was {status} after {steps_done} of {steps} steps"
        )
        summary["verdict_reason"] = (
            f"the run {how}; the verdict compares the last step of a finished run with step 0"
            + ("; resume it to judge it" if status == "interrupted" else "")
        )
    elif thresholds is not None and rows and dim:
        ref = int(reference_rank or 0)
        summary["verdict"], summary["verdict_reason"] = verdict(final, dim, ref, thresholds, first)
        note = min_eig_note(final.get("rank"), dim, ref)
        if note:
            summary["min_eig_note"] = note
    return summary
