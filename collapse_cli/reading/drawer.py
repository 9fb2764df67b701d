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
Where the system can fork, the overview is saved by a copy of the helper at the same time as
the other figures (`_draw`).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder that holds collapse_cli/


class Drawer:
    """A started helper process: `draw` once, or `close`."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc

    def draw(self, run_dir: Path) -> list[Path] | None:
        """Draw ``run_dir``'s figures into its plots/ and return their paths; None when the
        helper gave no answer (then the caller draws them itself). A figure that failed in
        the helper raises RuntimeError with its error."""
        try:
            assert self.proc.stdin is not None and self.proc.stdout is not None
            self.proc.stdin.write(f"{Path(run_dir).resolve()}\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except (OSError, ValueError):  # a helper that died early: a closed pipe
            line = ""
        self.close()
        try:
            answer = json.loads(line)
        except ValueError:
            return None
        if "error" in answer:
            raise RuntimeError(answer["error"])
        return [Path(p) for p in answer["paths"]]

    def close(self) -> None:
        """End the helper (idempotent): closing its stdin tells it to exit."""
        with contextlib.suppress(OSError, ValueError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


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

    from .style import figure_style, new_figure

    with figure_style():
        ax = new_figure(1, 1, (2, 2)).axes[0]
        ax.plot(np.arange(1, 4), [1e-3, 1.0, 1e3], label="λ")
        ax.set_yscale("log")
        ax.set(title="warm", xlabel="step", ylabel="λ")
        ax.legend(loc="best")
        ax.figure.canvas.draw()


def _draw(run_dir: Path) -> list[Path]:
    """`plot_run` (the same figures, the same files), with the overview, a third of the
    drawing, saved by a forked copy of this process while this one saves the rest: on a
    machine with a free core the run waits for the longer of the two, not for their sum."""
    from ..rundir import PLOTS
    from .figures import figures, plot_run, save
    from .run import load_run

    run = load_run(run_dir)
    if not run.metrics or not hasattr(os, "fork"):
        return plot_run(run_dir)
    figs, out = figures(run), run.path / PLOTS
    overview = {k: figs.pop(k) for k in ["overview"] if k in figs}
    out.mkdir(parents=True, exist_ok=True)
    pid = os.fork() if overview and figs else -1
    if pid == 0:  # the copy: the overview, then out without running any cleanup
        code = 1
        try:
            save(overview, out)
            code = 0
        finally:
            os._exit(code)
    paths = save(figs, out)
    if pid > 0 and os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0:
        paths += [out / f"{name}.png" for name in overview]
    else:  # no copy, or one that failed: drawn here
        paths += save(overview, out)
    return paths


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
        answer = {"paths": [str(p) for p in _draw(Path(line))]}
    except Exception as e:
        answer = {"error": f"{type(e).__name__}: {e}"}
    out.write(json.dumps(answer) + "\n")
    out.flush()


if __name__ == "__main__":
    main()
