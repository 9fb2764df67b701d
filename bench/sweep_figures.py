"""What each run's figures cost in a sweep (issue 18, 3): the sweep's default for log.figures.

``collapse sweep configs/nt-xent.yaml train.steps=200 --seeds 4 --workers 1`` with
``log.figures=end`` (every run draws its standard figures when it ends) against
``log.figures=none`` (no figures; ``collapse plot RUN`` draws them on request), interleaved,
whole processes. One worker, so the runs follow each other and the difference between the
variants is the figures alone: (end − none) / runs is what one run's figures cost, beside
(none − start-up) / runs, what one run costs without them (start-up: a process that imports
torch and builds one optimizer, timed in the same rounds), and the training loop itself
(``wall_time_s`` of each run's summary.json).

    python bench/sweep_figures.py                 # 3 rounds, ~3 min on 2 cores
    python bench/sweep_figures.py --repeats 5 --seeds 8 --steps 500
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from common import (
    child_env,
    fmt_s,
    interleave,
    machine,
    run_process,
    run_process_cpu,
    save,
    stats,
    table,
)

CONFIG = "configs/nt-xent.yaml"
CLI = [sys.executable, "-m", "collapse_cli"]
TORCH = "import torch; torch.optim.Adam([torch.zeros(1, requires_grad=True)])"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument("--steps", type=int, default=200, help="steps of each run (default 200)")
    p.add_argument("--seeds", type=int, default=4, help="runs in the sweep (default 4)")
    args = p.parse_args()
    info = machine()
    print(f"{info['cpu']} ({info['cores']} cores), load {info['load_avg_1m_at_start']}")
    env = child_env(1)  # one thread per run: what a sweep gives each run by default
    tmp = Path(tempfile.mkdtemp(prefix="bench-sweep-figures-"))
    count = [0]
    cpu: dict[str, list[float]] = {"end": [], "none": []}
    loops: list[float] = []

    def sweep(figures: str) -> float:
        count[0] += 1
        runs = tmp / f"r{count[0]}"
        cmd = [*CLI, "sweep", CONFIG, f"train.steps={args.steps}", f"log.figures={figures}"]
        cmd += ["--seeds", str(args.seeds), "--workers", "1", "-q", "--runs-dir", str(runs)]
        wall, used = run_process_cpu(cmd, env)
        cpu[figures].append(used)
        for summary in runs.glob("sweep-*/*/summary.json"):
            loops.append(json.loads(summary.read_text())["wall_time_s"])
        plots = list(runs.glob("sweep-*/*/plots"))
        assert bool(plots) == (figures == "end"), f"log.figures={figures}: plots/ {plots}"
        shutil.rmtree(runs)
        return wall

    variants = {
        "end": lambda: sweep("end"),
        "none": lambda: sweep("none"),
        "start-up": lambda: run_process([sys.executable, "-c", TORCH], env),
    }
    try:
        walls = interleave(variants, args.repeats, label="sweep figures")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    k = args.seeds
    end, none, start = (walls[v]["median"] for v in ("end", "none", "start-up"))
    per_fig, per_run = (end - none) / k, (none - start) / k
    loop = statistics.median(loops)
    rows = [
        [f"log.figures={v}", fmt_s(walls[v]["median"]), f"{walls[v]['spread']:.0%}",
         fmt_s(stats(cpu[v])["median"])]
        for v in ("end", "none")
    ]  # fmt: skip
    spread = f"{walls['start-up']['spread']:.0%}"
    rows.append(["start-up (torch + optim)", fmt_s(start), spread, ""])
    print()
    print(table([f"sweep of {k} runs, 1 worker", "wall", "spread", "cpu"], rows))
    print(f"\n  one run's figures: {fmt_s(per_fig)} (end − none) / {k}")
    print(f"  one run without them: {fmt_s(per_run)} (none − start-up) / {k}")
    print(f"  its training loop: {fmt_s(loop)} (median wall_time_s of summary.json)")
    print(f"  figures / run: {per_fig / per_run:.2f}; figures / loop: {per_fig / loop:.2f}")
    for v in ("end", "none"):
        walls[v]["cpu"] = stats(cpu[v])
    save("sweep_figures", {"machine": info, "steps": args.steps, "runs": k, "wall": walls,
                           "figures_per_run_s": per_fig, "run_without_figures_s": per_run,
                           "loop_s": loop})  # fmt: skip


if __name__ == "__main__":
    main()
