"""Sweeps: the Cartesian product of a grid of config values times seeds, each point an ordinary
run folder under ``runs/sweep-<stamp>-<name>/`` with ``sweep.json`` as the index. Every point
is validated before anything is created (plan.py); the runs go to an executor (executors.py,
slurm.py); one that fails or diverges never stops the others; ``resume_sweep`` runs what is
missing or failed.

The index is written by this process only, atomically, after every change; the run folders
stay the truth about each run (reading/sweep.py finds them by their config).
"""

from __future__ import annotations

import contextlib
import shutil
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .. import rundir
from ..config import load_config
from ..errors import ConfigError
from ..reading.sweep import ENDED, open_sweep, read_index, run_key
from ..threads import share
from .executors import Task, check_executor, make_executor, resumable
from .lifecycle import on_signals
from .plan import GridSpec, plan_sweep


class SweepReporter(Protocol):
    def start(self, index: dict[str, Any], todo: int) -> None: ...
    def update(self, entry: dict[str, Any] | None) -> None: ...  # a run ended (None: a tick)
    def stop(self) -> None: ...


class _Silent:
    def start(self, index: dict[str, Any], todo: int) -> None: ...
    def update(self, entry: dict[str, Any] | None) -> None: ...
    def stop(self) -> None: ...


@dataclass
class SweepResult:
    path: Path
    index: dict[str, Any]  # sweep.json as written last
    started: int  # runs this call started or continued
    interrupted: bool


def run_sweep(
    config: str | Path | dict[str, Any],
    grid: GridSpec = None,
    seeds: int | None = None,
    overrides: list[str] | None = None,
    *,
    name: str | None = None,
    runs_dir: str | Path = "runs",
    workers: int | None = None,
    threads: int | None = None,
    executor: str = "pool",
    slurm: list[str] | None = None,
    reporter: SweepReporter | None = None,
    command: str | None = None,
) -> SweepResult:
    """Run every point of a grid times ``seeds`` seeds (seed = the config's seed + 0 … K−1)
    into ``runs_dir/sweep-<stamp>-<name>/`` and return where, with the index.

    ``grid`` maps config keys to their values (``{"optimizer.lr": [1e-3, 1e-2]}``) or is a
    list of ``--grid`` strings; a ``sweep:`` block in the YAML adds its own. ``executor`` is
    ``pool`` (local processes: ``workers`` of ``threads`` each, by default one single-thread
    worker per core) or ``submitit`` (SLURM where there is one; ``slurm`` holds its
    ``key=value`` options). Call it under ``if __name__ == "__main__":`` in a script: the
    workers are fresh processes that import it.

    Example (in a notebook)::

        result = run_sweep("configs/nt-xent.yaml", {"loss.temperature": [0.1, 0.5]}, seeds=3)
        load_sweep(result.path)
    """
    slurm_params = check_executor(executor, slurm or [])
    plan = plan_sweep(config, grid, seeds, overrides, name=name)
    asked = workers  # on SLURM only an asked-for count caps the array
    threads = threads or _slurm_threads(executor, slurm_params)
    workers, threads = _share(plan.threads, workers, threads, len(plan.points))
    path = rundir.create_sweep_dir(runs_dir, plan.name)
    try:
        engine = make_executor(executor, path, workers, threads, slurm_params, asked)
    except Exception:
        shutil.rmtree(path, ignore_errors=True)  # nothing in it yet
        raise
    command = command or "collapse sweep"
    index = {
        "id": path.name, "name": plan.name, "status": "running", "created": rundir.now(),
        "ended": None, **rundir.process_fields(), "command": command, "source": plan.source,
        "config": plan.config, "overrides": plan.overrides, "grid": plan.grid,
        "seeds": sorted({p["seed"] for p in plan.points}), "executor": engine.describe(),
        "runs": [{**p, "folder": None, "status": "pending"} for p in plan.points],
    }  # fmt: skip
    write_index(path, index)
    tasks = [_task(path, index, entry, threads, None, command) for entry in index["runs"]]
    return _drive(path, index, tasks, engine, reporter or _Silent())


def resume_sweep(
    sweep: str | Path,
    *,
    runs_dir: str | Path = "runs",
    workers: int | None = None,
    threads: int | None = None,
    executor: str = "pool",
    slurm: list[str] | None = None,
    reporter: SweepReporter | None = None,
    command: str | None = None,
) -> SweepResult:
    """Run again what a sweep has not finished: runs never started, failed, interrupted or
    whose process died. A run with a checkpoint continues from it in its own folder
    (`resume_run`); one without starts over in a new folder. Completed and diverged runs (a
    divergence is a result: it would diverge again), runs stopped by train.stop_on (dead by
    the sweep's own rule) and runs still going are left alone."""
    slurm_params = check_executor(executor, slurm or [])
    path = rundir.resolve_sweep(sweep, runs_dir)
    index = read_index(path)
    if rundir.writer_state(index) == "alive":
        raise ConfigError(f"{path}: its sweep is still running (process {index.get('pid')})")
    base = load_config(index["config"], index.get("overrides") or [])
    todo = []
    for r in open_sweep(path).runs:
        entry = r.entry
        if r.run is not None:
            entry |= {"status": r.status, "folder": r.run.path.name}
        if r.status in ENDED or r.status == "running":
            continue
        folder = r.run.path.name if r.run is not None and resumable(r.run.path) else None
        if r.run is not None and folder is None:  # starts over: the old folder stays
            entry.setdefault("replaced", []).append(r.run.path.name)
        todo.append((entry, folder))
    asked, threads = workers, threads or _slurm_threads(executor, slurm_params)
    workers, threads = _share(base.train.threads, workers, threads, max(1, len(todo)))
    engine = make_executor(executor, path, workers, threads, slurm_params, asked)
    command = command or "collapse sweep --resume"
    resumed = {"at": rundir.now(), "command": command, "runs": len(todo)}
    index.setdefault("resumed", []).append(resumed)
    index |= {"status": "running", "ended": None, **rundir.process_fields()}
    index["executor"] = engine.describe()
    write_index(path, index)
    tasks = [_task(path, index, entry, threads, folder, command) for entry, folder in todo]
    return _drive(path, index, tasks, engine, reporter or _Silent())


def _slurm_threads(executor: str, slurm_params: dict[str, Any]) -> int | None:
    if executor != "submitit":
        return None
    from .slurm import slurm_threads

    return slurm_threads(slurm_params)


def write_index(path: Path, index: dict[str, Any]) -> None:
    rundir.write_json(path / rundir.SWEEP, index)


def _share(
    configured: int | None, workers: int | None, threads: int | None, runs: int
) -> tuple[int, int]:
    if configured and threads and configured != threads:
        raise ConfigError(f"--threads {threads}: the config sets train.threads: {configured}")
    for option, value in (("--workers", workers), ("--threads", threads)):
        if value is not None and value < 1:
            raise ConfigError(f"{option} {value}: must be at least 1")
    return share(runs, workers, threads or configured)


def _task(
    path: Path,
    index: dict[str, Any],
    entry: dict[str, Any],
    threads: int,
    folder: str | None,
    command: str,
) -> Task:
    keys = list(index["grid"])
    key = run_key([entry["params"].get(k) for k in keys], entry["seed"])
    overrides = [*(index.get("overrides") or []), *entry["overrides"]]
    command = f"{command}  [run {entry['index']} of {index['id']}]"
    return Task(entry["index"], str(path), index["config"], overrides, keys, key, threads,
                command, folder)  # fmt: skip


class _Stop:
    def __init__(self) -> None:
        self.count = 0  # signals received
        self.sent = 0  # signals passed on to the runs


@contextlib.contextmanager
def _signals(stop: _Stop) -> Iterator[None]:
    """SIGINT and SIGTERM stop the sweep: no new run starts, and each one passed on stops the
    runs (the first after their step in progress, the next at once)."""

    def handler(signum: int, frame: Any) -> None:
        stop.count += 1

    with on_signals(handler):
        yield


def _drive(
    path: Path, index: dict[str, Any], tasks: list[Task], engine: Any, reporter: SweepReporter
) -> SweepResult:
    """Keep the executor's slots full until every task has an outcome or a signal stops it."""
    entries = {e["index"]: e for e in index["runs"]}
    pending, inflight = deque(tasks), {}
    stop = _Stop()
    reporter.start(index, len(tasks))
    try:
        with _signals(stop):
            while pending or inflight:
                if stop.count > stop.sent:
                    stop.sent = stop.count
                    engine.interrupt(inflight, stop.count)
                if pending and not stop.count:
                    free = len(pending) if engine.slots is None else engine.slots - len(inflight)
                    batch = [pending.popleft() for _ in range(min(free, len(pending)))]
                    if batch:
                        for handle, task in zip(engine.submit(batch), batch, strict=True):
                            inflight[handle] = task
                            entries[task.index]["status"] = "running"
                        write_index(path, index)
                if not inflight:
                    break
                for handle, outcome in engine.wait(inflight, 0.25):
                    task = inflight.pop(handle)
                    if stop.count and outcome["status"] == "failed" and not outcome.get("folder"):
                        outcome = {"status": "pending"}  # cancelled before it started
                    entry = entries[task.index]
                    for field in ("reason", "verdict", "effective_rank", "wall_time_s"):
                        entry.pop(field, None)
                    entry |= {k: v for k, v in outcome.items() if k != "index"}
                    write_index(path, index)
                    reporter.update(entry)
                reporter.update(None)
    finally:
        engine.close()
        for task in pending:  # never started
            entries[task.index]["status"] = "pending"
        index |= {"status": "interrupted" if stop.count else "completed", "ended": rundir.now()}
        write_index(path, index)
        reporter.stop()
    return SweepResult(path, index, len(tasks), bool(stop.count))
