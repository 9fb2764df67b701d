"""submitit as a sweep's executor: a SLURM job array where there is SLURM, submitit's local
executor elsewhere. A job signalled for preemption or before its time limit is requeued by
submitit and continues its run from its checkpoint (`SweepJob.checkpoint`). Imported only
for ``--executor submitit``: submitit is an optional extra."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..threads import thread_env
from ..worker import catch_stops
from ..yamlfile import parse_scalar
from .executors import (
    Task,
    ended_summary,
    failed,
    find_folder,
    reported,
    resumable,
    run_task,
    started_with,
)

LOCAL_TIMEOUT_MIN = 7 * 24 * 60  # submitit's local executor kills a job after 2 min by default


class SweepJob:
    """The callable submitit runs. On SLURM, a job signalled before its time limit or for
    preemption calls `checkpoint`: submitit requeues the same task, which then finds the run's
    folder and continues it from its checkpoint through `resume_run`, or, when the run had
    already ended (completed, diverged, or stopped by train.stop_on), reports how it ended
    without running it again."""

    def __call__(self, task: Task) -> dict[str, Any]:
        # Until the run's own handler takes over, SIGTERM (the sweep stopping) is remembered
        # and acted on by `run_task` (submitit itself would only log it).
        previous = catch_stops()
        try:
            if task.folder is None:  # a requeued job finds what its first attempt left
                folder = find_folder(task)
                summary = ended_summary(folder) if folder is not None else None
                if folder is not None and summary is not None:  # it ended: nothing to run
                    return reported({"index": task.index}, folder, summary)
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

    def __init__(
        self, folder: Path, workers: int, threads: int, slurm: dict[str, Any], asked: int | None
    ) -> None:
        import submitit

        self.executor = submitit.AutoExecutor(folder=folder / "submitit")
        self.cluster = self.executor.cluster
        self.workers, self.threads = workers, threads
        params: dict[str, Any] = {"name": folder.name, "cpus_per_task": threads}
        params |= {"local_timeout_min": LOCAL_TIMEOUT_MIN}
        if self.cluster == "slurm" and "slurm_array_parallelism" not in slurm and asked:
            params["slurm_array_parallelism"] = asked  # else as many as SLURM gives
        self.executor.update_parameters(**params | slurm)
        self.slots = None if self.cluster == "slurm" else workers

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "cluster": self.cluster, "workers": self.workers,
                "threads": self.threads}  # fmt: skip

    def submit(self, tasks: list[Task]) -> list[Any]:
        # Local jobs inherit an ignored SIGINT: a Ctrl-C reaches their runs, not the submitit
        # process around each, which would kill its run a second later.
        env = started_with(thread_env(self.threads), ignore_sigint=True)
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


def slurm_threads(slurm: dict[str, Any]) -> int | None:
    """The threads a run gets from ``--slurm cpus_per_task=N`` when there is SLURM here (where
    submitit's local executor runs the jobs, the SLURM options do not apply)."""
    cpus = slurm.get("slurm_cpus_per_task")
    if isinstance(cpus, int) and cpus > 0 and shutil.which("srun") is not None:
        return cpus
    return None
