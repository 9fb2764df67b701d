"""The figures of ``collapse run``, drawn by a helper process started before torch loads.

While the run imports torch and trains, the helper imports matplotlib and warms its caches
(fonts, the mathtext parser, the Agg renderer) on another core; when the run ends it draws the
run's standard figures (the same code and the same files as ``collapse plot``) and the run
waits for it before it ends. What it saves is matplotlib's start-up and, on a machine with a
core to spare, part of the drawing (docs/performance.md, h). Without a helper (the Python
API, a sweep's workers, or a helper that did not answer) the run draws its figures itself.

The protocol: the run writes one line, the run folder, on the helper's stdin; the helper
answers one JSON line on its stdout, ``{"paths": [...]}`` or ``{"error": "..."}``, and exits.
An empty line or the end of its stdin (the run ended without figures, or died) ends it.
Where the system can fork, the figures are shared out over copies of the helper, one per core
(`in_shares`, which `collapse plot` uses as well).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder that holds collapse_cli/


class Drawer:
    """A started helper process: `draw` once, or `close`."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.drawing = False  # a run folder sent, its answer not yet read

    def draw(self, run_dir: Path) -> list[Path] | None:
        """Draw ``run_dir``'s figures into its plots/ and return their paths; None when the
        helper gave no answer (then the caller draws them itself). A figure that failed in
        the helper raises RuntimeError with its error."""
        try:
            assert self.proc.stdin is not None and self.proc.stdout is not None
            self.drawing = True
            self.proc.stdin.write(f"{Path(run_dir).resolve()}\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except (OSError, ValueError):  # a helper that died early: a closed pipe
            line = ""
        self.drawing = False
        self.close(timeout=1)  # it exits as soon as it has answered
        try:
            answer = json.loads(line)
        except ValueError:
            return None
        if "error" in answer:
            raise RuntimeError(answer["error"])
        return [Path(p) for p in answer["paths"]]

    def close(self, timeout: float | None = None) -> None:
        """End the helper (idempotent), waiting at most ``timeout`` seconds for it to exit.
        By default one that is not drawing has nothing to save (it may still be warming up)
        and is ended at once; one interrupted while drawing is given ten seconds to finish the
        figure it is writing."""
        with contextlib.suppress(OSError, ValueError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=(10 if self.drawing else 0) if timeout is None else timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.drawing = False


_started: Drawer | None = None


def start() -> Drawer | None:
    """Start the helper (once per process); None when it cannot be started."""
    global _started
    if _started is not None:
        return _started
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_ROOT), env.get("PYTHONPATH")]))
    env["MPLBACKEND"] = "Agg"
    env["OPENBLAS_NUM_THREADS"] = env["OMP_NUM_THREADS"] = "1"  # no BLAS threads to fork with
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "collapse_cli.reading.drawer"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )
    except OSError:
        return None
    _started = Drawer(proc)
    atexit.register(_started.close)
    return _started


def take() -> Drawer | None:
    """The started helper, handed out once (the run that ends first draws with it)."""
    global _started
    drawer, _started = _started, None
    return drawer


def stop() -> None:
    """End a started helper that will not be needed (the run draws no figures)."""
    drawer = take()
    if drawer is not None:
        drawer.close()


def _warm_up() -> None:
    """What a first figure costs once per process, paid before the run ends: matplotlib's
    import, the font files, the mathtext parser (log-axis labels) and the Agg renderer."""
    import numpy as np

    from .style import PANEL_SIZE, figure_style, new_figure, overview_size

    with figure_style():
        for size in [PANEL_SIZE, overview_size(3), overview_size(4)]:  # the renderers used
            ax = new_figure(1, 1, size).axes[0]
            ax.plot(np.arange(1, 4), [1e-3, 1.0, 1e3], label="λ")
            ax.set_yscale("log")
            ax.set(title="warm", xlabel="step", ylabel="λ")
            ax.legend(loc="best")
            ax.figure.canvas.draw()


def cores() -> int:
    """The cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def share_out(weights: dict[str, float], k: int) -> list[list[str]]:
    """The names split into at most ``k`` groups of nearly equal total weight, the heaviest
    group first: each next-heaviest name goes to the lightest group so far."""
    groups: list[list[str]] = [[] for _ in range(max(1, min(k, len(weights))))]
    totals = [0.0] * len(groups)
    for name in sorted(weights, key=lambda n: -weights[n]):
        i = totals.index(min(totals))
        groups[i].append(name)
        totals[i] += weights[name]
    return [g for _, g in sorted(zip(totals, groups, strict=True), key=lambda t: -t[0]) if g]


def in_shares(weights: dict[str, float], draw: Callable[[list[str]], object]) -> None:
    """``draw(names)`` for every name, the names shared out by weight between this process
    and forked copies of it, one share per core: the caller waits for the longest share, not
    for all of them one after another. This process draws the heaviest share; each copy
    draws its own and ends without any clean-up; a copy that fails has its share drawn here.
    A process with torch loaded (its thread pools do not survive a fork) draws them all."""
    if not hasattr(os, "fork") or "torch" in sys.modules:
        draw(list(weights))
        return
    mine, *theirs = share_out(weights, cores())
    copies = []
    for group in theirs:
        try:
            pid = os.fork()
        except OSError:  # no more processes: drawn here
            mine += group
            continue
        if pid == 0:  # a copy: its share, then out at once
            code = 1
            try:
                draw(group)
                code = 0
            finally:
                os._exit(code)
        copies.append((pid, group))
    draw(mine)
    for pid, group in copies:
        if os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) != 0:
            draw(group)


def main() -> None:
    # Ctrl-C reaches the whole process group: the run handles it (and then still wants its
    # figures), so the helper ignores it; it ends when its stdin does.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    out = sys.stdout
    sys.stdout = sys.stderr  # anything else printed stays off the answer's line
    with contextlib.suppress(Exception):  # the real drawing reports what is wrong
        _warm_up()
    line = sys.stdin.readline().strip()
    if not line:
        return
    try:
        from .figures import plot_run

        answer = {"paths": [str(p) for p in plot_run(Path(line), shared=True)]}
    except Exception as e:
        answer = {"error": f"{type(e).__name__}: {e}"}
    out.write(json.dumps(answer) + "\n")
    out.flush()
    os._exit(0)  # the figures are written: nothing is left that a teardown would finish


if __name__ == "__main__":
    main()
