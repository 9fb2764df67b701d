"""Overhead of ``collapse run`` on the article's two demos, as whole processes (issue 7, a).

``collapse run configs/X.yaml -q`` against ``python bench/bare_demo.py X`` (the same model,
data, 500 steps, metrics every 50 and files, in a bare loop), interleaved, for X = collapse and
infonce. Targets: collapse ≤ 1.10 × and infonce ≤ 1.05 × bare wall time (issue 18). A
process that imports torch and builds one Adam optimizer (which imports torch._dynamo) is timed
in the same rounds: the start-up that both pay. Each process's cpu time (user + system) is
recorded beside its wall time. When ``collapse run`` draws figures at the end
(``plots/`` in its run folder), the bare script is asked to draw its eight too.

    python bench/overhead_demos.py                       # 5 interleaved rounds, ~3 min
    python bench/overhead_demos.py --repeats 9 --threads 1
    python bench/overhead_demos.py --device cuda
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from common import (
    BREAKDOWN_HEADS,
    COLLAPSE,
    ROOT,
    breakdown_cells,
    child_env,
    fmt_s,
    interleave,
    machine,
    print_targets,
    run_process,
    run_process_cpu,
    save,
    stats,
    table,
    target,
)

DEMOS = ["collapse", "infonce"]
LIMITS = {"collapse": 1.10, "infonce": 1.05}  # collapse wall ≤ this × bare wall (issue 18)

# What both sides pay before the first step: the interpreter, torch, and torch._dynamo, which
# torch.optim imports when the first optimizer is built (over a second on its own).
TORCH = "import torch; torch.optim.Adam([torch.zeros(1, requires_grad=True)])"
# --breakdown: what each side imports, and its end-of-run figures drawn from one run folder
# (argv[1]) into argv[2], timed inside a fresh process (matplotlib's import included).
IMPORTS = {
    "collapse": TORCH + "; import collapse_cli.cli, collapse_cli.training",
    "bare": TORCH + "; import collapse_cli.metrics",
}
FIGURES = {
    "collapse": "import sys, time; from pathlib import Path; t = time.perf_counter(); "
    "from collapse_cli.reading.figures import plot_run; "
    "plot_run(Path(sys.argv[1]), Path(sys.argv[2])); "
    "print(time.perf_counter() - t)",
    "bare": "import sys, time, json; from pathlib import Path; sys.path.insert(0, 'bench'); "
    "from bare_demo import draw; run = Path(sys.argv[1]); "
    "rows = [json.loads(x) for x in (run / 'metrics.jsonl').read_text().splitlines()]; "
    "spec = [json.loads(x)['eigenvalues'] "
    "for x in (run / 'spectrum.jsonl').read_text().splitlines()]; "
    "t = time.perf_counter(); draw(Path(sys.argv[2]), rows, spec); print(time.perf_counter() - t)",
}


def only_run(runs_dir: Path) -> Path:
    """The one run folder that a ``collapse run`` wrote under a fresh ``runs_dir``."""
    (path,) = [p for p in runs_dir.iterdir() if p.is_dir()]
    return path


def measure(demo: str, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    env = child_env(args.threads)
    count = {"collapse": 0, "bare": 0}
    last: dict[str, Path] = {}

    def collapse_cmd() -> list[str]:
        count["collapse"] += 1
        last["collapse"] = tmp / f"{demo}-c{count['collapse']}"
        cmd = [COLLAPSE, "run", f"configs/{demo}.yaml", "-q", "--runs-dir", str(last["collapse"])]
        return [*cmd, "--device", args.device]

    def bare_cmd(figures: bool) -> list[str]:
        count["bare"] += 1
        last["bare"] = tmp / f"{demo}-b{count['bare']}"
        cmd = [sys.executable, "bench/bare_demo.py", demo, "--out", str(last["bare"])]
        return [*cmd, "--device", args.device] + ["--figures"] * figures

    # Warm-up (untimed): fills the page cache and tells whether `collapse run` draws figures.
    run_process(collapse_cmd(), env)
    sample = only_run(last["collapse"])  # kept for --breakdown
    figures = (sample / "plots").is_dir()
    run_process(bare_cmd(figures), env)

    rates: dict[str, list[float]] = {"collapse": [], "bare": []}
    cpu: dict[str, list[float]] = {"collapse": [], "bare": []}
    losses: dict[str, float] = {}

    def timed(side: str) -> float:
        cmd = collapse_cmd() if side == "collapse" else bare_cmd(figures)
        wall, used = run_process_cpu(cmd, env)
        cpu[side].append(used)
        folder = only_run(last[side]) if side == "collapse" else last[side]
        summary = json.loads((folder / "summary.json").read_text())
        rates[side].append(summary["steps_per_second"])
        losses[side] = summary["final"]["loss"]
        shutil.rmtree(last[side])
        return wall

    def seconds_printed(code: str) -> float:
        out = subprocess.run(
            [sys.executable, "-c", code, str(sample), str(tmp / "figs")],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            check=True,
        ).stdout
        return float(out.split()[-1])

    fns = {
        "collapse": lambda: timed("collapse"),
        "bare": lambda: timed("bare"),
        "import_torch": lambda: run_process([sys.executable, "-c", TORCH], env),
    }
    if args.breakdown:
        for side in ("collapse", "bare"):
            cmd = [sys.executable, "-c", IMPORTS[side]]
            fns[f"imports_{side}"] = lambda cmd=cmd: run_process(cmd, env)
            if figures:
                fns[f"figures_{side}"] = lambda s=side: seconds_printed(FIGURES[s])
    result = interleave(fns, args.repeats, label=demo)
    result["ratio"] = result["collapse"]["median"] / result["bare"]["median"]
    for side in cpu:
        result[side]["cpu"] = stats(cpu[side])
    result["cpu_ratio"] = result["collapse"]["cpu"]["median"] / result["bare"]["cpu"]["median"]
    result["steps_per_second"] = {k: sorted(v)[len(v) // 2] for k, v in rates.items()}
    result["final_loss"] = losses  # the same work: equal on the CPU at the same thread count
    result["figures"] = figures
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--repeats", type=int, default=5, help="interleaved rounds (default 5)")
    p.add_argument("--threads", type=int, help="OMP/MKL threads of both processes")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--breakdown", action="store_true", help="also time imports and figures")
    args = p.parse_args()
    info = machine(args.device)
    info["threads_env"] = args.threads
    print(
        f"{info['cpu']} ({info['cores']} cores), device {args.device}, "
        f"threads {args.threads or 'default'}, load {info['load_avg_1m_at_start']}"
    )

    tmp = Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    try:
        results = {demo: measure(demo, args, tmp) for demo in DEMOS}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    rows = []
    for demo, r in results.items():
        rows.append(
            [
                demo,
                fmt_s(r["collapse"]["median"]),
                fmt_s(r["bare"]["median"]),
                fmt_s(r["import_torch"]["median"]),
                f"{r['ratio']:.3f}",
                f"{r['cpu_ratio']:.3f}",
                f"{max(r['collapse']['spread'], r['bare']['spread']):.0%}",
                f"{r['steps_per_second']['collapse']:.0f} / {r['steps_per_second']['bare']:.0f}",
                "yes" if r["figures"] else "no",
            ]
        )
    print()
    print(
        table(
            [
                "demo",
                "collapse run",
                "bare script",
                "torch+optim",
                "ratio",
                "cpu ratio",
                "spread",
                "loop steps/s c/b",
                "figures",
            ],
            rows,
        )
    )
    for demo, r in results.items():
        a, b = r["final_loss"]["collapse"], r["final_loss"]["bare"]
        same = "identical" if a == b else f"rel. diff {abs(a - b) / abs(b):.1e}"
        print(f"  {demo}: final loss collapse {a:.10g}, bare {b:.10g} ({same})")
    if args.breakdown:
        print_breakdown(results)
    targets = [
        target(f"{demo}: collapse/bare wall", r["ratio"], LIMITS[demo], "×")
        for demo, r in results.items()
    ]
    print_targets(targets)
    name = "overhead_demos" if args.device == "cpu" else "overhead_demos_cuda"
    save(name, {"machine": info, "demos": results, "targets": targets})


def print_breakdown(results: dict[str, dict[str, Any]]) -> None:
    """Where each side's wall time goes: medians of the phases timed in the same rounds."""
    print("\nbreakdown (medians; the rest is process start-up, config, files, git, exit)")
    rows = [
        [f"{demo} / {side}", *breakdown_cells(r, side)]
        for demo, r in results.items()
        for side in ("collapse", "bare")
    ]
    print(table(["run", *BREAKDOWN_HEADS], rows))


if __name__ == "__main__":
    main()
