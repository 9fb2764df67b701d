"""LiDAR under three conventions on reptrix's own test case, torch.manual_seed(0) and
torch.randn(1000, 10, 1024) (n = 1000 samples, q = 10 views, d = 1024: pure noise).

- ours (metrics.lidar): the paper's Σ_b / (n − 1), Σ_w / (n(q − 1)) + δI, δ = 1e-4, and
  p = λ / ‖λ‖₁ + ε, ε = 1e-7, over the eigenvalues of Σ_w^{-1/2} Σ_b Σ_w^{-1/2};
- reptrix's, restated in tests/test_lidar_probe.py (`reptrix_style`): unnormalised Σ_b,
  Σ_w / n, δ = 1e-6, and the PCA explained-variance ratios of the rows of the LDA matrix as
  its spectrum; its own test expects 348.08795 here (float32), the restatement gives 348.08759
  in float64, inside the test's np.allclose tolerance;
- stable-pretraining's callback: the paper's Σ_b, Σ_w and δ = 1e-4, with ε = 1e-8 inside the
  normalisation, p = (λ + ε) / Σ(λ + ε).

Not a speed benchmark. Prints the three values; about a minute on one CPU thread.

    python bench/lidar_conventions.py
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from common import ROOT

sys.path.insert(0, str(ROOT))

from collapse_cli.metrics import LIDAR_DELTA, lidar
from tests.test_lidar_probe import reptrix_style


def stable_pretraining_style(z: np.ndarray, delta: float = 1e-4, eps: float = 1e-8) -> float:
    n, q, d = z.shape
    mu = z.mean(1)
    sb = (mu - mu.mean(0)).T @ (mu - mu.mean(0)) / (n - 1)
    dev = (z - mu[:, None]).reshape(-1, d)
    w, v = np.linalg.eigh(dev.T @ dev / (n * (q - 1)) + delta * np.eye(d))
    root = v @ np.diag(np.maximum(w, eps) ** -0.5) @ v.T
    lam = np.clip(np.linalg.eigvalsh(root @ sb @ root), 0, None) + eps
    p = lam / lam.sum()
    return float(np.exp(-(p * np.log(p)).sum()))


def main() -> None:
    torch.manual_seed(0)
    z = torch.randn(1000, 10, 1024)
    z64 = z.double().numpy()
    print(f"ours (paper's convention, δ = {LIDAR_DELTA:g}): {lidar(z):.5f}")
    print(f"reptrix's, restated (its test expects 348.08795): {reptrix_style(z64):.5f}")
    print(f"stable-pretraining's callback: {stable_pretraining_style(z64):.5f}")


if __name__ == "__main__":
    main()
