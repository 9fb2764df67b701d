"""Overhead of ``collapse inspect`` against a plain NumPy script, as whole processes (issue 15, 9).

``collapse inspect FILE.npy`` against ``python bench/bare_inspect.py FILE.npy`` (the same
metrics of the same matrix, written by hand in NumPy), interleaved, on a 20,000 × 1,024
float32 matrix written once (σ_i ∝ i^−½ plus an offset, like trained embeddings). With
``--figure`` also ``collapse inspect FILE --out DIR`` (inspect.json and spectrum.png) against
``bare_inspect.py FILE --figure PNG``. Target: collapse ≤ 1.2 × the NumPy script's wall time.

Each process's wall and cpu time (user + system, as the kernel accounts it) are recorded; on a
shared machine the cpu time is the steadier of the two. A breakdown, timed inside one
instrumented process of each side in the same rounds, says where the time goes: the
interpreter and imports, reading the file, the metrics, the rest (readings, table, exit).

    python bench/overhead_inspect.py                     # 5 rounds, ~2 min
    python bench/overhead_inspect.py --threads 1 --repeats 7 --figure
    python bench/overhead_inspect.py --size 4096x512
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from common import (
    COLLAPSE,
    ROOT,
    child_env,
    fmt_s,
    interleave,
    machine,
    print_targets,
    run_process_cpu,
    save,
    stats,
    table,
    target,
)

LIMIT = 1.2  # collapse inspect wall ≤ 1.2 × the NumPy script's

# Phases, timed inside one process of each side (seconds since the interpreter started its
# own clock; the interpreter's start-up itself is the whole process minus their sum).
PHASES = {
    "collapse": "import time; t = [time.perf_counter()]\n"
    "import sys, torch; t.append(time.perf_counter())\n"
    "import collapse_cli.cli, collapse_cli.display\n"
    "from collapse_cli.inspection import inspect_embeddings, load_embeddings\n"
    "t.append(time.perf_counter())\n"
    "z = load_embeddings(sys.argv[1]); t.append(time.perf_counter())\n"
    "report = inspect_embeddings(z); t.append(time.perf_counter())\n"
    "print(' '.join(str(b - a) for a, b in zip(t, t[1:])))",
    "numpy": "import time; t = [time.perf_counter()]\n"
    "import sys, numpy as np; sys.path.insert(0, 'bench'); import bare_inspect\n"
    "t.append(time.perf_counter()); t.append(time.perf_counter())\n"
    "z = np.load(sys.argv[1]); t.append(time.perf_counter())\n"
    "values = bare_inspect.metrics(z); t.append(time.perf_counter())\n"
    "print(' '.join(str(b - a) for a, b in zip(t, t[1:])))",
}
PHASE_NAMES = ["torch / numpy", "package, typer, rich", "read the file", "metrics, readings"]


def write_matrix(path: Path, n: int, d: int) -> None:
    """An (n, d) float32 matrix with a decaying spectrum and an offset (NumPy, seed 0)."""
    code = (
        "import sys, numpy as np; n, d = int(sys.argv[2]), int(sys.argv[3]); "
        "rng = np.random.default_rng(0); s = np.arange(1, d + 1) ** -0.5; "
        "np.save(sys.argv[1], (rng.standard_normal((n, d)) * s + 0.1).astype(np.float32))"
    )
    subprocess.run([sys.executable, "-c", code, str(path), str(n), str(d)], check=True, cwd=ROOT)


def agreement(file: Path, env: dict[str, str]) -> float:
    """The largest relative difference between a metric of ``collapse inspect --json`` and the
    NumPy script's: both compute the same thing (BLAS round-off apart)."""
    ours = json.loads(
        subprocess.run(
            [COLLAPSE, "inspect", str(file), "--json"],
            capture_output=True, text=True, env=env, cwd=ROOT, check=True,
        ).stdout
    )["metrics"]  # fmt: skip
    theirs = json.loads(
        subprocess.run(
            [sys.executable, "bench/bare_inspect.py", str(file)],
            capture_output=True, text=True, env=env, cwd=ROOT, check=True,
        ).stdout
    )  # fmt: skip
    missing = sorted(set(ours) ^ set(theirs) - {"knn_acc"})
    if missing:
        print(f"  metrics on one side only: {', '.join(missing)}")
    return max(
        abs(ours[k] - theirs[k]) / max(abs(theirs[k]), 1e-300) for k in set(ours) & set(theirs)
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--repeats", type=int, default=5, help="interleaved rounds (default 5)")
    p.add_argument("--threads", type=int, help="OMP/MKL/OpenBLAS threads of both processes")
    p.add_argument("--size", default="20000x1024", help="N x d of the matrix (default 20000x1024)")
    p.add_argument("--figure", action="store_true", help="also time both sides drawing a figure")
    args = p.parse_args()
    n, d = (int(x) for x in args.size.lower().split("x"))
    info = machine()
    info["threads_env"] = args.threads
    print(
        f"{info['cpu']} ({info['cores']} cores), {n} × {d} float32, threads "
        f"{args.threads or 'default'}, load {info['load_avg_1m_at_start']}"
    )
    env = child_env(args.threads)
    if args.threads:
        env["OPENBLAS_NUM_THREADS"] = str(args.threads)  # NumPy's BLAS
    tmp = Path(tempfile.mkdtemp(prefix="bench-inspect-"))
    try:
        file = tmp / "embeddings.npy"
        write_matrix(file, n, d)
        cmds = {
            "collapse": [COLLAPSE, "inspect", str(file)],
            "numpy": [sys.executable, "bench/bare_inspect.py", str(file)],
        }
        if args.figure:
            cmds["collapse --out"] = [COLLAPSE, "inspect", str(file), "--out", str(tmp / "out")]
            cmds["numpy --figure"] = [*cmds["numpy"], "--figure", str(tmp / "spectrum.png")]
        cpu: dict[str, list[float]] = {k: [] for k in cmds}
        phases: dict[str, list[list[float]]] = {"collapse": [], "numpy": []}

        def timed(name: str) -> float:
            wall, used = run_process_cpu(cmds[name], env)
            cpu[name].append(used)
            return wall

        def phased(side: str) -> float:
            out = subprocess.run(
                [sys.executable, "-c", PHASES[side], str(file)],
                capture_output=True, text=True, env=env, cwd=ROOT, check=True,
            ).stdout  # fmt: skip
            phases[side].append([float(x) for x in out.split()])
            return sum(phases[side][-1])

        for name in cmds:  # warm-up, untimed: the page cache, font caches
            run_process_cpu(cmds[name], env)
        fns = {name: (lambda name=name: timed(name)) for name in cmds}
        fns |= {f"phases {side}": (lambda side=side: phased(side)) for side in phases}
        result = interleave(fns, args.repeats, label="inspect")
        diff = agreement(file, env)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    for name in cmds:
        result[name]["cpu"] = stats(cpu[name])
    pairs = [("collapse", "numpy")] + [("collapse --out", "numpy --figure")] * args.figure
    rows = []
    for a, b in pairs:
        wall = result[a]["median"] / result[b]["median"]
        used = result[a]["cpu"]["median"] / result[b]["cpu"]["median"]
        result[f"{a} / {b}"] = {"wall": wall, "cpu": used}
        spread = max(result[a]["spread"], result[b]["spread"])
        rows.append(
            [
                f"{a} vs {b}",
                fmt_s(result[a]["median"]),
                fmt_s(result[b]["median"]),
                f"{wall:.3f}",
                f"{spread:.0%}",
                f"{fmt_s(result[a]['cpu']['median'])} / {fmt_s(result[b]['cpu']['median'])}",
                f"{used:.3f}",
            ]
        )
    print()
    print(
        table(["comparison", "collapse", "numpy", "wall ratio", "spread", "cpu", "cpu ratio"], rows)
    )
    print(f"  metrics agree to {diff:.1e} (largest relative difference)")
    print("\nbreakdown (medians, seconds inside one instrumented process of each side)")
    brk = []
    for side in ("collapse", "numpy"):
        cols = list(zip(*phases[side], strict=True))
        med = [stats(c)["median"] for c in cols]
        whole = result[side]["median"]
        brk.append([side, fmt_s(whole), *(fmt_s(m) for m in med), fmt_s(whole - sum(med))])
        result[f"phases {side}"]["each"] = dict(zip(PHASE_NAMES, med, strict=True))
    heads = ["side", "whole process", *PHASE_NAMES, "start-up, table, exit"]
    print(table(heads, brk))
    targets = [
        target(f"{a} / {b} wall", result[f"{a} / {b}"]["wall"], LIMIT, "×") for a, b in pairs
    ]
    print_targets(targets)
    save("overhead_inspect", {"machine": info, "size": [n, d], "results": result,
                              "max_rel_diff": diff, "targets": targets})  # fmt: skip


if __name__ == "__main__":
    main()
