"""Where the runs of a sweep run: a local process pool here, or submitit (slurm.py); and the one
function every run goes through, `run_task`, which starts a run or continues it from its
checkpoint.

Both engines run ordinary runs (`run_experiment`, `resume_run`) in fresh processes whose
thread variables are set before torch loads. Stopping: a run stops as it does at a Ctrl-C (after
the step in progress; at once at the second signal), so a stopped sweep keeps every finished
run and marks the interrupted ones.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
from collections.abc import Iterator
from concurrent import futures
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import rundir
from ..errors import CollapseError, ConfigError
from ..reading.sweep import ENDED, folders_by_key
from ..threads import thread_env
from ..worker import PassOnStop, init_worker, stop_asked

EXECUTORS = ("pool", "submitit")


@dataclass
class Task:
    """One run of a sweep, as a worker receives it."""

    index: int
    sweep_dir: str
    config: dict[str, Any]  # the sweep's YAML without its sweep block
    overrides: list[str]  # the sweep's overrides, then the point's own and seed=N
    keys: list[str]  # the swept keys, to find the run's folder by its config
    key: str  # the run's `run_key`
    threads: int
    command: str
    folder: str | None = None  # a folder of this run to continue from its checkpoint


def resumable(folder: Path) -> bool:
    """A folder that `resume_run` continues: it has a checkpoint and did not end."""
    meta = rundir.read_json(folder / rundir.META) or {}
    return meta.get("status") not in ENDED and (folder / rundir.CHECKPOINT).is_file()


def ended_summary(folder: Path) -> dict[str, Any] | None:
    """The summary of a run that ended (completed, diverged or stopped), else None."""
    meta = rundir.read_json(folder / rundir.META) or {}
    summary = rundir.read_json(folder / rundir.SUMMARY)
    return summary if meta.get("status") in ENDED and summary else None


def find_folder(task: Task) -> Path | None:
    """The newest folder whose config is this task's run (None before it made one)."""
    matches = folders_by_key(Path(task.sweep_dir), task.keys).get(task.key, [])
    return matches[0] if matches else None


def run_task(task: Task) -> dict[str, Any]:
    """Run one run of a sweep (continuing ``task.folder`` from its checkpoint when given) and
    say how it ended: ``{index, folder, status, verdict, effective_rank, reason, ...}``. Never
    raises: a run that fails is an outcome like the others."""
    from ..config import load_config
    from ..threads import torch_threads
    from .lifecycle import resume_run, run_experiment

    sweep_dir = Path(task.sweep_dir)
    outcome: dict[str, Any] = {"index": task.index}
    try:
        with torch_threads(task.threads):
            import torch

            outcome["threads"] = torch.get_num_threads()  # what the run's torch will use
            if stop_asked():  # the sweep stopped before this run began
                return outcome | {"status": "pending"}
            how = {"reporter": PassOnStop(), "command": task.command}
            if task.folder:
                path, summary = resume_run(sweep_dir / task.folder, **how)
            else:
                cfg = load_config(task.config, task.overrides)
                path, summary = run_experiment(cfg, runs_dir=sweep_dir, **how)
    except KeyboardInterrupt:  # a second signal while the run wrote its last files
        folder = find_folder(task)
        return outcome | {"status": "interrupted", "folder": folder and folder.name}
    except Exception as e:
        reason = str(e) if isinstance(e, CollapseError) else f"{type(e).__name__}: {e}"
        folder = find_folder(task)
        return outcome | {"status": "failed", "reason": reason, "folder": folder and folder.name}
    return reported(outcome, path, summary)


def reported(outcome: dict[str, Any], path: Path, summary: dict[str, Any]) -> dict[str, Any]:
    """``outcome`` completed with how the run in ``path`` ended, from its ``summary``."""
    final = summary.get("final") or {}
    outcome |= {"folder": path.name, "status": summary["status"]}
    # A run interrupted early has no verdict to give; one stopped by train.stop_on has its own.
    if summary["status"] in ("completed", "stopped"):
        outcome["verdict"] = summary.get("verdict")
    outcome |= {"effective_rank": final.get("effective_rank")}
    outcome |= {"wall_time_s": summary.get("wall_time_s"), "steps_done": summary["steps_done"]}
    if summary["status"] == "diverged":
        outcome["reason"] = summary.get("divergence")
    elif summary["status"] == "stopped":
        outcome["reason"] = summary.get("stop_reason")
    elif summary["status"] == "interrupted":
        outcome["reason"] = f"stopped after {summary['steps_done']} of {summary['steps']} steps"
    return outcome


def failed(task: Task, reason: str) -> dict[str, Any]:
    """The outcome of a run whose worker process died under it."""
    folder = find_folder(task)
    return {
        "index": task.index,
        "status": "failed",
        "reason": reason,
        "folder": folder and folder.name,
    }


@contextlib.contextmanager
def started_with(env: dict[str, str], ignore_sigint: bool = False) -> Iterator[None]:
    """Start processes with ``env`` added to ours (and SIGINT ignored, which they inherit),
    then put our environment and handler back."""
    before = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    handler = signal.signal(signal.SIGINT, signal.SIG_IGN) if ignore_sigint else None
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if ignore_sigint:
            signal.signal(signal.SIGINT, handler)


# --------------------------------------------------------------------------- the pool
class Pool:
    """``concurrent.futures.ProcessPoolExecutor`` with spawned workers (fresh interpreters, so
    the thread variables reach OpenMP and MKL). The workers leave the terminal's process group:
    a Ctrl-C reaches the sweep's process, which passes one signal on to each worker."""

    name = "pool"

    def __init__(self, workers: int, threads: int) -> None:
        self.slots: int | None = workers
        self.workers, self.threads = workers, threads
        self._pool = self._start()

    def _start(self) -> futures.ProcessPoolExecutor:
        return futures.ProcessPoolExecutor(
            self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=init_worker,
            initargs=(self.threads,),
        )

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "workers": self.workers, "threads": self.threads}

    def submit(self, tasks: list[Task]) -> list[Any]:
        with started_with(thread_env(self.threads)):
            return [self._pool.submit(run_task, t) for t in tasks]

    def wait(self, handles: dict[Any, Task], timeout: float) -> list[tuple[Any, dict[str, Any]]]:
        done, _ = futures.wait(list(handles), timeout, futures.FIRST_COMPLETED)
        out, broken = [], False
        for future in done:
            try:
                out.append((future, future.result()))
            except BrokenProcessPool:
                broken = True
                why = "its worker process died (killed, or out of memory)"
                out.append((future, failed(handles[future], why)))
        if broken:  # the pool is unusable now: a new one runs the rest
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._start()
        return out

    def interrupt(self, handles: dict[Any, Task], times: int) -> None:
        """SIGINT to every worker: a run takes the first as "stop after the step in progress"
        and the next as "stop at once"; an idle worker ignores it."""
        for pid in list(getattr(self._pool, "_processes", None) or {}):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGINT)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def make_executor(
    name: str,
    folder: Path,
    workers: int,
    threads: int,
    slurm: dict[str, Any],
    asked: int | None = None,
) -> Any:
    """A `Pool` or a `slurm.Submitit`; ``asked`` is the --workers given, if any (only that
    caps a SLURM array)."""
    if name == "pool":
        return Pool(workers, threads)
    from .slurm import Submitit

    return Submitit(folder, workers, threads, slurm, asked)


def check_executor(name: str, slurm: list[str]) -> dict[str, Any]:
    """The executor's name and ``--slurm`` options checked before anything is created."""
    if name not in EXECUTORS:
        raise ConfigError(f"--executor {name}: choose from {', '.join(EXECUTORS)}")
    if name != "submitit":
        if slurm:
            raise ConfigError("--slurm goes with --executor submitit")
        return {}
    from .slurm import parse_slurm

    return parse_slurm(slurm)
