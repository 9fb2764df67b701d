"""Metric cost: the full suite (``compute_metrics``) against one float64 eigvalsh (issue 7, b).

The floor is ``torch.linalg.eigvalsh`` of the precomputed float64 covariance, on the same
device; the target is suite ≤ 2 × floor at each (N, d). Also timed: the covariance product
alone, which any covariance-based suite must form first (float64: the plain GEMM ``zcᵀ zc``,
and ``linalg.syrk``, the blocks on and above the diagonal only, as the suite forms it), and,
with ``--baseline REV``, the ``compute_metrics`` of collapse_cli/metrics.py at git revision
REV, interleaved with the current one and checked to give the same numbers.

    python bench/metric_cost.py                              # the four sizes of issue 7
    python bench/metric_cost.py --sizes 512x128,4096x512 --repeats 5 --baseline fef0de0
    python bench/metric_cost.py --sweep --figure docs/metric_scaling.png
    python bench/metric_cost.py --device cuda --routes       # GPU: device vs host eigvalsh
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from common import ROOT, fmt_s, interleave, machine, print_targets, save, save_figure, table, target

from collapse_cli import linalg as L
from collapse_cli import metrics as M

SIZES = [(512, 128), (4096, 512), (8192, 2048), (8192, 4096)]
SWEEP_D = [128, 256, 512, 1024, 2048, 4096]  # at N = SWEEP_N
SWEEP_N = 8192
SWEEP_NS = [512, 1024, 2048, 4096, 8192, 16384]  # at d = SWEEP_DIM
SWEEP_DIM = 512
LIMIT = 2.0  # suite ≤ 2 × floor
MIN_SAMPLE_S = 0.2  # small sizes: repeat the call inside one sample until it lasts this long


# --------------------------------------------------------------------------- helpers
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def embeddings(n: int, d: int, device: torch.device) -> torch.Tensor:
    """(N, d) float32 with a decaying spectrum (σ_i ∝ i^−½) and an offset, like trained ones."""
    g = torch.Generator().manual_seed(n * 7919 + d)
    scale = torch.arange(1, d + 1, dtype=torch.float32).pow(-0.5)
    return (torch.randn(n, d, generator=g) * scale + 0.1).to(device)


def covariance(z: torch.Tensor) -> torch.Tensor:
    z64 = z.double()
    zc = z64 - z64.mean(0)
    return zc.T @ zc / (z.shape[0] - 1)


def timer(fn: Callable[[], Any], device: torch.device) -> Callable[[], float]:
    """A function that returns seconds per call of ``fn``: short calls are repeated inside one
    sample (calibrated once) so each sample lasts ≥ MIN_SAMPLE_S; CUDA is synchronised."""
    fn()  # warm-up: lazy init of MKL/cuSOLVER workspaces, allocator
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    once = time.perf_counter() - t0
    number = max(1, math.ceil(MIN_SAMPLE_S / max(once, 1e-6))) if once < MIN_SAMPLE_S else 1

    def measure() -> float:
        sync(device)
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        sync(device)
        return (time.perf_counter() - t0) / number

    return measure


def load_baseline(rev: str) -> types.ModuleType:
    """collapse_cli/metrics.py as it was at git revision ``rev``, as a module of its own."""
    src = subprocess.run(
        ["git", "show", f"{rev}:collapse_cli/metrics.py"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    mod = types.ModuleType(f"metrics_at_{rev}")
    exec(compile(src, f"metrics.py@{rev}", "exec"), mod.__dict__)  # the repo's own file
    return mod


def max_rel_diff(a: dict[str, float], b: dict[str, float]) -> float:
    """Largest relative difference between two metric dicts over their common keys."""
    worst = 0.0
    for k in a.keys() & b.keys():
        x, y = float(a[k]), float(b[k])
        worst = max(worst, abs(x - y) / max(abs(x), abs(y), 1e-300))
    return worst


# --------------------------------------------------------------------------- measurements
def measure_size(
    n: int, d: int, device: torch.device, repeats: int, baseline: types.ModuleType | None
) -> dict[str, Any]:
    z = embeddings(n, d, device)
    cov = covariance(z)
    zc = (z.double() - z.double().mean(0)).contiguous()
    fns = {
        "floor": timer(lambda: torch.linalg.eigvalsh(cov), device),
        "product": timer(lambda: zc.T @ zc, device),
        "syrk": timer(lambda: L.syrk(zc), device),  # the product as compute_metrics forms it
        "suite": timer(lambda: M.compute_metrics(z), device),
    }
    row: dict[str, Any] = {"n": n, "d": d}
    if baseline is not None:
        fns["baseline"] = timer(lambda: baseline.compute_metrics(z), device)
        new, old = M.compute_metrics(z)[0], baseline.compute_metrics(z)[0]
        row["baseline_max_rel_diff"] = max_rel_diff(new, old)
        row["baseline_same_keys"] = set(new) == set(old)
    row.update(interleave(fns, repeats, label=f"{n}x{d}"))
    row["ratio"] = row["suite"]["median"] / row["floor"]["median"]
    if baseline is not None:
        row["baseline_ratio"] = row["baseline"]["median"] / row["floor"]["median"]
    return row


def measure_routes(n: int, d: int, device: torch.device, repeats: int) -> dict[str, Any]:
    """CUDA only: the suite with both eigendecompositions on the device vs on the host."""
    z = embeddings(n, d, device)
    keep = L.DEVICE_EIG_MIN

    def with_threshold(t: int) -> Callable[[], Any]:
        def run() -> Any:
            L.DEVICE_EIG_MIN = t
            try:
                return M.compute_metrics(z)
            finally:
                L.DEVICE_EIG_MIN = keep

        return run

    fns = {
        "device_eig": timer(with_threshold(0), device),
        "host_eig": timer(with_threshold(sys.maxsize), device),
    }
    return {"n": n, "d": d, **interleave(fns, repeats, label=f"routes {n}x{d}")}


# --------------------------------------------------------------------------- main
def parse_sizes(text: str) -> list[tuple[int, int]]:
    out = []
    for part in text.split(","):
        n, d = part.lower().split("x")
        out.append((int(n), int(d)))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sizes", type=parse_sizes, default=SIZES, help="NxD,NxD,... (default: 4)")
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    p.add_argument("--baseline", metavar="REV", help="also time metrics.py at git REV")
    p.add_argument("--sweep", action="store_true", help="time vs d and vs N instead (for docs)")
    p.add_argument("--figure", type=Path, help="with --sweep: draw the scaling figure here")
    p.add_argument("--routes", action="store_true", help="CUDA: device vs host eigvalsh")
    args = p.parse_args()

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit(f"--device {args.device}: this torch ({torch.__version__}) sees no CUDA device")
    if args.threads:
        torch.set_num_threads(args.threads)
    baseline = load_baseline(args.baseline) if args.baseline else None
    info = machine(str(device))
    print(
        f"{info['cpu']} ({info['cores']} cores, torch {info['torch']}, {info['torch_threads']} "
        f"threads), device {device}, load {info['load_avg_1m_at_start']}"
    )

    if args.sweep:
        sweep(device, args, info)
        return

    rows = [measure_size(n, d, device, args.repeats, baseline) for n, d in args.sizes]
    headers = ["N x d", "floor eigvalsh", "GEMM ZcᵀZc", "SYRK ZcᵀZc", "suite", "suite/floor"]
    headers.append("spread")
    if baseline is not None:
        headers += [f"suite@{args.baseline}", "old/floor", "max rel diff"]
    lines = []
    for r in rows:
        spread = max(r[k]["spread"] for k in ("floor", "suite"))
        line = [
            f"{r['n']} x {r['d']}",
            fmt_s(r["floor"]["median"]),
            fmt_s(r["product"]["median"]),
            fmt_s(r["syrk"]["median"]),
            fmt_s(r["suite"]["median"]),
            f"{r['ratio']:.2f}",
            f"{spread:.0%}",
        ]
        if baseline is not None:
            line += [
                fmt_s(r["baseline"]["median"]),
                f"{r['baseline_ratio']:.2f}",
                f"{r['baseline_max_rel_diff']:.1e}",
            ]
        lines.append(line)
    print()
    print(table(headers, lines))
    results = [target(f"suite/floor at {r['n']}x{r['d']}", r["ratio"], LIMIT, "×") for r in rows]
    print_targets(results)

    routes = []
    if args.routes and device.type == "cuda":
        routes = [measure_routes(n, d, device, args.repeats) for n, d in args.sizes]
        print(
            "\n"
            + table(
                ["N x d", "eig on device", "eig on host"],
                [
                    [
                        f"{r['n']} x {r['d']}",
                        fmt_s(r["device_eig"]["median"]),
                        fmt_s(r["host_eig"]["median"]),
                    ]
                    for r in routes
                ],
            )
        )
    name = "metric_cost" if device.type == "cpu" else "metric_cost_cuda"
    save(
        name,
        {
            "machine": info,
            "baseline": args.baseline,
            "sizes": rows,
            "targets": results,
            "routes": routes,
        },
    )


def sweep(device: torch.device, args: argparse.Namespace, info: dict[str, Any]) -> None:
    """compute_metrics and the floor vs d (N fixed) and vs N (d fixed)."""
    grid = [("d", SWEEP_N, d) for d in SWEEP_D] + [("N", n, SWEEP_DIM) for n in SWEEP_NS]
    rows = []
    for axis, n, d in grid:
        r = measure_size(n, d, device, args.repeats, None)
        r["axis"] = axis
        rows.append(r)
    print()
    print(
        table(
            ["axis", "N x d", "floor", "GEMM", "SYRK", "suite", "suite/floor"],
            [
                [
                    r["axis"],
                    f"{r['n']} x {r['d']}",
                    fmt_s(r["floor"]["median"]),
                    fmt_s(r["product"]["median"]),
                    fmt_s(r["syrk"]["median"]),
                    fmt_s(r["suite"]["median"]),
                    f"{r['ratio']:.2f}",
                ]
                for r in rows
            ],
        )
    )
    name = "metric_scaling" if device.type == "cpu" else "metric_scaling_cuda"
    save(name, {"machine": info, "rows": rows})
    if args.figure:
        draw(rows, args.figure, info)


def draw(rows: list[dict[str, Any]], path: Path, info: dict[str, Any]) -> None:
    """Two log-log panels: seconds per log step against d and against N."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), dpi=100)
    for ax, axis, fixed in ((axes[0], "d", f"N = {SWEEP_N}"), (axes[1], "N", f"d = {SWEEP_DIM}")):
        rs = [r for r in rows if r["axis"] == axis]
        x = [r["d"] if axis == "d" else r["n"] for r in rs]
        for key, label, style in (
            ("suite", "compute_metrics (one log step)", "o-"),
            ("syrk", "its covariance product ZcᵀZc (float64)", "s--"),
            ("floor", "floor: one eigvalsh of C (float64)", "^:"),
        ):
            ax.plot(x, [r[key]["median"] for r in rs], style, label=label)
        ax.set(xscale="log", yscale="log", xlabel=axis, ylabel="seconds")
        ax.set_title(f"vs {axis} ({fixed})")
        ax.set_xticks(x, [str(v) for v in x])
        ax.minorticks_off()
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(
        f"Metric cost per log step, {info['cpu']}, torch threads: {info['torch_threads']}",
        fontsize=10,
    )
    save_figure(fig, path)


if __name__ == "__main__":
    main()
