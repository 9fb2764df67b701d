"""A sweep of 8 short runs on 2 workers against the same 8 runs one after another (issue 12).

The 8 runs: ``configs/nt-xent.yaml train.steps=200`` (two-view InfoNCE on digits) at two
temperatures times four seeds. Three variants, interleaved, each a whole process (start-up,
every run's figures and the index included):

- ``sweep``: ``collapse sweep ... --workers 2`` (one thread per run, the default share);
- ``one by one``: the same 8 runs as 8 ``collapse run`` processes one after another, with
  ``collapse run``'s default thread policy;
- ``sweep, 1 worker``: ``collapse sweep ... --workers 1`` (the same 8 in one worker process).

Target: sweep ≤ 0.6 × one by one, on 2 cores.

    python bench/sweep.py                  # 3 rounds, ~6 min on 2 cores
    python bench/sweep.py --repeats 5 --steps 500
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, child_env, fmt_s, interleave, machine, print_targets, save, table, target

CONFIG = "configs/nt-xent.yaml"
TEMPERATURES = (0.1, 0.5)
SEEDS = 4
LIMIT = 0.6  # sweep wall ≤ 0.6 × one by one
CLI = [sys.executable, "-m", "collapse_cli"]


def _wall(cmds: list[list[str]], env: dict[str, str]) -> float:
    """Wall time of commands run one after another; raises with stderr when one fails (a
    sweep's diverged run, exit 3, would be a failure of the benchmark too)."""
    t0 = time.perf_counter()
    for cmd in cmds:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument("--steps", type=int, default=200, help="steps of each run (default 200)")
    args = p.parse_args()
    info = machine()
    print(f"{info['cpu']} ({info['cores']} cores), load {info['load_avg_1m_at_start']}")
    env = child_env(None)
    tmp = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    common = [f"train.steps={args.steps}"]
    temps = ",".join(map(str, TEMPERATURES))
    count = [0]

    def folder() -> str:
        count[0] += 1
        return str(tmp / f"r{count[0]}")

    def sweep(workers: int) -> float:
        grid = ["--grid", f"loss.temperature={temps}", "--seeds", str(SEEDS)]
        cmd = [*CLI, "sweep", CONFIG, *common, *grid, "--workers", str(workers), "-q"]
        return _wall([[*cmd, "--runs-dir", folder()]], env)

    def one_by_one() -> float:
        runs = folder()
        cmds = []
        for t in TEMPERATURES:
            for s in range(SEEDS):
                point = [f"loss.temperature={t}", f"seed={s}"]
                cmds.append([*CLI, "run", CONFIG, *common, *point, "-q", "--runs-dir", runs])
        return _wall(cmds, env)

    variants = {
        "sweep": lambda: sweep(2),
        "one by one": one_by_one,
        "sweep, 1 worker": lambda: sweep(1),
    }
    try:
        walls = interleave(variants, args.repeats, label="sweep")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    base = walls["one by one"]["median"]
    rows = [[k, fmt_s(v["median"]), f"{v['spread']:.0%}", f"{v['median'] / base:.2f}"]
            for k, v in walls.items()]  # fmt: skip
    print()
    print(table(["variant", "wall (8 runs)", "spread", "× one by one"], rows))
    ratio = walls["sweep"]["median"] / base
    targets = [target("sweep on 2 workers / one by one", ratio, LIMIT, "×", "≤")]
    print_targets(targets)
    info["load_avg_1m_at_end"] = round(__import__("os").getloadavg()[0], 2)
    save("sweep", {"machine": info, "steps": args.steps, "runs": len(TEMPERATURES) * SEEDS,
                   "wall": walls, "ratio": ratio, "targets": targets})  # fmt: skip
    print(json.dumps({"ratio": round(ratio, 3)}))


if __name__ == "__main__":
    main()
