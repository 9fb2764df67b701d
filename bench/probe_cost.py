"""Cost per log step of log.lidar and log.probe, beside what a log step already pays.

The nt-xent config (digits, an MLP 64 → 256 → 32, batch 256) is built once and each part of a
log step is timed, interleaved (A B C … A B C …), on one device: a training step (views,
forward, backward, optimizer), ``compute_metrics`` of the step's batch, kNN accuracy (both
splits embedded, as the loop does), LiDAR over its probe set (``log.lidar``, default 256
samples × 8 views) and the linear probe (``log.probe: linear``: both splits embedded, 50
L-BFGS iterations at most). ``--out-dim`` and ``--hidden`` widen the encoder; ``--samples`` and
``--views`` size LiDAR's probe set. Prints medians and each part as a multiple of a training
step; writes bench/results/probe_cost[_<tag>].json.

    python bench/probe_cost.py                                  # CPU, d = 32
    python bench/probe_cost.py --out-dim 512 --hidden 1024 --tag d512
    python bench/probe_cost.py --device cuda --out-dim 512 --hidden 1024 --tag cuda_d512
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

import torch
from common import ROOT, fmt_s, interleave, machine, save, table

sys.path.insert(0, str(ROOT))

from collapse_cli import metrics
from collapse_cli.config import load_config
from collapse_cli.encoders import embed
from collapse_cli.training.build import build
from collapse_cli.training.probes import Probes
from collapse_cli.views import ViewMaker


def timed(fn: Callable[[], object], device: torch.device) -> Callable[[], float]:
    def run() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - t0

    return run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out-dim", type=int, default=32)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--samples", type=int, default=256)
    p.add_argument("--views", type=int, default=8)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--tag", default="")
    args = p.parse_args()
    device = torch.device(args.device)
    overrides = [
        f"encoder.out_dim={args.out_dim}", f"encoder.hidden=[{args.hidden}]",
        f"log.lidar={{samples: {args.samples}, views: {args.views}}}", "log.probe=linear",
    ]  # fmt: skip
    cfg = load_config(ROOT / "configs" / "nt-xent.yaml", overrides)
    parts = build(cfg)
    encoder, objective = parts.encoder.to(device), parts.objective.to(device)
    data, optimizer = parts.data, parts.optimizer
    x = data.x.to(device)
    make_views = ViewMaker(cfg.views, objective.views, cfg.seed, device, cfg.loss.name)
    batch = x[: cfg.train.batch_size]
    lidar_only = Probes(cfg.model_copy(update={"log": cfg.log.model_copy(update={"probe": None})}),
                        data, device)  # fmt: skip
    probe_only = Probes(cfg.model_copy(update={"log": cfg.log.model_copy(update={"lidar": None})}),
                        data, device)  # fmt: skip

    def step() -> None:
        out = objective(encoder, make_views(batch))
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()

    z = torch.cat([encoder(v) for v in make_views(batch)[:1]]).detach()

    def knn() -> None:
        metrics.knn_accuracy(embed(encoder, x), data.labels, embed(encoder, data.x_test),
                             data.labels_test)  # fmt: skip

    fns = {
        "training step": step,
        "compute_metrics": lambda: metrics.compute_metrics(z),
        "kNN accuracy": knn,
        "LiDAR": lambda: lidar_only(encoder),
        "linear probe": lambda: probe_only(encoder),
    }
    for fn in fns.values():  # warm up: lazy imports, the first L-BFGS, allocator
        fn()
    res = interleave({k: timed(f, device) for k, f in fns.items()}, args.repeats, label="parts")
    base = res["training step"]["median"]
    rows = [[k, fmt_s(v["median"]), f"{v['median'] / base:.2f}", f"{v['spread']:.2f}"]
            for k, v in res.items()]  # fmt: skip
    n, d = x.shape[0], z.shape[1]
    print(f"{args.device}, threads {torch.get_num_threads()}: train N = {n}, d = {d}, "
          f"LiDAR {args.samples} × {args.views} views")  # fmt: skip
    print(table(["part", "median", "× training step", "spread"], rows))
    print(f"values: {lidar_only(encoder)} {probe_only(encoder)}")
    name = "probe_cost" + (f"_{args.tag}" if args.tag else "")
    save(name, {"machine": machine(args.device), "args": vars(args), "d": d, "n_train": n,
                "results": res})  # fmt: skip


if __name__ == "__main__":
    main()
