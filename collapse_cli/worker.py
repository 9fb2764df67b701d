"""The process a run of a sweep starts in, before torch loads: the thread variables, its own
process group (a Ctrl-C at the terminal reaches only the sweep's process, which passes one
signal on to each run), and a stop asked for before the run's own signal handler is in place.
Standard library only: a spawned pool worker imports this module first.
"""

from __future__ import annotations

import os
import signal
from typing import Any

from .threads import set_thread_env

_asked: list[str] = []  # the signals received while no run's handler was in place


def ask_stop(signum: int, frame: Any) -> None:
    """The handler between runs: remember the request for the next run to act on."""
    _asked.append(signal.Signals(signum).name)


def stop_asked() -> bool:
    return bool(_asked)


def catch_stops() -> dict[int, Any]:
    """SIGINT and SIGTERM are remembered (`ask_stop`) while no run is going; returns the
    handlers they had."""
    return {s: signal.signal(s, ask_stop) for s in (signal.SIGINT, signal.SIGTERM)}


def init_worker(threads: int) -> None:
    """The start of a pool worker."""
    set_thread_env(threads)
    os.setpgrp()
    catch_stops()


class PassOnStop:
    """A run reporter that hands a stop asked for while the run was being built to the run's
    own handler, in place by the time the loop starts: the run then stops after its first
    step, as it would at a Ctrl-C."""

    def start(self, steps: int) -> None:
        if stop_asked():
            os.kill(os.getpid(), signal.SIGINT)

    def advance(self, step: int) -> None: ...

    def log(self, row: dict[str, Any], dim: int) -> None: ...
