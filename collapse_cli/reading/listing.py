"""The rows of ``collapse list``: one per run folder, newest first (no torch)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..rundir import list_runs
from ..verdict import NOT_JUDGED
from .run import config_value, load_run


def run_table(runs_dir: str | Path) -> list[dict[str, Any]]:
    """One row per run, newest first: id, status, objective, steps, variance, effective_rank,
    verdict (``None`` for a run that has not ended, "not judged" for one that diverged or was
    interrupted)."""
    rows = []
    for path in list_runs(runs_dir):
        run = load_run(path)
        s = run.summary
        final = s.get("final") or {}
        rows.append(
            {
                "id": run.id,
                "status": run.status,
                "objective": s.get("loss") or config_value(run.config, "loss.name"),
                "steps_done": s.get("steps_done"),
                "steps": s.get("steps"),
                "variance": final.get("variance"),
                "effective_rank": final.get("effective_rank"),
                "verdict": (s.get("verdict") or NOT_JUDGED) if run.finished else None,
            }
        )
    return rows
