"""torch's CPU thread policies for one run, and for runs side by side (issue 12).

``collapse run configs/nt-xent.yaml train.steps=200`` under three policies, interleaved:

- ``default``: torch's own choice, one thread per core, OpenMP's default waiting (spinning);
- ``one thread``: ``OMP_NUM_THREADS=MKL_NUM_THREADS=1``;
- ``passive``: one thread per core, ``OMP_WAIT_POLICY=PASSIVE`` (idle threads sleep).

``--side-by-side K`` starts K such processes at once (each with the policy), as a sweep's
workers or a neighbour's jobs would be. Reported per policy: the whole wall time (of the K
processes together) and the training loop's time (summary.json's ``wall_time_s``, the mean
over the K).

    python bench/threads.py                      # one run at a time, 5 rounds
    python bench/threads.py --side-by-side 2     # two at once
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, fmt_s, interleave, machine, save, stats, table

CONFIG = "configs/nt-xent.yaml"
POLICIES = {
    "default": {},
    "one thread": {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
    "passive": {"OMP_WAIT_POLICY": "PASSIVE"},
}
UNSET = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "COLLAPSE_RUNS_DIR")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--repeats", type=int, default=5, help="interleaved rounds (default 5)")
    p.add_argument("--side-by-side", type=int, default=1, help="processes at once (default 1)")
    p.add_argument("--steps", type=int, default=200, help="steps of each run (default 200)")
    args = p.parse_args()
    info = machine()
    print(f"{info['cpu']} ({info['cores']} cores), load {info['load_avg_1m_at_start']}")
    tmp = Path(tempfile.mkdtemp(prefix="bench-threads-"))
    loops: dict[str, list[float]] = {k: [] for k in POLICIES}
    count = [0]

    def batch(policy: str) -> float:
        env = {k: v for k, v in os.environ.items() if k not in UNSET} | POLICIES[policy]
        count[0] += 1
        runs = tmp / f"r{count[0]}"
        cmd = [sys.executable, "-m", "collapse_cli", "run", CONFIG, f"train.steps={args.steps}",
               "-q", "--runs-dir", str(runs)]  # fmt: skip
        t0 = time.perf_counter()
        procs = [subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True)
                 for _ in range(args.side_by_side)]  # fmt: skip
        for proc in procs:
            _, err = proc.communicate()
            if proc.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{err[-3000:]}")
        wall = time.perf_counter() - t0
        summaries = [json.loads((f / "summary.json").read_text()) for f in runs.iterdir()]
        loops[policy].append(statistics.fmean(s["wall_time_s"] for s in summaries))
        shutil.rmtree(runs)
        return wall

    try:
        walls = interleave({k: (lambda k=k: batch(k)) for k in POLICIES}, args.repeats,
                           label="threads")  # fmt: skip
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    loop = {k: stats(v) for k, v in loops.items()}
    base = walls["default"]["median"]
    rows = [[k, fmt_s(walls[k]["median"]), f"{walls[k]['median'] / base:.2f}",
             fmt_s(loop[k]["median"]), f"{fmt_s(loop[k]['min'])} – {fmt_s(loop[k]['max'])}"]
            for k in POLICIES]  # fmt: skip
    print()
    print(f"{args.side_by_side} process(es) at once, {args.steps} steps each")
    print(table(["policy", "wall", "× default", "loop", "loop range"], rows))
    info["load_avg_1m_at_end"] = round(os.getloadavg()[0], 2)
    name = "threads" if args.side_by_side == 1 else f"threads_x{args.side_by_side}"
    save(name, {"machine": info, "side_by_side": args.side_by_side, "steps": args.steps,
                "wall": walls, "loop": loop})  # fmt: skip


if __name__ == "__main__":
    main()
