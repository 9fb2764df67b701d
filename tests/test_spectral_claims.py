"""The article's spectral claims on both matrices it calls C: the uncentred second moment ZᵀZ/N
of its "Spectral Interpretation" and the centred covariance its demos compute. Each claim is
measured with numpy, in float64, on embeddings that collapse_cli produced (the demos' runs,
the encoder as built), never with the project's metric functions; the last test holds those
functions to numpy on near-collapsed embeddings. docs/article-claims.md has the numbers."""

from __future__ import annotations

import numpy as np
import torch

from collapse_cli import run_experiment
from collapse_cli.config import load_config
from collapse_cli.encoders import embed
from collapse_cli.metrics import compute_metrics
from collapse_cli.training.build import build

from .conftest import CONFIGS

EPS_F32 = float(np.finfo(np.float32).eps)


def eigenvalues(z: np.ndarray, centred: bool) -> np.ndarray:
    """Eigenvalues (descending) of ZᵀZ/N, or of ZcᵀZc/N with Zc the column-centred Z."""
    z = np.asarray(z, dtype=np.float64)
    if centred:
        z = z - z.mean(axis=0)
    return np.linalg.eigvalsh(z.T @ z / z.shape[0])[::-1]


def float32_rank(z: np.ndarray, centred: bool) -> int:
    """Numerical rank of Z (or Zc) with the tolerance for float32 data, σ₁(Z)·max(N, d)·eps."""
    z = np.asarray(z, dtype=np.float64)
    tol = np.linalg.norm(z, 2) * max(z.shape) * EPS_F32
    return int(np.linalg.matrix_rank(z - z.mean(axis=0) if centred else z, tol=tol))


def step0_and_end(config: str, runs_dir, steps: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """The embeddings of a config's encoder as built (step 0) and of its run's end."""
    overrides = [f"train.steps={steps}", f"log.every={steps}", "log.plots=false"]
    overrides += ["log.spectrum=false"]
    cfg = load_config(CONFIGS / config, overrides)
    parts = build(cfg)
    z0 = embed(parts.encoder, parts.data.x).double().numpy()
    folder, _ = run_experiment(CONFIGS / config, overrides, runs_dir=runs_dir)
    return z0, np.load(folder / "embeddings.npy")


def test_demo_1_leaves_one_uncentred_direction_and_no_centred_one(runs_dir):
    # "All eigenvalues except one are zero": true of ZᵀZ/N, whose one survivor is the common
    # vector the embeddings converge to; the covariance the demo prints shrinks as a whole.
    z0, z1 = step0_and_end("collapse.yaml", runs_dir)
    m0, m1 = eigenvalues(z0, centred=False), eigenvalues(z1, centred=False)
    c0, c1 = eigenvalues(z0, centred=True), eigenvalues(z1, centred=True)
    assert m1[1] / m1[0] < 1e-4 < m0[1] / m0[0]  # uncentred: one direction is left
    assert m1[0] > 0.1 * m0[0]  # ... and it stays large (‖mean‖²)
    assert c1[0] < 1e-4 * c0[0]  # centred: the largest eigenvalue falls as well
    assert c1[1] / c1[0] > 0.5  # ... and the others keep pace with it
    # 96 of the 128 centred eigenvalues are zero at every step (rank ≤ 32, the input's)
    assert float32_rank(z0, centred=True) == float32_rank(z1, centred=True) == 32


def test_demo_2_is_never_full_rank_though_its_attainable_spectrum_rises(runs_dir):
    # "Embedding space becomes full rank" and "smaller eigenvalues increase", on 100 of the
    # demo's 500 steps (λ₃₂ is 0.332 at step 0, 0.402 at step 100, 0.437 at step 500)
    z0, z1 = step0_and_end("infonce-self.yaml", runs_dir, steps=100)
    for z in (z0, z1):
        assert float32_rank(z, centred=True) == 32  # of 128, before and after
        assert float32_rank(z, centred=False) == 33  # the bias adds one uncentred direction
    c0, c1 = eigenvalues(z0, centred=True), eigenvalues(z1, centred=True)
    assert c1[31] > 1.1 * c0[31]  # λ₃₂, the smallest attainable one, rises
    assert max(abs(c0[32]), abs(c1[32])) < 1e-12 * c0[0]  # λ₃₃ … are round-off, before and after


def entropy_rank(s: np.ndarray, eps: float = 0.0) -> float:
    """exp of the Shannon entropy of the normalised singular values (Roy and Vetterli 2007)."""
    p = s / s.sum() + eps
    return float(np.exp(-(p * np.log(p)).sum()))


def test_near_collapse_reads_as_collapsed_only_on_the_uncentred_spectrum():
    # Z = c + ε δ: the covariance is ε² Cov(δ), as spread as a healthy cloud at any ε > 0;
    # only the uncentred matrix (and rankme, computed on it) sees the shared vector.
    g = torch.Generator().manual_seed(0)
    c = torch.randn(64, generator=g, dtype=torch.float64)
    delta = torch.randn(512, 64, generator=g, dtype=torch.float64)
    uncentred = {}
    for eps in (1e-3, 1e-1):
        z = c + eps * delta
        metrics, spectrum = compute_metrics(z)
        s_c = np.linalg.svd((z - z.mean(0)).numpy(), compute_uv=False)
        s_u = np.linalg.svd(z.numpy(), compute_uv=False)

        assert entropy_rank(s_c) > 50  # of 64: centred, near collapse looks healthy
        assert np.isclose(metrics["effective_rank"], entropy_rank(s_c), rtol=1e-6)
        # RankMe (Garrido et al. 2023): p_i = σ_i / Σσ + 1e-7, on the uncentred Z
        assert np.isclose(metrics["rankme"], entropy_rank(s_u, 1e-7), rtol=1e-6)
        uncentred[eps] = entropy_rank(s_u)
        # the project's spectrum is the covariance's (divisor N − 1), as numpy's np.cov
        expected = np.linalg.eigvalsh(np.cov(z.numpy().T))[::-1]
        assert np.allclose(spectrum.numpy(), expected, rtol=1e-8, atol=1e-14 * expected[0])
    assert uncentred[1e-3] < 1.5 < uncentred[1e-1]  # uncentred: ≈ 1 until ε is no longer small
