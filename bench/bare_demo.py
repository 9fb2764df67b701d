"""The bare-PyTorch twin of ``collapse run``: the same model, data, steps and metrics, no runner.

The reference that bench/overhead_demos.py and bench/overhead_mlp.py measure ``collapse run``
against: one flat loop with the same metrics at the same cadence (``compute_metrics`` and
``grad_norm`` from collapse_cli.metrics, the only package module it imports), the same files
(metrics.jsonl flushed per log step, spectrum.jsonl, summary.json) and, with ``--figures``,
eight PNGs drawn with plain matplotlib as ``collapse`` draws its standard figures.

    python bench/bare_demo.py collapse              # configs/collapse.yaml: variance loss
    python bench/bare_demo.py infonce               # configs/infonce.yaml: z @ z.T InfoNCE
    python bench/bare_demo.py mlp --steps 30 --every 5   # bench/mlp.yaml
    python bench/bare_demo.py mlp --device cuda --bf16   # bf16 autocast forward
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from collapse_cli.metrics import compute_metrics, grad_norm

# name -> (input dim, N, encoder layer sizes, loss, steps, log every); the configs' values
DEMOS: dict[str, tuple[int, int, list[int], str, int, int]] = {
    "collapse": (32, 512, [128], "variance", 500, 50),
    "infonce": (32, 512, [128], "infonce_self", 500, 50),
    "mlp": (256, 4096, [1024, 1024, 1024, 512], "variance", 300, 50),
}


def variance_loss(z: torch.Tensor) -> torch.Tensor:
    return ((z - z.mean(dim=0)) ** 2).mean()


def infonce_self_loss(z: torch.Tensor) -> torch.Tensor:
    sim = z @ z.T  # (N, N)
    return F.cross_entropy(sim, torch.arange(z.size(0), device=z.device))


def encoder(dim: int, sizes: list[int]) -> nn.Module:
    """nn.Linear for one size (the article's demos), else Linear/ReLU layers (the mlp)."""
    layers: list[nn.Module] = []
    for i, size in enumerate(sizes):
        layers.append(nn.Linear(dim, size))
        if i < len(sizes) - 1:
            layers.append(nn.ReLU())
        dim = size
    return layers[0] if len(layers) == 1 else nn.Sequential(*layers)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("demo", choices=sorted(DEMOS))
    p.add_argument("--out", type=Path, help="folder for the files (default: a new temp folder)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--steps", type=int, help="default: the config's")
    p.add_argument("--every", type=int, help="log every N steps (default: the config's)")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast forward (metrics float64)")
    p.add_argument("--figures", action="store_true", help="draw the 8 standard figures")
    args = p.parse_args()
    in_dim, n, sizes, loss_name, steps, every = DEMOS[args.demo]
    steps, every = args.steps or steps, args.every or every
    out = args.out or Path(tempfile.mkdtemp(prefix=f"bare-{args.demo}-"))
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device)
    loss_fn = variance_loss if loss_name == "variance" else infonce_self_loss

    # ------------------------------------------------------------------- the article's order
    torch.manual_seed(0)
    model = encoder(in_dim, sizes)  # built before the data, as the article's scripts do
    x = torch.randn(n, in_dim)
    model, x = model.to(device), x.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    params = list(model.parameters())

    # ------------------------------------------------------------------- the loop
    metrics_file = open(out / "metrics.jsonl", "w")  # noqa: SIM115 - closed below
    spectrum_file = open(out / "spectrum.jsonl", "w")  # noqa: SIM115
    rows: list[dict[str, Any]] = []
    finite = torch.ones((), dtype=torch.bool, device=device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    for step in range(steps):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
            z = model(x)  # (N, d)
            loss = loss_fn(z)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        finite &= torch.isfinite(loss.detach())
        if step % every == 0 or step == steps - 1:
            precision = torch.bfloat16 if args.bf16 else None  # as collapse run: the rank tolerance
            values, eigs = compute_metrics(z.detach(), precision=precision)
            ok, loss_v, gnorm = torch.stack(
                [finite.double(), loss.detach().double(), grad_norm(params).double()]
            ).tolist()
            row = {"step": step, "time": round(time.perf_counter() - t0, 4), "loss": loss_v}
            row.update(values)
            row["grad_norm"] = gnorm
            metrics_file.write(json.dumps(_clean(row)) + "\n")
            metrics_file.flush()
            spectrum_file.write(json.dumps({"step": step, "eigenvalues": eigs.tolist()}) + "\n")
            spectrum_file.flush()
            rows.append(row)
            if not ok:
                break
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    wall = time.perf_counter() - t0
    metrics_file.close()
    spectrum_file.close()

    # ------------------------------------------------------------------- summary, figures
    summary = {
        "steps": steps,
        "wall_time_s": round(wall, 4),
        "steps_per_second": round(steps / wall, 2),
        "dim": sizes[-1],
        "final": rows[-1],
        "min": {k: min(r[k] for r in rows) for k in rows[-1] if _number(rows[-1][k])},
        "max": {k: max(r[k] for r in rows) for k in rows[-1] if _number(rows[-1][k])},
        "bf16": args.bf16,
    }
    (out / "summary.json").write_text(json.dumps(_clean(summary), indent=2) + "\n")
    if args.figures:
        with open(out / "spectrum.jsonl") as f:
            draw(out, rows, [json.loads(line)["eigenvalues"] for line in f])
    print(json.dumps({"out": str(out), "steps_per_second": summary["steps_per_second"]}))


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def _clean(v: Any) -> Any:
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    return v


# --------------------------------------------------------------------------- figures
def draw(out: Path, rows: list[dict[str, Any]], spectra: list[list[float]]) -> None:
    """The seven panels of ``collapse plot`` and an overview of six, as PNGs at 100 dpi."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    steps = np.array([r["step"] for r in rows])
    col = {k: np.array([r.get(k, np.nan) for r in rows], dtype=float) for k in rows[0]}
    spec = np.array(spectra, dtype=float)  # (log steps, d)

    def loss(ax: Any) -> None:
        ax.plot(steps, col["loss"])
        ax.set(title="Loss", xlabel="step")

    def variance(ax: Any) -> None:
        ax.semilogy(steps, col["variance"])
        ax.set(title="Variance", xlabel="step")

    def min_eig(ax: Any) -> None:
        ax.semilogy(steps, np.maximum(col["min_eig"], 1e-30), label="λ_min")
        ax.twinx().plot(steps, col["rank"], "--", color="0.4", label="rank")
        ax.set(title="λ_min and rank", xlabel="step")

    def ranks(ax: Any) -> None:
        for k in ("effective_rank", "rankme", "rank"):
            ax.plot(steps, col[k], label=k)
        ax.legend()
        ax.set(title="Ranks", xlabel="step")

    def std_l2(ax: Any) -> None:
        ax.plot(steps, col["std_l2"])
        ax.axhline(1 / math.sqrt(spec.shape[1]), color="0.4", ls=":")
        ax.set(title="std_l2", xlabel="step")

    def heatmap(ax: Any) -> None:
        img = np.log10(np.maximum(spec, 1e-30)).T
        im = ax.imshow(img, aspect="auto", origin="upper", extent=(0, steps[-1], spec.shape[1], 0))
        ax.figure.colorbar(im, ax=ax)
        ax.set(title="Spectrum (log10 λ)", xlabel="step", ylabel="index")

    def final_spectrum(ax: Any) -> None:
        ax.semilogy(np.arange(1, spec.shape[1] + 1), np.maximum(spec[-1], 1e-30))
        ax.set(title="Final spectrum", xlabel="index")

    panels = {
        "loss": loss,
        "variance": variance,
        "min_eig": min_eig,
        "rank": ranks,
        "std_l2": std_l2,
        "spectrum": heatmap,
        "final_spectrum": final_spectrum,
    }
    (out / "plots").mkdir(parents=True, exist_ok=True)
    for name, panel in panels.items():
        fig, ax = plt.subplots(figsize=(6.4, 4), dpi=100)
        panel(ax)
        fig.savefig(out / "plots" / f"{name}.png")
        plt.close(fig)
    fig, axes = plt.subplots(2, 3, figsize=(16, 8.5), dpi=100)
    for ax, name in zip(
        axes.flat, ["loss", "variance", "min_eig", "rank", "std_l2", "final_spectrum"], strict=True
    ):
        panels[name](ax)
    fig.savefig(out / "plots" / "overview.png")
    plt.close(fig)


if __name__ == "__main__":
    main()
