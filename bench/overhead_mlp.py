"""Overhead of ``collapse run`` on an MLP encoder, in training steps per second (issue 7, a).

bench/mlp.yaml (Linear 256→1024→1024→1024→512 with ReLU, full batches of 4096, Adam, metrics
every 50 of 300 steps) run by ``collapse run`` against ``python bench/bare_demo.py mlp``, the
same run in a bare loop, interleaved. Steps/s is steps / loop wall time, metrics and file
writes included: summary.json's ``steps_per_second`` on both sides. Target: collapse ≥ 0.95 ×
bare.

One step is ~70 GFLOP, about a second on two CPU cores, so on the CPU the default run is
scaled to 30 steps with the metrics every 5 (the same 7 log steps, the same share of logged
steps); ``--full`` runs the 300 steps. On CUDA the full run is the default, and two more
variants run both sides with a bf16-autocast forward (``train.autocast=bf16`` for collapse;
the metrics stay float64).

    python bench/overhead_mlp.py                     # CPU: 3 rounds of 30 steps, ~4 min
    python bench/overhead_mlp.py --full --repeats 2  # CPU: the issue's 300 steps, ~25 min
    python bench/overhead_mlp.py --device cuda       # full run, plus the bf16 bare loop
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from common import (
    COLLAPSE,
    child_env,
    fmt_s,
    interleave,
    machine,
    print_targets,
    run_process,
    save,
    stats,
    table,
    target,
)

CONFIG = "bench/mlp.yaml"
FULL = (300, 50)  # steps, log every: the run
CPU_DEFAULT = (30, 5)  # the same 7 log steps in a tenth of the steps
LIMIT = 0.95  # collapse steps/s ≥ 0.95 × bare


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--full", action="store_true", help="300 steps, metrics every 50 (CPU)")
    p.add_argument("--threads", type=int, help="OMP/MKL threads of both processes")
    p.add_argument("--bf16", action="store_true", help="also the bf16 bare loop on the CPU")
    p.add_argument("--steps", type=int, help="steps of each run (overrides the default)")
    p.add_argument("--every", type=int, help="log interval (overrides the default)")
    args = p.parse_args()
    cuda = args.device.startswith("cuda")
    steps, every = FULL if args.full or cuda else CPU_DEFAULT
    steps, every = args.steps or steps, args.every or every
    info = machine(args.device)
    info["threads_env"] = args.threads
    print(
        f"{info['cpu']} ({info['cores']} cores), device {args.device}, {steps} steps, "
        f"metrics every {every}, load {info['load_avg_1m_at_start']}"
    )

    env = child_env(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="bench-mlp-"))
    rates: dict[str, list[float]] = {}
    losses: dict[str, float] = {}
    count = [0]

    def side(name: str) -> float:
        """Run one process; record its loop steps/s; return its whole wall time."""
        count[0] += 1
        out = tmp / f"{name}-{count[0]}"
        if name.startswith("collapse"):
            cmd = [
                COLLAPSE,
                "run",
                CONFIG,
                f"train.steps={steps}",
                f"log.every={every}",
                "-q",
                "--runs-dir",
                str(out),
                "--device",
                args.device,
            ]
            cmd += ["train.autocast=bf16"] * (name == "collapse_bf16")
        else:
            cmd = [
                sys.executable,
                "bench/bare_demo.py",
                "mlp",
                "--steps",
                str(steps),
                "--every",
                str(every),
                "--out",
                str(out),
                "--device",
                args.device,
            ]
            cmd += ["--bf16"] * (name == "bare_bf16")
        wall = run_process(cmd, env)
        collapse = name.startswith("collapse")
        folder = next(p for p in out.iterdir() if p.is_dir()) if collapse else out
        summary = json.loads((folder / "summary.json").read_text())
        rates.setdefault(name, []).append(summary["steps_per_second"])
        losses[name] = summary["final"]["loss"]
        shutil.rmtree(out)
        return wall

    variants = ["collapse", "bare"] + ["collapse_bf16", "bare_bf16"] * (cuda or args.bf16)
    try:
        walls = interleave({v: (lambda v=v: side(v)) for v in variants}, args.repeats, label="mlp")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    sps = {k: stats(v) for k, v in rates.items()}
    ratio = sps["collapse"]["median"] / sps["bare"]["median"]
    rows = [
        [
            v,
            f"{sps[v]['median']:.3f}",
            f"{sps[v]['spread']:.0%}",
            fmt_s(walls[v]["median"]),
            f"{losses[v]:.6g}",
        ]
        for v in variants
    ]
    print()
    print(table(["variant", "loop steps/s", "spread", "process wall", "final loss"], rows))
    print(f"  collapse / bare steps/s: {ratio:.3f}")
    if "bare_bf16" in sps:
        speedup = sps["bare_bf16"]["median"] / sps["bare"]["median"]
        print(f"  bare bf16 / bare fp32 steps/s: {speedup:.2f}")
        bf16 = sps["collapse_bf16"]["median"] / sps["bare_bf16"]["median"]
        print(f"  collapse bf16 / bare bf16 steps/s: {bf16:.3f}")
    targets = [target("collapse/bare training steps/s", ratio, LIMIT, "×", "≥")]
    print_targets(targets)
    name = "overhead_mlp" if not cuda else "overhead_mlp_cuda"
    save(
        name,
        {
            "machine": info,
            "steps": steps,
            "every": every,
            "steps_per_second": sps,
            "process_wall": walls,
            "final_loss": losses,
            "ratio": ratio,
            "targets": targets,
        },
    )


if __name__ == "__main__":
    main()
