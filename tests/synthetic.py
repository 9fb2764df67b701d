"""Run folders and sweep folders written by hand, in the documented format, with numbers chosen
so that their means and standard deviations are known exactly (no torch, no training)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml


def write_run(
    folder: Path,
    config: dict[str, Any],
    final: dict[str, float],
    *,
    first: dict[str, float] | None = None,
    status: str = "completed",
    verdict: str | None = "healthy",
    dim: int = 16,
) -> Path:
    """A finished run folder whose metrics.jsonl has two rows, step 0 (``first``) and step 10
    (``final``), and whose summary.json says so."""
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    meta = {"id": folder.name, "name": config.get("name"), "status": status}
    (folder / "meta.json").write_text(json.dumps(meta | {"seed": config.get("seed")}))
    rows = [{"step": 0, **(first or final)}, {"step": 10, **final}]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    keys = set(rows[0]) | set(rows[1])
    summary = {
        "id": folder.name, "name": config.get("name"), "status": status, "loss": "variance",
        "steps": 11, "steps_done": 11, "batch_size": 64, "dim": dim, "rank_ceiling": dim,
        "initial_rank": dim, "final": rows[-1],
        "min": {k: min(r[k] for r in rows if k in r) for k in keys},
        "max": {k: max(r[k] for r in rows if k in r) for k in keys},
    }  # fmt: skip
    if verdict is not None:
        summary["verdict"] = verdict
    if status == "diverged":
        summary["divergence"] = "the loss or the embeddings became NaN or infinite by step 11"
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def write_sweep(
    parent: Path, grid: dict[str, list[Any]], runs: list[dict[str, Any]], seeds: list[int]
) -> Path:
    """A sweep folder: ``runs`` are dicts with ``params``, ``seed``, ``final`` and optionally
    ``first``, ``status`` and ``verdict``; each becomes a run folder and a row of the index."""
    path = parent / "sweep-20260101-000000-syn"
    path.mkdir(parents=True)
    entries = []
    for i, r in enumerate(runs):
        config = {"name": "syn", "seed": r["seed"], "loss": {"name": "variance"}}
        for key, value in r["params"].items():
            block, name = key.split(".")
            config.setdefault(block, {})[name] = value
        folder = f"20260101-0000{i:02d}-syn"
        status = r.get("status", "completed")
        write_run(path / folder, config, r["final"], first=r.get("first"), status=status,
                  verdict=r.get("verdict", "healthy"))  # fmt: skip
        entries.append({"index": i, "params": r["params"], "seed": r["seed"], "overrides": [],
                        "folder": folder, "status": status})  # fmt: skip
    index = {"id": path.name, "name": "syn", "status": "completed", "grid": grid,
             "seeds": seeds, "overrides": [], "runs": entries}  # fmt: skip
    (path / "sweep.json").write_text(json.dumps(index))
    return path
