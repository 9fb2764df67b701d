"""Where the runs of a sweep run: a local process pool, or submitit (a SLURM job array where
there is SLURM, its local executor elsewhere); and the one function every run goes through,
`run_task`, which starts a run or continues it from its checkpoint.

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
import time
from collections.abc import Iterator
from concurrent import futures
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import rundir
from ..errors import CollapseError, ConfigError
from ..reading.sweep import folders_by_key
from ..threads import thread_env
from ..worker import PassOnStop, catch_stops, init_worker, stop_asked
from ..yamlfile import parse_scalar

EXECUTORS = ("pool", "submitit")
LOCAL_TIMEOUT_MIN = 7 * 24 * 60  # submitit's local executor kills a job after 2 min by default


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
    ended = meta.get("status") in ("completed", "diverged")
    return not ended and (folder / rundir.CHECKPOINT).is_file()


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
    final = summary.get("final") or {}
    outcome |= {"folder": path.name, "status": summary["status"]}
    if summary["status"] == "completed":  # a run that stopped early has no verdict to give
        outcome["verdict"] = summary.get("verdict")
    outcome |= {"effective_rank": final.get("effective_rank")}
    outcome |= {"wall_time_s": summary.get("wall_time_s"), "steps_done": summary["steps_done"]}
    if summary["status"] == "diverged":
        outcome["reason"] = summary.get("divergence")
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
def _started_with(env: dict[str, str], ignore_sigint: bool = False) -> Iterator[None]:
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
        with _started_with(thread_env(self.threads)):
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


# --------------------------------------------------------------------------- submitit
class SweepJob:
    """The callable submitit runs. On SLURM, a job signalled before its time limit or for
    preemption calls `checkpoint`: submitit requeues the same task, which then finds the run's
    folder and continues it from its checkpoint through `resume_run`."""

    def __call__(self, task: Task) -> dict[str, Any]:
        # Until the run's own handler takes over, SIGTERM (the sweep stopping) is remembered
        # and acted on by `run_task` (submitit itself would only log it).
        previous = catch_stops()
        try:
            if task.folder is None:  # a requeued job finds what its first attempt left
                folder = find_folder(task)
                task.folder = folder.name if folder is not None and resumable(folder) else None
            return run_task(task)
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def checkpoint(self, task: Task) -> Any:
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, task)


def parse_slurm(items: list[str]) -> dict[str, Any]:
    """``--slurm key=value`` options as submitit's ``slurm_<key>`` parameters, each checked
    against the parameters submitit's SLURM executor knows."""
    try:
        import submitit
    except ImportError:
        raise ConfigError(
            "--executor submitit needs submitit, which is not installed: "
            "pip install 'collapse-cli[submitit]'"
        ) from None
    known = set(submitit.SlurmExecutor._valid_parameters())
    known |= set(submitit.AutoExecutor._valid_parameters())
    params: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--slurm {item}: expected key=value, e.g. partition=gpu")
        if key not in known:
            raise ConfigError(
                f"--slurm {item}: {key!r} is not a SLURM parameter of submitit; choose from "
                + ", ".join(sorted(known))
            )
        params[f"slurm_{key}"] = parse_scalar(raw)
    return params


class Submitit:
    """submitit's AutoExecutor: a job array on SLURM (all runs submitted at once, at most
    ``workers`` running when given), otherwise its local executor with at most ``workers``
    jobs at a time. Its pickles and logs go to ``<sweep>/submitit/``."""

    name = "submitit"

    def __init__(self, folder: Path, workers: int, threads: int, slurm: dict[str, Any]) -> None:
        import submitit

        self.executor = submitit.AutoExecutor(folder=folder / "submitit")
        self.cluster = self.executor.cluster
        self.workers, self.threads = workers, threads
        params: dict[str, Any] = {"name": folder.name, "cpus_per_task": threads}
        params |= {"local_timeout_min": LOCAL_TIMEOUT_MIN}
        if self.cluster == "slurm" and "slurm_array_parallelism" not in slurm and workers:
            params["slurm_array_parallelism"] = workers
        self.executor.update_parameters(**params | slurm)
        self.slots = None if self.cluster == "slurm" else workers

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "cluster": self.cluster, "workers": self.workers,
                "threads": self.threads}  # fmt: skip

    def submit(self, tasks: list[Task]) -> list[Any]:
        # Local jobs inherit an ignored SIGINT: a Ctrl-C reaches their runs, not the submitit
        # process around each, which would kill its run a second later.
        env = _started_with(thread_env(self.threads), ignore_sigint=True)
        with env, self.executor.batch():
            jobs = [self.executor.submit(SweepJob(), t) for t in tasks]
        return jobs

    def wait(self, handles: dict[Any, Task], timeout: float) -> list[tuple[Any, dict[str, Any]]]:
        deadline = time.monotonic() + timeout
        while True:
            done = [job for job in handles if job.done()]
            if done or time.monotonic() >= deadline:
                break
            time.sleep(0.1)
        out = []
        for job in done:
            try:
                out.append((job, job.result()))
            except Exception as e:  # the job itself failed: its last line says why
                lines = [line for line in str(e).strip().splitlines() if line.strip()]
                out.append((job, failed(handles[job], lines[-1] if lines else type(e).__name__)))
        return out

    def interrupt(self, handles: dict[Any, Task], times: int) -> None:
        """Local jobs: SIGTERM to each job's process, which passes it to its run (stop after
        the step in progress). SLURM: scancel, which SLURM delivers as SIGTERM."""
        for job in handles:
            with contextlib.suppress(Exception):
                if self.cluster == "slurm":
                    job.cancel(check=False)
                else:
                    os.kill(int(job.job_id), signal.SIGTERM)

    def close(self) -> None: ...


def make_executor(
    name: str, folder: Path, workers: int, threads: int, slurm: dict[str, Any]
) -> Pool | Submitit:
    if name == "pool":
        return Pool(workers, threads)
    return Submitit(folder, workers, threads, slurm)


def check_executor(name: str, slurm: list[str]) -> dict[str, Any]:
    """The executor's name and ``--slurm`` options checked before anything is created."""
    if name not in EXECUTORS:
        raise ConfigError(f"--executor {name}: choose from {', '.join(EXECUTORS)}")
    if name != "submitit":
        if slurm:
            raise ConfigError("--slurm goes with --executor submitit")
        return {}
    return parse_slurm(slurm)
