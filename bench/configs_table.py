"""The table of configs/README.md, "What they show (measured)": every digits config of
configs/ run as `collapse run configs/NAME.yaml` (seed 0, CPU, OMP_NUM_THREADS=1), one after
another; prints the table's columns as markdown rows and writes bench/results/configs_table.json.

Not a speed benchmark: the wall time column is the training loop's (summary.json's
wall_time_s) on whatever machine runs it, so say how busy it was.

    python bench/configs_table.py                  # 12 runs, ~1 min on a quiet machine
    python bench/configs_table.py --only dino --only dino-no-centering
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from common import ROOT, machine, save

CONFIGS = [
    "nt-xent", "moco", "simsiam", "simsiam-no-stopgrad", "byol", "byol-no-predictor", "dino",
    "dino-no-centering", "barlow-twins", "vicreg", "vicreg-no-variance", "alignment",
]  # fmt: skip


def measure(name: str, runs: Path) -> dict:
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "collapse_cli", "run", f"configs/{name}.yaml", "-q"]
    done = subprocess.run([*cmd, "--runs-dir", str(runs)], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=False)  # fmt: skip
    folder = Path(done.stdout.strip().splitlines()[-1])
    summary = json.loads((folder / "summary.json").read_text())
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    return {
        "config": name,
        "verdict": summary["verdict"],
        "effective_rank": summary["final"]["effective_rank"],
        "knn_start": rows[0].get("knn_acc"),
        "knn_end": summary["final"].get("knn_acc"),
        "wall_time_s": summary["wall_time_s"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", action="append", help="a config name (repeatable)")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only or CONFIGS:
            r = measure(name, Path(tmp))
            results.append(r)
            print(f"| `{name}.yaml` | {r['verdict']} | {r['effective_rank']:.1f} | "
                  f"{r['knn_start']:.3f} → {r['knn_end']:.3f} | {r['wall_time_s']:.1f} s |",
                  flush=True)  # fmt: skip
    save("configs_table", {"machine": machine(), "load": os.getloadavg(), "results": results})


if __name__ == "__main__":
    main()
