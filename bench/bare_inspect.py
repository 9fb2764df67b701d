"""The plain-NumPy twin of ``collapse inspect FILE.npy``: the same metrics of an (N, d) matrix,
written as a researcher would write them by hand, no package code. bench/overhead_inspect.py
measures ``collapse inspect`` against it as whole processes.

    python bench/bare_inspect.py embeddings.npy           # prints the metrics as JSON
    python bench/bare_inspect.py embeddings.npy --figure spectrum.png

Definitions as in docs/metrics.md: float64 throughout; C = Zcᵀ Zc / (N − 1); the rank
tolerance relative to σ₁(Z)² / (N − 1); RankMe on the singular values of the uncentred Z (its
own product ZᵀZ here); uniformity over at most 2048 evenly spaced rows.
"""

from __future__ import annotations

import argparse
import json
import math

import numpy as np


def entropy_exp(s: np.ndarray, eps: float = 0.0) -> float:
    total = s.sum()
    if not total > 0:
        return 0.0
    p = s / total + eps
    p = p[p > 0]
    return math.exp(-(p * np.log(p)).sum())


def metrics(z: np.ndarray) -> tuple[dict[str, float], np.ndarray]:
    n, d = z.shape
    z64 = z.astype(np.float64)
    zc = z64 - z64.mean(0)
    if n >= d:
        eigs = np.linalg.eigvalsh(zc.T @ zc / (n - 1))[::-1].clip(0)
        gram = np.linalg.eigvalsh(z64.T @ z64)[::-1].clip(0)
    else:  # the N × N Gram has the same nonzero eigenvalues
        eigs = np.zeros(d)
        eigs[:n] = np.linalg.eigvalsh(zc @ zc.T / (n - 1))[::-1].clip(0)
        gram = np.linalg.eigvalsh(z64 @ z64.T)[::-1].clip(0)
    eps = np.finfo(z.dtype).eps if z.dtype.itemsize > 2 else np.finfo(np.float32).eps
    rtol = max((max(n, d) * eps) ** 2, max(n, d) * np.finfo(np.float64).eps)
    scale = max(eigs[0], gram[0] / (n - 1))
    rank = int((eigs > scale * rtol).sum())
    norm = np.linalg.norm(z64, axis=1)
    u = z64 / np.where(norm == 0, np.inf, norm)[:, None]
    out = {
        "variance": (zc**2).sum(0).mean() / (n - 1),
        "min_eig": eigs[-1],
        "max_eig": eigs[0],
        "rank": rank,
        "effective_rank": entropy_exp(np.sqrt(eigs)),
        "rankme": entropy_exp(np.sqrt(gram), 1e-7),
        "participation_ratio": eigs.sum() ** 2 / (eigs**2).sum(),
    }
    if rank >= 10:  # α-ReQ: slope of log λ_i on log i, i = 2 … ⌊0.9 rank⌋
        i = np.arange(2, int(0.9 * rank + 1e-9) + 1)
        out["alpha_req"] = -np.polyfit(np.log(i), np.log(eigs[i - 1]), 1)[0]
    out["std_l2"] = u.std(0, ddof=1).mean()
    m = min(n, 2048)
    pick = u[np.arange(m) * (n - 1) // (m - 1)] if n > m else u
    sq = np.maximum(2 - 2 * (pick @ pick.T), 0)  # ‖u_i − u_j‖² of unit rows
    iu = np.triu_indices(m, 1)
    out["uniformity"] = np.log(np.exp(-2 * sq[iu]).mean())
    s = u.sum(0)
    out["mean_cosine"] = ((s @ s - (u * u).sum()) / (n * (n - 1))).clip(-1, 1)
    out["norm_mean"] = norm.mean()
    return {k: float(v) if k != "rank" else v for k, v in out.items()}, eigs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("file")
    p.add_argument("--figure", help="also draw the sorted spectrum into this PNG")
    args = p.parse_args()
    z = np.load(args.file)
    values, eigs = metrics(z)
    print(json.dumps(values, indent=1))
    if args.figure:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        ax.semilogy(np.arange(1, len(eigs) + 1), np.maximum(eigs, 1e-30))
        ax.set(title=f"Sorted eigenvalue spectrum (N, d = {z.shape})", xlabel="index")
        fig.savefig(args.figure)


if __name__ == "__main__":
    main()
