"""The library entry points behind ``collapse run``: config in, run folder and summary out."""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from . import __version__
from .config import RunConfig, dump_yaml, load_config, resolved
from .errors import CollapseError, ConfigError, RunError
from .runs import (
    CONFIG,
    META,
    METRICS,
    SPECTRUM,
    SUMMARY,
    RunWriter,
    create_run_dir,
    process_fields,
    read_json,
    read_jsonl,
    resolve_run,
    write_atomic,
    write_json,
    writer_state,
)
from .verdict import summarize, verdict

CHECKPOINT = "checkpoint.pt"


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
    ``summary["status"]`` says how the run ended: completed, interrupted or diverged.

    Example (in a notebook)::

        path, summary = run_experiment("configs/collapse.yaml", ["train.steps=100"])
        summary["verdict"]
    """
    import torch

    from .train import build, resolve_device

    cfg, label = prepare(config, overrides)
    device = resolve_device(cfg.device)
    parts = build(cfg, label)

    path = create_run_dir(runs_dir, cfg.name or "run")
    meta: dict[str, Any] = {
        "id": path.name,
        "name": cfg.name,
        "status": "running",
        **process_fields(),
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
    try:
        write_atomic(path / CONFIG, dump_yaml(resolved(cfg)))
        write_json(path / META, meta)
    except OSError as e:
        raise CollapseError(f"{path}: cannot write the run folder ({e.strerror})") from None
    return path, _execute(cfg, parts, device, path, meta, reporter)


RESUME_KEYS = ("train.steps",)  # what --resume may change: the run's length


def resume_run(
    run: str | Path,
    overrides: list[str] | None = None,
    *,
    runs_dir: str | Path = "runs",
    reporter: Any = None,
    command: str | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Continue a run from its ``checkpoint.pt`` into the same folder.

    Metrics logged after the checkpoint are dropped and recomputed, so on the CPU a resumed run
    ends with exactly the metrics of an uninterrupted one. ``overrides`` may only set
    ``train.steps``: a new length extends (or shortens) the run, a completed one included, and
    the folder's config.yaml is updated; the metrics then equal those of a run started with
    that length, except for schedules spread over ``train.steps`` (byol's and dino's cosine
    momentum), which follow the new length only from the resumed step on.
    """
    from .train import build, load_checkpoint, resolve_device

    path = resolve_run(run, runs_dir)
    overrides = list(overrides or [])
    for item in overrides:
        if item.partition("=")[0].strip() not in RESUME_KEYS:
            raise ConfigError(
                f"{item!r}: --resume takes only train.steps=N (to change the run's length); "
                "every other setting is the run's own"
            )
    meta = read_json(path / META)
    if meta is None:
        raise ConfigError(f"{path / META}: missing or unreadable; is this a run folder?")
    if writer_state(meta) == "alive" and meta.get("pid") != os.getpid():
        raise ConfigError(
            f"{path}: still running (process {meta['pid']} on this host); stop it before resuming"
        )
    own, _ = prepare(path / CONFIG)
    cfg, label = prepare(path / CONFIG, overrides)
    old_steps, steps = own.train.steps, cfg.train.steps
    if meta.get("status") == "completed" and steps <= old_steps:
        raise ConfigError(
            f"{path}: the run has completed its {old_steps} steps; there is nothing to resume "
            f"(to extend it: --resume RUN train.steps=N with N > {old_steps})"
        )
    if not (path / CHECKPOINT).is_file():
        raise ConfigError(
            f"{path}: no {CHECKPOINT} to resume from (runs save one with train.checkpoint_every)"
        )
    try:
        state = load_checkpoint(path / CHECKPOINT)
    except Exception as e:
        raise ConfigError(f"{path / CHECKPOINT}: cannot load it ({type(e).__name__})") from None
    step = int(state["step"])
    if steps < step:
        raise ConfigError(
            f"{path}: train.steps={steps} ends before the checkpoint, saved after {step} steps"
        )
    device = resolve_device(cfg.device)
    parts = build(cfg, label)

    # Rows logged after the checkpoint are recomputed. When the length changes, so is the row
    # logged only because it was the old last step, as a run of the new length would not log it.
    last = old_steps - 1 if steps != old_steps and (old_steps - 1) % cfg.log.every else None

    def kept(r: dict[str, Any]) -> bool:
        return r.get("step", step) < step and r.get("step") != last

    prior = [r for r in read_jsonl(path / METRICS) if kept(r)]
    spectra = [r for r in read_jsonl(path / SPECTRUM) if kept(r)]
    write_atomic(path / METRICS, "".join(_jsonl(r) for r in prior))
    write_atomic(path / SPECTRUM, "".join(_jsonl(r) for r in spectra))
    if steps != old_steps:
        write_atomic(path / CONFIG, dump_yaml(resolved(cfg)))
    meta.update(status="running", ended=None, **process_fields())
    entry = {"at": _now(), "from_step": step, "command": command or " ".join(sys.argv)}
    entry |= {"steps": [old_steps, steps]} if steps != old_steps else {}
    meta.setdefault("resumed", []).append(entry)
    write_json(path / META, meta)
    return path, _execute(cfg, parts, device, path, meta, reporter, resume=state, prior=prior)


def _execute(
    cfg: RunConfig,
    parts: Any,
    device: Any,
    path: Path,
    meta: dict[str, Any],
    reporter: Any,
    *,
    resume: dict[str, Any] | None = None,
    prior: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Train into ``path`` under signal handlers, then write the summary and the final meta."""
    from .train import Stop, train

    stop = Stop()
    checkpoint = path / CHECKPOINT if cfg.train.checkpoint_every else None
    writer = RunWriter(path)
    try:
        with _signals(stop), _deterministic(cfg.train.deterministic):
            result = train(
                cfg, parts, device, writer, reporter or _Silent(),
                stop=stop, checkpoint=checkpoint, resume=resume,
            )  # fmt: skip
    except OSError as e:
        _fail(path, meta, f"cannot write to the run folder ({e.strerror})")
        raise RunError(f"{path}: cannot write to the run folder ({e.strerror})") from None
    except Exception as e:
        _fail(path, meta, f"{type(e).__name__}: {e}")
        raise RunError(f"{path}: the run failed: {type(e).__name__}: {e}") from e
    finally:
        writer.close()

    rows = (prior or []) + result.rows
    first = rows[0] if rows else {}
    dim = result.dim or len((read_jsonl(path / SPECTRUM)[-1:] or [{}])[0].get("eigenvalues", []))
    reference_rank = int(first.get("rank", 0))
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
        dim=dim,
        rank_ceiling=min(dim, result.batch_size - 1),
        initial_rank=reference_rank,
    )
    if parts.data is not None and any("knn_acc" in r for r in rows):
        from .metrics import knn_chance

        summary["knn_chance"] = knn_chance(parts.data.labels_test)
    if result.diverged_at is not None:
        last = rows[-1]["step"] if rows else None
        summary["diverged_at"] = result.diverged_at
        summary["divergence"] = (
            f"the loss or the embeddings became NaN or infinite by step {result.diverged_at}"
            + (f"; the last good metrics are from step {last}" if last is not None else "")
        )
    if rows:
        v, why = verdict(rows[-1], dim, reference_rank, cfg.log.verdict.model_dump(), first)
        summary.update(verdict=v, verdict_reason=why)
        final_rank = rows[-1].get("rank")
        if final_rank is not None and final_rank < dim:
            summary["min_eig_note"] = (
                f"min_eig is structurally zero: the embeddings have rank {final_rank} of "
                f"{dim} (rank {reference_rank} at step 0)"
            )
    write_json(path / SUMMARY, summary)
    if rows:
        _plot(path, meta)
    meta.update(status=result.status, ended=_now())
    write_json(path / META, meta)
    return summary


def _plot(path: Path, meta: dict[str, Any]) -> None:
    """The standard figures into ``plots/``; a figure that fails never costs the run."""
    from .plots import plot_run

    try:
        plot_run(path)
    except Exception as e:  # recorded; `collapse plot` can redo it
        meta["plots_error"] = f"{type(e).__name__}: {e}"


def _fail(path: Path, meta: dict[str, Any], error: str) -> None:
    meta.update(status="failed", ended=_now(), error=error)
    with contextlib.suppress(OSError):
        write_json(path / META, meta)


@contextlib.contextmanager
def _signals(stop: Any) -> Iterator[None]:
    """SIGINT and SIGTERM ask the loop to stop after the current step; a second Ctrl-C
    interrupts at once. Only the main thread can install handlers; elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        stop.signal = signal.Signals(signum).name
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@contextlib.contextmanager
def _deterministic(on: bool) -> Iterator[None]:
    """torch's deterministic algorithms (and cuBLAS's fixed workspace) for the run, if asked."""
    if not on:
        yield
        return
    import os

    import torch

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)


def _jsonl(row: dict[str, Any]) -> str:
    import json

    return json.dumps(row) + "\n"


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
