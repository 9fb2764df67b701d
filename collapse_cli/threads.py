"""How many CPU threads a run's torch uses: the environment a process must start with (OpenMP
and MKL read it once, when torch loads), the share of the cores each run of a sweep gets, and
``torch.set_num_threads`` for the length of a run. Standard library only; torch is imported
only inside `torch_threads`, so the CLI can set the environment before anything loads torch.

docs/performance.md has the measurements behind the defaults.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

# The variables torch's CPU kernels read when they load: OpenMP's pool and MKL's.
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
# Threads per run of a sweep unless --threads or train.threads says otherwise: runs side by
# side are faster as one single-threaded process per core than as fewer, wider ones.
SWEEP_THREADS = 1
# Threads of `collapse run` unless --threads, train.threads or OMP_NUM_THREADS say otherwise:
# with more, OpenMP's threads spin waiting for each other whenever other work holds a core.
RUN_THREADS = 1


def cores() -> int:
    """The CPU cores this process may run on (its affinity mask: a SLURM or taskset share)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def thread_env(threads: int) -> dict[str, str]:
    """The variables that give a process started with them ``threads`` threads."""
    return {name: str(threads) for name in THREAD_VARS}


def set_thread_env(threads: int | None) -> None:
    """Set the thread variables in this process's environment, for itself before torch loads
    and for the processes it starts: ``threads`` threads; None: `RUN_THREADS`, unless the
    environment already sets OMP_NUM_THREADS (then torch follows it)."""
    if threads:
        os.environ.update(thread_env(threads))
    elif "OMP_NUM_THREADS" not in os.environ:
        os.environ.update(thread_env(RUN_THREADS))


def share(
    runs: int, workers: int | None, threads: int | None, available: int | None = None
) -> tuple[int, int]:
    """(workers, threads per run) for ``runs`` runs side by side on ``available`` cores.

    Given neither, each run gets `SWEEP_THREADS` and there is one worker per share of the cores;
    given one, the other divides the cores by it; never more workers than runs.
    """
    available = available or cores()
    if workers is None:
        threads = threads or SWEEP_THREADS
        workers = max(1, available // threads)
    elif threads is None:
        threads = max(1, available // workers)
    return max(1, min(workers, runs)), threads


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """``torch.set_num_threads(threads)`` for a block, the previous count restored after (a run
    started from a notebook leaves the notebook's torch as it was). None changes nothing."""
    if not threads:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
