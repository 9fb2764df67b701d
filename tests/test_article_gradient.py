"""The article's gradient identity of InfoNCE, checked against autograd, and the gradient at
exact collapse bounded by round-off; the logged forces are the identity's two terms."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from collapse_cli.metrics import contrastive_forces
from collapse_cli.objectives.infonce import InfoNCE
from collapse_cli.objectives.moco import moco_logits


def anchor_gradients(q: torch.Tensor, k: torch.Tensor, tau: float) -> torch.Tensor:
    """∂L_i/∂q_i (N, d) by autograd, L_i = −log exp(q_i·k_i/τ) / Σ_k exp(q_i·k_k/τ): queries from
    one view, keys from the other held fixed, unnormalised dot products. L = Σ_i L_i, and L_i
    depends on no other query, so row i of ∂L/∂q is ∂L_i/∂q_i."""
    q = q.clone().requires_grad_(True)
    logits = q @ k.detach().T / tau  # (N, N)
    loss = F.cross_entropy(logits, torch.arange(q.shape[0]), reduction="sum")
    (grad,) = torch.autograd.grad(loss, q)
    return grad


def article_identity(q: torch.Tensor, k: torch.Tensor, tau: float) -> torch.Tensor:
    """(Σ_k P(k|i) k_k − k_i)/τ, P(k|i) = exp(q_i·k_k/τ) / Σ_j exp(q_i·k_j/τ), written out
    with explicit exponentials (no softmax or cross-entropy routine)."""
    s = q @ k.T / tau
    w = torch.exp(s - s.max(dim=1, keepdim=True).values)
    p = w / w.sum(dim=1, keepdim=True)  # (N, N) rows sum to 1
    return (p @ k - k) / tau


@pytest.mark.parametrize("tau", [0.1, 0.5, 1.0])
def test_the_articles_gradient_identity_matches_autograd(tau: float):
    g = torch.Generator().manual_seed(3)
    q = torch.randn(24, 8, generator=g, dtype=torch.float64)
    k = q + 0.3 * torch.randn(24, 8, generator=g, dtype=torch.float64)  # the other view
    auto, formula = anchor_gradients(q, k, tau), article_identity(q, k, tau)
    assert auto.abs().max() > 0.1  # a real gradient, not a trivially zero one
    torch.testing.assert_close(auto, formula, rtol=1e-10, atol=1e-12)


def collapse_bound(n: int, c: torch.Tensor, tau: float, dtype: torch.dtype) -> float:
    """A bound on |∂L_i/∂q_ij| at exact collapse (q_i = k_k = c for all i, k), where the exact
    gradient is c (Σ_k P(k|i) − 1)/τ = 0, so every bit of it is round-off, u the unit
    round-off of ``dtype`` (2⁻⁵³ for float64) and γ_m = m·u / (1 − m·u):

    - forward: the logits q_i·c/τ may differ in their last bits, but the computed softmax P̂
      sums to 1 up to its own rounding whatever the logits: P̂_k = exp(s_k − m − log Σ_j
      exp(s_j − m)); the sum of N terms near 1 is off by γ_N relatively, its log then by γ_N
      + u·log N absolutely, and the exponent's argument (size ≤ log N) and exp add u·log N
      and u each, so |Σ_k P̂_k − 1| ≤ γ_N + 2u(log N + 1);
    - backward: ∂L_i/∂s_ik = P̂_k − δ_ik, times the keys: the N-term sum Σ_k (P̂_k − δ_ik) c_j is
      off by at most γ_N Σ_k |P̂_k − δ_ik| |c_j| ≤ 2γ_N |c_j|, and the division by τ by u.

    So |∂L_i/∂q_ij| ≤ |c_j|/τ · (3γ_N + 2u(log N + 2)); the test allows the rounder
    (4N + 2 log N + 8)·u·max_j |c_j|/τ, which exceeds it for N·u ≪ 1.
    """
    u = torch.finfo(dtype).eps / 2
    return (4 * n + 2 * math.log(n) + 8) * u * float(c.abs().max()) / tau


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("n,tau", [(64, 0.1), (512, 0.5)])
def test_at_exact_collapse_the_gradient_is_zero_up_to_round_off(n, tau, dtype):
    """Collapse is a stationary point: the gradient there is round-off, within the bound of
    `collapse_bound` (about 1e-13 in float64; the float32 bound, about 1e-4 at N = 512, is the
    scale of the first gradient of a float32 run started at exact collapse)."""
    c = torch.randn(16, generator=torch.Generator().manual_seed(n), dtype=dtype)
    z = c.expand(n, 16).clone()
    grad = anchor_gradients(z, z, tau)
    bound = collapse_bound(n, c, tau, dtype)
    assert grad.abs().max() <= bound
    if dtype == torch.float64:
        assert bound < 1e-11  # the bound itself is tight enough to mean "zero"
    # Off collapse the same code gives a gradient far above the bound: the check can fail.
    noise = torch.randn(n, 16, generator=torch.Generator().manual_seed(1), dtype=dtype)
    moved = z + 0.1 * noise
    assert anchor_gradients(moved, moved, tau).abs().max() > 100 * bound


def test_the_logged_forces_are_the_two_terms_of_the_gradient():
    """force_net is the mean norm of autograd's ∂L_i/∂q_i, force_attraction that of k_i/τ and
    force_repulsion that of ∂L_i/∂q_i + k_i/τ = Σ_k P(k|i) k_k/τ."""
    g = torch.Generator().manual_seed(0)
    q = torch.randn(16, 5, generator=g, dtype=torch.float64)
    k = q + 0.5 * torch.randn(16, 5, generator=g, dtype=torch.float64)
    tau = 0.3
    auto = anchor_gradients(q, k, tau)
    forces = contrastive_forces(q, k, torch.arange(16), tau)
    assert float(forces["force_net"]) == pytest.approx(float(auto.norm(dim=1).mean()), rel=1e-12)
    assert float(forces["force_attraction"]) == pytest.approx(float((k / tau).norm(dim=1).mean()))
    push = (auto + k / tau).norm(dim=1).mean()
    assert float(forces["force_repulsion"]) == pytest.approx(float(push), rel=1e-12)
    ratio = forces["force_repulsion"] / forces["force_attraction"]
    assert float(forces["force_ratio"]) == pytest.approx(float(ratio))


def test_nt_xent_forces_hold_candidates_fixed_and_leave_out_the_anchor():
    """For NT-Xent the anchors are the 2N unit vectors, each against the other 2N − 1: the net
    force is autograd's gradient of the per-anchor cross-entropy with the candidates detached;
    on unit vectors the attraction is exactly 1/τ."""
    g = torch.Generator().manual_seed(2)
    z1 = torch.randn(6, 4, generator=g, dtype=torch.float64)
    z2 = z1 + 0.2 * torch.randn(6, 4, generator=g, dtype=torch.float64)
    tau = 0.5
    u = F.normalize(torch.cat([z1, z2]), dim=1).requires_grad_(True)
    logits = (u @ u.detach().T / tau).masked_fill(torch.eye(12, dtype=torch.bool), -math.inf)
    positives = torch.cat([torch.arange(6, 12), torch.arange(6)])
    (grad,) = torch.autograd.grad(F.cross_entropy(logits, positives, reduction="sum"), u)
    forces = InfoNCE(temperature=tau).forces(z1, z2)
    assert float(forces["force_attraction"]) == pytest.approx(1 / tau, rel=1e-12)
    assert float(forces["force_net"]) == pytest.approx(float(grad.norm(dim=1).mean()), rel=1e-10)


def test_moco_forces_contrast_a_query_with_its_key_and_the_queue_only():
    from collapse_cli.objectives.moco import MoCo

    g = torch.Generator().manual_seed(4)
    q = F.normalize(torch.randn(4, 3, generator=g, dtype=torch.float64), dim=1)
    k = F.normalize(q + 0.3 * torch.randn(4, 3, generator=g, dtype=torch.float64), dim=1)
    queue = F.normalize(torch.randn(8, 3, generator=g, dtype=torch.float64), dim=1)
    tau = 0.2
    qq = q.clone().requires_grad_(True)
    loss = F.cross_entropy(moco_logits(qq, k, queue, tau), torch.zeros(4, dtype=torch.long),
                           reduction="sum")  # fmt: skip
    (grad,) = torch.autograd.grad(loss, qq)
    moco = MoCo(queue_size=8, temperature=tau)
    moco._negatives = queue
    forces = moco.forces(q, k)
    assert float(forces["force_net"]) == pytest.approx(float(grad.norm(dim=1).mean()), rel=1e-10)


def test_the_variance_gradient_is_two_over_n_times_the_deviation():
    """The article writes ∇_{z_i} Var(Z) = 2(z_i − μ) for Var(Z) = (1/N) Σ_i ‖z_i − μ‖²; autograd
    gives (2/N)(z_i − μ) (μ depends on z_i too, but Σ_i (z_i − μ) = 0 cancels that term): the
    article's is N times too large, and zero at collapse all the same."""
    z = torch.randn(10, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    zz = z.clone().requires_grad_(True)
    var = (zz - zz.mean(0)).pow(2).sum(1).mean()
    (grad,) = torch.autograd.grad(var, zz)
    torch.testing.assert_close(grad, 2 * (z - z.mean(0)) / 10, rtol=1e-12, atol=1e-14)
    c = z[:1].expand(10, 3).clone().requires_grad_(True)
    (at_collapse,) = torch.autograd.grad((c - c.mean(0)).pow(2).sum(1).mean(), c)
    assert at_collapse.abs().max() == 0
