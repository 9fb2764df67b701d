"""The library entry point behind ``collapse run``: config in, run folder and summary out."""

from __future__ import annotations

import platform
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from . import __version__
from .config import RunConfig, dump_yaml, load_config, resolved
from .errors import RunError
from .runs import CONFIG, META, SUMMARY, RunWriter, create_run_dir, write_atomic, write_json
from .verdict import summarize, verdict


class _Silent:
    """A reporter that shows nothing (the notebook default)."""

    def start(self, steps: int) -> None: ...
    def advance(self, step: int) -> None: ...
    def log(self, row: dict[str, Any], dim: int) -> None: ...


def prepare(
    config: str | Path | dict[str, Any], overrides: list[str] | None = None
) -> tuple[RunConfig, str]:
    """Load and validate a config (what ``collapse validate`` checks); builds nothing."""
    label = "config" if isinstance(config, dict) else str(config)
    return load_config(config, overrides), label


def run_experiment(
    config: str | Path | dict[str, Any],
    overrides: list[str] | None = None,
    *,
    runs_dir: str | Path = "runs",
    reporter: Any = None,
    command: str | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Train the configured model and return ``(run folder, summary)``.

    ``config`` is a YAML path or a dict of the same shape; ``overrides`` are ``key.path=value``
    strings. Every problem with the config raises ConfigError before any folder is created.

    Example (in a notebook)::

        path, summary = run_experiment("configs/collapse.yaml", ["train.steps=100"])
        summary["verdict"]
    """
    import torch

    from .train import build, resolve_device, train

    cfg, label = prepare(config, overrides)
    device = resolve_device(cfg.device)
    parts = build(cfg, label)

    path = create_run_dir(runs_dir, cfg.name or "run")
    write_atomic(path / CONFIG, dump_yaml(resolved(cfg)))
    meta: dict[str, Any] = {
        "id": path.name,
        "name": cfg.name,
        "status": "running",
        "started": _now(),
        "ended": None,
        "command": command or " ".join(sys.argv),
        "seed": cfg.seed,
        "device": str(device),
        "device_name": _device_name(device),
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "collapse_cli": __version__,
        },
        "git_commit": _git_commit(),
    }
    write_json(path / META, meta)

    writer = RunWriter(path)
    try:
        result = train(cfg, parts, device, writer, reporter or _Silent())
    except Exception as e:
        meta.update(status="failed", ended=_now(), error=f"{type(e).__name__}: {e}")
        write_json(path / META, meta)
        raise RunError(f"{path}: the run failed: {type(e).__name__}: {e}") from e
    finally:
        writer.close()

    rows = result.rows
    first = rows[0] if rows else {}
    reference_rank = int(first.get("rank", 0))
    thresholds = cfg.log.verdict.model_dump()
    summary = summarize(
        rows,
        id=path.name,
        name=cfg.name,
        status=result.status,
        loss=cfg.loss.name,
        steps=cfg.train.steps,
        steps_done=result.steps_done,
        wall_time_s=round(result.wall_time, 4),
        steps_per_second=round(result.steps_done / result.wall_time, 2)
        if result.wall_time
        else None,
        batch_size=result.batch_size,
        dim=result.dim,
        rank_ceiling=min(result.dim, result.batch_size - 1),
        initial_rank=reference_rank,
    )
    if rows:
        v, why = verdict(rows[-1], result.dim, reference_rank, thresholds, initial=first)
        summary.update(verdict=v, verdict_reason=why)
        final_rank = rows[-1].get("rank")
        if final_rank is not None and final_rank < result.dim:
            summary["min_eig_note"] = (
                f"min_eig is structurally zero: the embeddings have rank {final_rank} of "
                f"{result.dim} (rank {reference_rank} at step 0)"
            )
    write_json(path / SUMMARY, summary)
    meta.update(status=result.status, ended=_now())
    write_json(path / META, meta)
    return path, summary


def _now() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


def _device_name(device: Any) -> str:
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def _git_commit() -> str | None:
    """The commit of the repository the run was started in, with ``-dirty`` for local changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("-dirty" if dirty else "")
