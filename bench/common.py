"""Shared pieces of the benchmark scripts: interleaved timing, the machine, tables, targets, JSON.

Not a test module and not part of the package: the scripts in bench/ import it as ``common``
(``python bench/<script>.py`` puts bench/ on sys.path). It imports neither torch nor matplotlib.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent  # the repository
RESULTS = ROOT / "bench" / "results"
VENV_BIN = Path(sys.executable).parent  # the interpreter running the bench, and its scripts
COLLAPSE = str(VENV_BIN / "collapse")


# --------------------------------------------------------------------------- timing
def stats(samples: Sequence[float]) -> dict[str, Any]:
    """Median, min, max and the spread (max − min) / median of repeated measurements."""
    med = statistics.median(samples)
    lo, hi = min(samples), max(samples)
    return {
        "median": med,
        "min": lo,
        "max": hi,
        "spread": (hi - lo) / med if med else 0.0,
        "samples": list(samples),
    }


def interleave(
    fns: dict[str, Callable[[], float]], repeats: int, *, label: str = ""
) -> dict[str, dict[str, Any]]:
    """Call each fn once per round (A B C A B C ...) for ``repeats`` rounds; each fn returns its
    own measured seconds. The order rotates every round so no variant always runs first."""
    samples: dict[str, list[float]] = {k: [] for k in fns}
    names = list(fns)
    for r in range(repeats):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            samples[name].append(fns[name]())
        if label:
            got = "  ".join(f"{k} {fmt_s(samples[k][-1])}" for k in names)
            print(f"  [{label}] round {r + 1}/{repeats}: {got}", file=sys.stderr, flush=True)
    return {k: stats(v) for k, v in samples.items()}


def run_process(cmd: Sequence[str], env: dict[str, str] | None = None) -> float:
    """Wall time of one whole process (seconds); raises with its stderr when it fails."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return wall


def run_process_cpu(cmd: Sequence[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """(wall, cpu) seconds of one whole process, cpu = its user + system time as the kernel
    accounted it (the growth of this process's reaped-children totals, so one process at a
    time). On a shared machine the cpu time moves much less with the neighbours' load than
    the wall time does. Raises with its stderr when the process fails."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = run_process(cmd, env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def child_env(threads: int | None) -> dict[str, str]:
    """The environment of the measured processes: ours, plus a thread count when one is given
    (OMP/MKL threads of torch's CPU kernels), so both sides of a comparison get the same."""
    env = dict(os.environ)
    env.pop("COLLAPSE_RUNS_DIR", None)
    if threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    return env


# --------------------------------------------------------------------------- the machine
def machine(device: str = "cpu") -> dict[str, Any]:
    """What the numbers were measured on. torch is imported only if already loaded."""
    info: dict[str, Any] = {
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpu": _cpu_name(),
        "cores": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "os": platform.platform(),
        "load_avg_1m_at_start": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "git_commit": _git_commit(),
    }
    torch = sys.modules.get("torch")
    if torch is not None:
        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        if device.startswith("cuda") and torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    info["device"] = device
    return info


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        kib = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
    except (OSError, IndexError, ValueError):
        return None
    return round(kib / 2**20, 1)


def _git_commit() -> str | None:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            cwd=ROOT,
        ).stdout.strip()
    except OSError:
        return None
    return (head + ("-dirty" if dirty else "")) or None


# --------------------------------------------------------------------------- reporting
def fmt_s(seconds: float) -> str:
    """Seconds at a readable scale: 812 µs, 41.3 ms, 2.41 s."""
    if abs(seconds) < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if abs(seconds) < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain fixed-width table (first column left-aligned, the rest right-aligned)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(r: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule, *map(line, cells[1:])])


def target(name: str, value: float, limit: float, unit: str, op: str = "≤") -> dict[str, Any]:
    """One target's verdict (``op``: ≤, <, ≥): PASS, or MISS with how far off, as a share of
    the limit."""
    ok = {"≤": value <= limit, "<": value < limit, "≥": value >= limit}[op]
    miss = 0.0 if ok else abs(value - limit) / limit
    text = f"{name}: {value:.3g}{unit} (target {op} {limit:g}{unit}) " + (
        "PASS" if ok else f"MISS by {miss:.1%}"
    )
    return {
        "target": name,
        "value": value,
        "limit": limit,
        "op": op,
        "unit": unit,
        "pass": ok,
        "miss_by": None if ok else miss,
        "text": text,
    }


def print_targets(results: list[dict[str, Any]]) -> None:
    print("\ntargets")
    for r in results:
        print("  " + r["text"])


def save(name: str, data: dict[str, Any]) -> Path:
    """Write bench/results/<name>.json (small: medians, spreads and raw samples)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(_rounded(data), indent=1, default=str) + "\n")
    print(f"\nresults: {path.relative_to(ROOT)}")
    return path


def _rounded(value: Any) -> Any:
    """Floats to 5 significant digits, recursively: timings are not more precise than that."""
    if isinstance(value, float):
        return float(f"{value:.5g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(v) for v in value]
    return value


BREAKDOWN_HEADS = ["wall", "python + torch + optim", "other imports", "loop", "figures", "rest"]


def breakdown_cells(r: dict[str, Any], side: str, steps: int = 500) -> list[str]:
    """Where one side's wall time goes, from the medians of a demo's phases: the columns of
    BREAKDOWN_HEADS (the rest is process start-up, config, files, git and exit)."""
    torch_s = r["import_torch"]["median"]
    imports = r[f"imports_{side}"]["median"]
    loop = steps / r["steps_per_second"][side]
    figs = r.get(f"figures_{side}", {}).get("median", 0.0)
    total = r[side]["median"]
    cells = [total, torch_s, imports - torch_s, loop, figs, total - imports - loop - figs]
    return [fmt_s(c) for c in cells]


def save_figure(fig: Any, path: Path) -> None:
    """A bench script's figure: laid out, saved (its folder made), its path printed."""
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    print(f"figure: {path}")
