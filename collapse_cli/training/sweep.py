"""Sweeps: the Cartesian product of a grid of config values times seeds, each point an ordinary
run folder under ``runs/sweep-<stamp>-<name>/`` with ``sweep.json`` as the index. Every point
is validated before anything is created; the runs go to an executor (executors.py); one that
fails or diverges never stops the others; ``resume_sweep`` runs what is missing or failed.

The index is written by this process only, atomically, after every change; the run folders
stay the truth about each run (reading/sweep.py finds them by their config).
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
import shutil
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .. import rundir
from ..config import RunConfig, load_config, resolved
from ..errors import ConfigError
from ..reading.run import config_value
from ..reading.sweep import ENDED, open_sweep, read_index, run_key
from ..threads import share
from ..yamlfile import read_yaml
from .executors import Task, check_executor, make_executor, resumable
from .grid import Grid, check_grid, check_seeds, grid_of_values, parse_grid_options, read_block
from .lifecycle import on_signals

GridSpec = list[str] | dict[str, Any] | None  # ["key=v1,v2", ...] or {key: [v1, v2] or "v1,v2"}


@dataclass
class Plan:
    """A validated sweep, before anything is created."""

    name: str
    source: str  # where the config came from (errors and the index name it)
    config: dict[str, Any]  # the YAML without its sweep block, its name filled in
    overrides: list[str]  # applied to every run
    grid: dict[str, list[Any]]  # each swept key's values as the resolved configs hold them
    points: list[dict[str, Any]]  # each run: index, params, seed, overrides (its own)
    threads: int | None  # train.threads when the config sets it


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


# --------------------------------------------------------------------------- planning
def plan_sweep(
    config: str | Path | dict[str, Any],
    grid: GridSpec = None,
    seeds: int | None = None,
    overrides: list[str] | None = None,
    *,
    name: str | None = None,
) -> Plan:
    """Read the config and its ``sweep:`` block, merge ``grid`` into it (a key given here
    replaces the block's values) and check every point like an override, building its parts
    as a run would. Any problem is one ConfigError; nothing is created."""
    if isinstance(config, dict):
        doc, source, stem = copy.deepcopy(config), "config", "sweep"
    else:
        doc, source, stem = read_yaml(config), str(config), Path(config).stem
    block = doc.pop("sweep", None)
    yaml_grid, yaml_seeds = read_block(block, source) if block is not None else ({}, None)
    swept: Grid = {**yaml_grid, **_as_grid(grid)}
    overrides = list(overrides or [])
    check_grid(swept, overrides)
    count = check_seeds(seeds, "--seeds") or yaml_seeds or 1
    if not swept and count == 1:
        raise ConfigError(
            "nothing to sweep: give --grid key=v1,v2 (or a sweep: block in the YAML), --seeds K, "
            "or both"
        )
    if not doc.get("name"):
        doc["name"] = rundir.sanitize_name(stem)
    base = _load(doc, overrides, source, "")
    values: dict[str, list[Any]] = {key: [] for key in swept}
    points: list[dict[str, Any]] = []
    seen: dict[str, str] = {}
    for combo in itertools.product(*swept.values()):
        own = [f"{key}={text}" for key, text in zip(swept, combo, strict=True)]
        where = ", ".join(own)
        cfg = _load(doc, overrides + own, source, where)
        _check_parts(cfg, where)
        params = {key: config_value(resolved(cfg), key) for key in swept}
        same = seen.setdefault(json.dumps(list(params.values())), where)
        if same != where:
            raise ConfigError(f"{source}: grid points {same} and {where} are the same run")
        for key, value in params.items():
            if value not in values[key]:
                values[key].append(value)
        for k in range(count):
            seed = base.seed + k
            points.append(
                {"index": len(points), "params": params, "seed": seed,
                 "overrides": [*own, f"seed={seed}"]}
            )  # fmt: skip
    name = rundir.sanitize_name(name or doc["name"])
    return Plan(name, source, doc, overrides, values, points, base.train.threads)


def check_sweep(
    config: str | Path | dict[str, Any],
    grid: GridSpec = None,
    seeds: int | None = None,
    overrides: list[str] | None = None,
    *,
    name: str | None = None,
    executor: str = "pool",
    slurm: list[str] | None = None,
    **_: Any,
) -> Plan:
    """What ``collapse sweep --dry-run`` checks: the executor's options and every point."""
    check_executor(executor, slurm or [])
    return plan_sweep(config, grid, seeds, overrides, name=name)


def _as_grid(grid: GridSpec) -> Grid:
    """``--grid`` strings, or a dict of Python values (a list, or a comma-separated string)."""
    if not grid:
        return {}
    if isinstance(grid, dict):
        return grid_of_values(grid)
    return parse_grid_options(list(grid))


def _load(doc: dict[str, Any], overrides: list[str], source: str, where: str) -> RunConfig:
    try:
        return load_config(doc, overrides, label=source)
    except ConfigError as e:
        raise ConfigError(f"grid point {where}: {e}" if where else str(e)) from None


def _check_parts(cfg: RunConfig, where: str) -> None:
    """What `collapse validate` checks beyond the schema: the device and every part built."""
    from .build import build, resolve_device

    try:
        resolve_device(cfg.device)
        build(cfg)
    except ConfigError as e:
        raise ConfigError(f"grid point {where}: {e}") from None


# --------------------------------------------------------------------------- running
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
    workers, threads = _share(plan.threads, workers, threads, len(plan.points))
    path = rundir.create_sweep_dir(runs_dir, plan.name)
    try:
        engine = make_executor(executor, path, workers, threads, slurm_params)
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
    divergence is a result: it would diverge again) and runs still going are left alone."""
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
    workers, threads = _share(base.train.threads, workers, threads, max(1, len(todo)))
    engine = make_executor(executor, path, workers, threads, slurm_params)
    command = command or "collapse sweep --resume"
    resumed = {"at": rundir.now(), "command": command, "runs": len(todo)}
    index.setdefault("resumed", []).append(resumed)
    index |= {"status": "running", "ended": None, **rundir.process_fields()}
    index["executor"] = engine.describe()
    write_index(path, index)
    tasks = [_task(path, index, entry, threads, folder, command) for entry, folder in todo]
    return _drive(path, index, tasks, engine, reporter or _Silent())


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
