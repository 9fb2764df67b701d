"""The article's spectral claims, measured on both of the matrices it calls C (issue 14, 2b).

The article writes C = ZᵀZ / N (uncentred, "Spectral Interpretation") in one place and
C = (1/N) Σ (z_i − μ)(z_i − μ)ᵀ (centred, "Variance Preservation", and the code of both its
demos) in another. Every claim about "rank", "λ₂ … λ_d", "all variance in one dimension" or
"full rank" reads differently on the two. This script computes both spectra with numpy, in
float64, independently of collapse_cli's metrics, on:

- synthetic embeddings: exact collapse Z = 1 cᵀ and near collapse Z = 1 cᵀ + ε δ (δ ~ N(0, I));
- the article's demos (configs/collapse.yaml, configs/infonce-self.yaml) and the Jing et al.
  toy (configs/jing-linear.yaml, noise 3 and noise 0), at step 0 (the encoder as built) and at
  the end (the run's embeddings.npy), each run made with collapse_cli's Python API.

Ranks are numerical ranks of the data matrix (Z or Zc) with the tolerance for float32 data,
σ₁ · max(N, d) · eps_f32 (numpy's matrix_rank rule with float32's epsilon, since the
embeddings are float32). Effective rank is exp of the entropy of the normalised singular
values (Roy and Vetterli 2007) of that matrix.

    python bench/spectral_claims.py            # ~1 min on one CPU thread
    python bench/spectral_claims.py --quick    # the synthetic cases and the two demos only
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from common import ROOT, machine, save, table

EPS_F32 = float(np.finfo(np.float32).eps)


def spectra(z: np.ndarray) -> dict[str, dict[str, Any]]:
    """Both spectra of the (N, d) embeddings z: ``uncentred`` (ZᵀZ/N) and ``centred`` (the
    covariance ZcᵀZc/N), each with its eigenvalues and the numbers the claims are about.

    Both ranks use one tolerance, σ₁(Z) · max(N, d) · eps_f32 with σ₁ of the uncentred Z:
    float32 round-off scales with the embeddings themselves, not with what is left of them
    after centring (a centred exact collapse is round-off of the size of Z, not rank 1)."""
    z = np.asarray(z, dtype=np.float64)
    n, d = z.shape
    out = {}
    tol = None
    for name, m in (("uncentred", z), ("centred", z - z.mean(axis=0))):
        s = np.linalg.svd(m, compute_uv=False)  # singular values, descending
        if tol is None:
            tol = (s[0] if s.size else 0.0) * max(n, d) * EPS_F32
        eig = np.zeros(d)
        eig[: s.size] = s**2 / n  # eigenvalues of mᵀm / N, descending
        rank = int((s > tol).sum())
        p = s / s.sum() if s.sum() > 0 else s
        p = p[p > 0]
        out[name] = {
            "lambda_1": float(eig[0]),
            "lambda_2_over_1": float(eig[1] / eig[0]) if eig[0] > 0 else None,
            "lambda_min": float(eig[-1]),
            "lambda_r": float(eig[rank - 1]) if rank else 0.0,  # the smallest one counted
            "rank": rank,
            "effective_rank": float(np.exp(-(p * np.log(p)).sum())) if p.size else 0.0,
            "trace_over_d": float(eig.sum() / d),  # centred: the article's Var(Z) / d
        }
    return out


def synthetic(n: int = 512, d: int = 128, seed: int = 0) -> dict[str, np.ndarray]:
    """Exact and near collapse in float32, as embeddings are: every row c, then c + ε δ_i."""
    rng = np.random.default_rng(seed)
    c = rng.standard_normal(d)
    delta = rng.standard_normal((n, d))
    cases = {"exact collapse (ε = 0)": np.tile(c, (n, 1))}
    for eps in (1e-3, 1e-2, 1e-1):
        cases[f"near collapse ε = {eps:g}"] = c + eps * delta
    cases["healthy N(0, I)"] = delta
    return {name: z.astype(np.float32) for name, z in cases.items()}


def run_config(config: str, overrides: list[str], runs: Path) -> dict[str, Any]:
    """Step-0 and final embeddings of one collapse_cli run: the encoder as built (the run's own
    seed) applied to the training data, and the run's embeddings.npy; and its summary."""
    import torch

    from collapse_cli import run_experiment
    from collapse_cli.config import load_config
    from collapse_cli.encoders import embed
    from collapse_cli.training.build import build

    overrides = [*overrides, "log.plots=false"]
    cfg = load_config(ROOT / config, overrides)
    parts, rows = build(cfg), cfg.log.embeddings
    z0 = embed(parts.encoder, parts.data.x[:rows]).double().numpy()
    torch.set_num_threads(1)
    folder, summary = run_experiment(ROOT / config, overrides, runs_dir=runs)
    z1 = np.load(folder / "embeddings.npy")
    return {"step 0": z0, "end": z1, "summary": summary["final"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="skip the two Jing runs (~30 s)")
    args = ap.parse_args()

    runs_to_do = [
        ("collapse.yaml (demo 1)", "configs/collapse.yaml", []),
        ("infonce-self.yaml (demo 2)", "configs/infonce-self.yaml", []),
    ]
    if not args.quick:
        runs_to_do += [
            ("jing-linear.yaml, noise 3", "configs/jing-linear.yaml", []),
            ("jing-linear.yaml, noise 0", "configs/jing-linear.yaml", ["views.noise=0"]),
        ]
    cases: dict[str, dict[str, Any]] = {}
    for name, z in synthetic().items():
        cases[name] = {"spectra": spectra(z), "shape": list(z.shape)}
    with tempfile.TemporaryDirectory() as tmp:
        for name, config, overrides in runs_to_do:
            print(f"running {config} {' '.join(overrides)}", file=sys.stderr, flush=True)
            got = run_config(config, overrides, Path(tmp))
            for when in ("step 0", "end"):
                cases[f"{name}, {when}"] = {
                    "config": config,
                    "overrides": overrides,
                    "spectra": spectra(got[when]),
                    "shape": list(got[when].shape),
                }
            cases[f"{name}, end"]["collapse_cli_final"] = {
                k: got["summary"].get(k) for k in ("rank", "effective_rank", "min_eig", "variance")
            }

    heads = ["case", "matrix", "λ₁", "λ₂/λ₁", "λ_r", "λ_min", "rank r", "eff. rank", "tr/d"]
    rows = []
    for name, case in cases.items():
        for matrix, s in case["spectra"].items():
            ratio = s["lambda_2_over_1"]
            rows.append(
                [
                    name if matrix == "uncentred" else "",
                    matrix,
                    f"{s['lambda_1']:.4g}",
                    "—" if ratio is None else f"{ratio:.3g}",
                    f"{s['lambda_r']:.3g}",
                    f"{s['lambda_min']:.3g}",
                    f"{s['rank']}/{case['shape'][1]}",
                    f"{s['effective_rank']:.2f}",
                    f"{s['trace_over_d']:.4g}",
                ]
            )
    print(table(heads, rows))
    save(
        "spectral_claims",
        {"machine": machine(), "command": " ".join(sys.argv), "cases": cases},
    )


if __name__ == "__main__":
    main()
