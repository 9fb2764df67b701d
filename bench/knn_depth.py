"""How far kNN accuracy falls as a collapse deepens: the ablation configs run ten times longer.

Not a speed benchmark: a measurement of the metrics' behaviour, run by hand. Each collapsing
config of configs/ and its healthy counterpart are trained (seed 0, CPU) for a horizon ten
times the config's own length (``--scale``), logging every quarter of that own length. At every
log step this records the run's own metrics (``knn_acc`` on the encoder's output,
``std_l2``·√d, ``variance``, ``rank``) and two readings of the encoder's output on the whole
training set, which is what kNN accuracy compares:

- ``distinct``: how many of the float32 training embeddings differ in at least one bit;
- ``spread_ulps``: the median over dimensions of (max − min) / ulp(|mean|), the spread across
  samples in units of float32's resolution at the cloud's centre (1 ulp = one rounding step).

Printed: kNN at the config's own length, the lowest kNN of the long run and its step, the kNN
at the horizon, and both readings at the lowest-kNN step. Written: bench/results/knn_depth.json.

    python bench/knn_depth.py                      # 10 runs, ~8 min on one CPU thread
    python bench/knn_depth.py --only vicreg-no-variance --scale 0.8
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import ROOT, machine, save, table

sys.path.insert(0, str(ROOT))

# (collapsing config, its healthy counterpart): configs/<name>.yaml
PAIRS = [
    ("simsiam-no-stopgrad", "simsiam"),
    ("byol-no-predictor", "byol"),
    ("dino-no-centering", "dino"),
    ("vicreg-no-variance", "vicreg"),
    ("alignment", "nt-xent"),
]
LOGS_PER_OWN_LENGTH = 4  # log steps per config length: the own length itself is logged


class Probe:
    """A reporter for the training loop that also reads the encoder at each log step."""

    def __init__(self, encoder: Any, x: Any) -> None:
        self.encoder, self.x, self.rows = encoder, x, []

    def start(self, steps: int) -> None:
        pass

    def advance(self, step: int) -> None:
        pass

    def log(self, row: dict[str, Any], dim: int) -> None:
        import torch

        from collapse_cli.encoders import embed

        with torch.no_grad():
            z = embed(self.encoder, self.x).float()
        ulp = torch.finfo(torch.float32).eps * z.mean(0).abs()  # (d,) ~ float32 spacing there
        spread = (z.max(0).values - z.min(0).values) / ulp.clamp_min(torch.finfo().tiny)
        self.rows.append(
            {
                "step": row["step"],
                "knn_acc": row.get("knn_acc"),
                "std_l2_sqrt_d": row["std_l2"] * dim**0.5,
                "variance": row["variance"],
                "rank": row["rank"],
                "distinct": int(torch.unique(z, dim=0).shape[0]),
                "spread_ulps": float(spread.median()),
            }
        )


def long_run(name: str, scale: float, workdir: Path) -> dict[str, Any]:
    """Train configs/<name>.yaml for scale × its steps; the Probe's rows and the timing."""
    import torch

    from collapse_cli.config import load_config
    from collapse_cli.rundir import RunWriter
    from collapse_cli.training.build import build
    from collapse_cli.training.loop import train

    cfg = load_config(ROOT / "configs" / f"{name}.yaml")
    own = cfg.train.steps
    horizon = max(1, round(own * scale))
    every = max(1, own // LOGS_PER_OWN_LENGTH)
    overrides = [f"train.steps={horizon}", f"log.every={every}", "log.spectrum=false"]
    cfg = load_config(cfg, overrides)
    parts = build(cfg)
    assert parts.data is not None and parts.data.labels_test is not None, f"{name}: no labels"
    folder = workdir / name
    folder.mkdir()
    probe = Probe(parts.encoder, parts.data.x)
    writer = RunWriter(folder)
    t0 = time.perf_counter()
    try:
        train(cfg, parts, torch.device("cpu"), writer, probe)
    finally:
        writer.close()
    return {
        "config": name,
        "own_steps": own,
        "horizon": horizon,
        "every": every,
        "seconds": time.perf_counter() - t0,
        "rows": probe.rows,
    }


def at_step(rows: list[dict[str, Any]], step: int) -> dict[str, Any]:
    """The logged row nearest to ``step``."""
    return min(rows, key=lambda r: abs(r["step"] - step))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--scale", type=float, default=10.0, help="horizon / the config's own steps")
    p.add_argument("--only", action="append", help="one config of PAIRS (repeatable)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = p.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    names = [n for pair in PAIRS for n in pair]
    if args.only:
        unknown = sorted(set(args.only) - set(names))
        if unknown:
            p.error(f"--only: unknown config(s) {', '.join(unknown)}; choose from {names}")
        names = [n for n in names if n in args.only]
    info = machine()
    print(f"{info['cpu']} ({info['cores']} cores), load {info['load_avg_1m_at_start']}")

    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-knn-") as tmp:
        for name in names:
            runs.append(long_run(name, args.scale, Path(tmp)))
            print(f"  {name}: {runs[-1]['horizon']} steps in {runs[-1]['seconds']:.0f} s")

    lines = []
    for r in runs:
        rows = r["rows"]
        low = min(rows, key=lambda row: row["knn_acc"])
        lines.append(
            [
                r["config"],
                f"{rows[0]['knn_acc']:.3f}",
                f"{at_step(rows, r['own_steps'])['knn_acc']:.3f} @{r['own_steps']}",
                f"{low['knn_acc']:.3f} @{low['step']}",
                f"{low['std_l2_sqrt_d']:.2g}",
                f"{low['distinct']}",
                f"{low['spread_ulps']:.3g}",
                f"{rows[-1]['knn_acc']:.3f} @{rows[-1]['step']}",
                f"{rows[-1]['std_l2_sqrt_d']:.2g}",
            ]
        )
    heads = ["config", "kNN step 0", "kNN own length", "lowest kNN", "std_l2·√d there"]
    heads += ["distinct there", "spread (ulps) there", "kNN at horizon", "std_l2·√d at horizon"]
    print(table(heads, lines))
    data = {"machine": info, "scale": args.scale, "command": " ".join(sys.argv), "runs": runs}
    save("knn_depth", data)


if __name__ == "__main__":
    main()
