"""``collapse plot`` and ``collapse compare`` on long runs, as whole processes (issue 7, d).

Two synthetic completed runs of 100,000 steps logged every 10 (10,001 metric rows and
128-dimensional spectra each, ~34 MB per run folder; see bench/synthetic.py) are written to a
temporary folder; ``collapse plot RUN`` and ``collapse compare RUN1 RUN2`` (figures to
``--out``) are timed, interleaved. Target: < 5 s each. A command missing from this version of
the CLI is reported and skipped.

    python bench/plot_compare.py              # 3 interleaved rounds, ~1 min
    python bench/plot_compare.py --repeats 5 --steps 1000000
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from common import (
    COLLAPSE,
    ROOT,
    child_env,
    fmt_s,
    interleave,
    machine,
    print_targets,
    run_process,
    save,
    table,
    target,
)
from synthetic import write_run

LIMIT = 5.0  # seconds, each command


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument("--steps", type=int, default=100_000, help="steps of each synthetic run")
    p.add_argument("--every", type=int, default=10, help="log interval of the synthetic runs")
    p.add_argument("--dim", type=int, default=128, help="spectrum length d")
    args = p.parse_args()
    info = machine()
    print(f"{info['cpu']} ({info['cores']} cores), load {info['load_avg_1m_at_start']}")

    helptext = subprocess.run([COLLAPSE, "--help"], capture_output=True, text=True, cwd=ROOT)
    present = {c: f" {c} " in helptext.stdout for c in ("plot", "compare")}
    tmp = Path(tempfile.mkdtemp(prefix="bench-plot-"))
    try:
        t0 = time.perf_counter()
        kw = {"steps": args.steps, "every": args.every, "dim": args.dim}
        a = write_run(tmp / "20260101-000000-long-variance", loss="variance", seed=0, **kw)
        b = write_run(tmp / "20260101-000100-long-infonce", loss="infonce_self", seed=1, **kw)
        size = sum(f.stat().st_size for f in a.iterdir()) / 1e6
        rows_logged = (a / "metrics.jsonl").read_text().count("\n")
        print(
            f"wrote 2 runs of {rows_logged} log rows, {size:.1f} MB each, in "
            f"{fmt_s(time.perf_counter() - t0)}"
        )
        env = child_env(None)
        cmds = {
            "collapse plot": [COLLAPSE, "plot", str(a), "--out", str(tmp / "plots")],
            "collapse compare": [COLLAPSE, "compare", str(a), str(b), "--out", str(tmp / "cmp")],
        }
        cmds = {k: c for k, c in cmds.items() if present[k.split()[1]]}
        for c in cmds.values():  # warm-up: page cache, font cache
            run_process(c, env)
        result = interleave(
            {k: (lambda c=c: run_process(c, env)) for k, c in cmds.items()},
            args.repeats,
            label="read runs",
        )
        folders = {"collapse plot": "plots", "collapse compare": "cmp"}
        figures = {k: len(list((tmp / folders[k]).glob("*.png"))) for k in cmds}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print()
    print(
        table(
            ["command", "wall", "min", "max", "spread", "figures"],
            [
                [
                    k,
                    fmt_s(r["median"]),
                    fmt_s(r["min"]),
                    fmt_s(r["max"]),
                    f"{r['spread']:.0%}",
                    figures[k],
                ]
                for k, r in result.items()
            ],
        )
    )
    for c, ok in present.items():
        if not ok:
            print(f"  collapse {c}: not in this version of the CLI (skipped)")
    targets = [target(f"{k} wall", r["median"], LIMIT, " s", "<") for k, r in result.items()]
    print_targets(targets)
    save(
        "plot_compare",
        {
            "machine": info,
            "runs": {**kw, "log_rows": rows_logged, "mb_per_run": size},
            "commands": result,
            "figures": figures,
            "targets": targets,
        },
    )


if __name__ == "__main__":
    main()
