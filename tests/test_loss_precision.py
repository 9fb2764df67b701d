"""The logged off-diagonal parts of Barlow Twins and VICReg stay accurate when the embeddings are
nearly whitened, where Σ_ij C_ij² − Σ_i C_ii² would cancel catastrophically.

Each part is compared with a float64 reference computed independently in numpy (its own
standardisation and covariance, the off-diagonal sum taken through np.triu / np.tril)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from collapse_cli.objectives.barlow_twins import BN_EPS, cross_correlation, off_diagonal
from collapse_cli.objectives.vicreg import covariance_term

# Near-whitened: an exactly (float64) whitened Gaussian batch mixed by I + ρA, A symmetric with a
# zero diagonal, so C = I + O(ρ) off the diagonal. Exact whitening alone (ρ = 0) is no use: C's
# off-diagonal entries are then float32 round-off (~1e-8) and no float32 reference exists.
RHO_FLOAT32 = 1e-4  # off-diagonal C_ij ~ 1e-4: Σ_{i≠j} C_ij² ~ 1e-5 next to Σ_i C_ii² ≈ d
RHO_BFLOAT16 = 3e-3  # larger, so the off-diagonal entries stand well above bfloat16's round-off

# Relative error allowed in float32, measured with this fixture (torch 2.13, CPU, seed 0 as used
# below; seeds 0-7 in brackets), Barlow off_diagonal / VICReg covariance_term:
#   (4096, 64)  new 8.2e-7 / 6.0e-7 [at most 2.9e-6 / 1.7e-6]
#               old 3.6e-2 / 3.6e-2 [8.8e-3 to 9.6e-2 / 3.6e-2 to 2.2e-1]
#   (8192, 32)  new 5.1e-7 / 1.9e-6 [at most 4.4e-6 / 4.7e-6]
#               old 2.6e-2 / 8.2e-2 [1.4e-2 to 2.6e-1 / 3.6e-2 to 4.1e-1]
# ("old" = Σ_ij C_ij² − Σ_i C_ii²), so the bound holds with a 20x margin and the old formula
# misses it by 88x or more.
FLOAT32_RTOL = 1e-4

# Relative error allowed under bfloat16 autocast. Measured at ρ = 3e-3, seeds 0-7: the new sums
# are within 0.5 % of the float64 reference at (2048, 32) and (4096, 64) (seed 0: 0.25 % / 0.22 %
# and 0.12 % / 0.06 %); the old difference formula read exactly 0.0 for both parts, every seed
# and both shapes: Σ_ij C_ij² and Σ_i C_ii² both round to d in bfloat16, whose spacing there
# (d/128) dwarfs the true Σ_{i≠j} C_ij² ≈ 0.018 / 0.073 and (1/d) Σ_{i≠j} Cov_ij² ≈ 6e-4 / 1e-3.
BFLOAT16_RTOL = 0.05


def near_whitened(n: int, d: int, rho: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(x, w) in float64: x (n, d) exactly whitened (mean 0, unbiased covariance I), w (d, d) =
    I + ρA; x @ w is the near-whitened batch."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    x -= x.mean(0)
    evals, evecs = np.linalg.eigh(x.T @ x / (n - 1))
    x = x @ (evecs / np.sqrt(evals)) @ evecs.T  # ZCA whitening
    a = rng.standard_normal((d, d))
    a = (a + a.T) / 2
    np.fill_diagonal(a, 0.0)
    return x, np.eye(d) + rho * a


def off_diagonal_squares_reference(m: np.ndarray) -> float:
    """Σ_{i≠j} m_ij² in float64, as the strict upper plus the strict lower triangle."""
    return float((np.triu(m, k=1) ** 2).sum() + (np.tril(m, k=-1) ** 2).sum())


def cross_correlation_reference(z1: np.ndarray, z2: np.ndarray) -> np.ndarray:
    """Barlow Twins' C in float64: columns standardised with the biased variance plus BN_EPS."""
    s1 = (z1 - z1.mean(0)) / np.sqrt(z1.var(0) + BN_EPS)
    s2 = (z2 - z2.mean(0)) / np.sqrt(z2.var(0) + BN_EPS)
    return s1.T @ s2 / z1.shape[0]


def covariance_reference(z: np.ndarray) -> np.ndarray:
    return np.cov(z, rowvar=False)  # (d, d), N − 1 denominator


def relative_error(value: torch.Tensor, reference: float) -> float:
    return abs(float(value) - reference) / reference


SHAPES = [(4096, 64), (8192, 32)]


@pytest.mark.parametrize("n, d", SHAPES)
def test_barlow_off_diagonal_matches_a_float64_reference_on_near_whitened_embeddings(n, d):
    x, w = near_whitened(n, d, RHO_FLOAT32)
    z = torch.from_numpy(x @ w).float()  # (n, d) float32
    z64 = z.double().numpy()  # the very same float32 values, in float64
    c_ref = cross_correlation_reference(z64, z64)
    assert np.abs(c_ref - np.eye(d)).max() < 1e-3  # C is nearly the identity
    reference = off_diagonal_squares_reference(c_ref)

    part = off_diagonal(cross_correlation(z, z))

    assert part.dtype == torch.float32
    assert relative_error(part, reference) < FLOAT32_RTOL


@pytest.mark.parametrize("n, d", SHAPES)
def test_vicreg_covariance_term_matches_a_float64_reference_on_near_whitened_embeddings(n, d):
    x, w = near_whitened(n, d, RHO_FLOAT32)
    z = torch.from_numpy(x @ w).float()
    cov_ref = covariance_reference(z.double().numpy())
    assert np.abs(cov_ref - np.eye(d)).max() < 1e-3
    reference = off_diagonal_squares_reference(cov_ref) / d

    part = covariance_term(z)

    assert part.dtype == torch.float32
    assert relative_error(part, reference) < FLOAT32_RTOL


@pytest.mark.parametrize("n, d", [(2048, 32), (4096, 64)])
def test_both_parts_stay_positive_and_near_the_float64_reference_under_bfloat16_autocast(n, d):
    x, w = near_whitened(n, d, RHO_BFLOAT16)
    encoder = nn.Linear(d, d, bias=False).requires_grad_(False)
    encoder.weight.copy_(torch.from_numpy(w.T))  # encoder(x) = x @ w
    z64 = x @ w  # the float64 embeddings the encoder approximates
    barlow_ref = off_diagonal_squares_reference(cross_correlation_reference(z64, z64))
    vicreg_ref = off_diagonal_squares_reference(covariance_reference(z64)) / d

    with torch.autocast("cpu", dtype=torch.bfloat16):
        z = encoder(torch.from_numpy(x).float())
        barlow = off_diagonal(cross_correlation(z, z))
        vicreg = covariance_term(z)

    assert z.dtype == barlow.dtype == vicreg.dtype == torch.bfloat16
    assert float(barlow) > 0 and float(vicreg) > 0  # the difference formula gave exactly 0.0
    assert relative_error(barlow, barlow_ref) < BFLOAT16_RTOL
    assert relative_error(vicreg, vicreg_ref) < BFLOAT16_RTOL


def test_off_diagonal_sums_exactly_the_off_diagonal_entries_of_any_layout():
    g = torch.Generator().manual_seed(0)
    c = torch.randn(5, 7, generator=g, dtype=torch.float64)
    square = c @ c.T  # (5, 5)
    expected = off_diagonal_squares_reference(square.numpy())
    assert float(off_diagonal(square)) == pytest.approx(expected, rel=1e-12)
    assert float(off_diagonal(square.T[:, :])) == pytest.approx(expected, rel=1e-12)
    strided = torch.randn(5, 10, generator=g, dtype=torch.float64)[:, ::2]  # not contiguous
    assert float(off_diagonal(strided)) == pytest.approx(
        off_diagonal_squares_reference(strided.numpy()), rel=1e-12
    )
    assert float(off_diagonal(torch.ones(1, 1))) == 0.0  # d = 1: nothing off the diagonal


def test_both_parts_keep_their_gradients():
    g = torch.Generator().manual_seed(0)
    c = torch.randn(4, 4, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(off_diagonal, (c,))
    mask = ~torch.eye(4, dtype=torch.bool)
    (grad,) = torch.autograd.grad(off_diagonal(c), c)
    assert torch.equal(grad, 2 * c.detach() * mask)  # d/dC_ij Σ_{i≠j} C_ij² = 2 C_ij, 0 on diag

    z = torch.randn(9, 4, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(covariance_term, (z,))
