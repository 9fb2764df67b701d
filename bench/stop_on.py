"""What train.stop_on saves on a sweep of runs that collapse (issue 15).

The sweep: demo 1 (``configs/collapse.yaml``, which collapses) for ``--steps`` steps at two
learning rates (1e-3 collapses by step 300, 1e-4 near the end) times two seeds, on 2 workers
of one thread each. Two variants, interleaved, each a whole ``collapse sweep`` process
(start-up, the plan and the workers included): with ``train.stop_on: {verdict: complete
collapse, patience: 2}`` and without. Printed: the wall time of each, their ratio, and the
training steps the runs took (from sweep.json's ``steps_done``).

    python bench/stop_on.py                  # 3 rounds, ~4 min on 2 busy cores
    python bench/stop_on.py --repeats 5 --steps 5000
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, child_env, fmt_s, interleave, machine, save, table

CONFIG = "configs/collapse.yaml"
RULE = "train.stop_on={verdict: complete collapse, patience: 2}"
CLI = [sys.executable, "-m", "collapse_cli"]


def main() -> None:
    import subprocess

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument("--steps", type=int, default=3000, help="steps of each run (default 3000)")
    args = p.parse_args()
    info = machine()
    print(f"{info['cpu']} ({info['cores']} cores), load {info['load_avg_1m_at_start']}")
    env = child_env(1)
    tmp = Path(tempfile.mkdtemp(prefix="bench-stop-on-"))
    steps: dict[str, list[int]] = {"stop_on": [], "without": []}
    count = [0]

    def sweep(name: str, extra: list[str]) -> float:
        count[0] += 1
        runs = tmp / f"r{count[0]}"
        cmd = [*CLI, "sweep", CONFIG, f"train.steps={args.steps}", "log.plots=false",
               "log.embeddings=0", *extra, "--grid", "optimizer.lr=0.001,0.0001", "--seeds", "2",
               "--workers", "2", "--threads", "1", "-q", "--runs-dir", str(runs)]  # fmt: skip
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
        (folder,) = runs.glob("sweep-*")
        index = json.loads((folder / "sweep.json").read_text())
        steps[name].append(sum(e.get("steps_done") or 0 for e in index["runs"]))
        return wall

    variants = {
        "stop_on": lambda: sweep("stop_on", [RULE]),
        "without": lambda: sweep("without", []),
    }
    try:
        walls = interleave(variants, args.repeats, label="stop_on")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    ratio = walls["stop_on"]["median"] / walls["without"]["median"]
    rows = [[k, fmt_s(v["median"]), f"{v['spread']:.0%}", str(steps[k][-1])]
            for k, v in walls.items()]  # fmt: skip
    print()
    print(table(["variant", "wall (4 runs)", "spread", "training steps"], rows))
    print(f"stop_on / without: {ratio:.2f} × the wall time")
    save("stop_on", {"machine": info, "steps": args.steps, "wall": walls, "ratio": ratio,
                     "training_steps": steps})  # fmt: skip


if __name__ == "__main__":
    main()
