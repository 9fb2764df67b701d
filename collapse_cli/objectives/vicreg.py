"""``vicreg``: invariance, a variance hinge and a covariance penalty, each on its own weight."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .. import collectives
from ..registry import NonNegativeFloat, PositiveFloat
from .base import OBJECTIVES, Objective, Output, off_diagonal_entries, two_views


def invariance_term(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """(1/(N d)) Σ ‖z1_i − z2_i‖²: the mean squared difference of the two views' embeddings."""
    return F.mse_loss(z1, z2)


def variance_term(z: torch.Tensor, gamma: float = 1.0, eps: float = 1e-4) -> torch.Tensor:
    """(1/d) Σ_j max(0, γ − √(Var(z_j) + ε)), Var unbiased: 0 while every dimension's std is at
    least γ, γ (= 1) at complete collapse."""
    std = (z.var(dim=0) + eps).sqrt()  # (d,)
    return F.relu(gamma - std).mean()


def covariance_term(z: torch.Tensor) -> torch.Tensor:
    """(1/d) Σ_{i≠j} C_ij², C = the (d, d) covariance of z (N − 1 denominator), summed over
    the off-diagonal entries themselves (see `off_diagonal_entries`)."""
    n, d = z.shape
    zc = z - z.mean(0)
    cov = zc.T @ zc / (n - 1)  # (d, d)
    return off_diagonal_entries(cov).pow(2).sum() / d


@OBJECTIVES.register("vicreg")
class VICReg(Objective):
    """VICReg (Bardes et al. 2022): invariance, a variance hinge and a covariance penalty.

    L = λ s(Z, Z') + μ [v(Z) + v(Z')]/2 + ν [c(Z) + c(Z')].

    s = invariance_term, v = variance_term (γ = 1, ε = 1e-4), c = covariance_term; λ = μ = 25,
    ν = 1 (``invariance_weight``, ``variance_weight``, ``covariance_weight``). With
    ``variance_weight: 0`` nothing keeps the embeddings spread and they collapse (the paper's
    ablation). Logged parts: ``invariance`` (s), ``variance_term`` ([v(Z) + v(Z')]/2),
    ``covariance_term`` (c(Z) + c(Z')), all unweighted. On several ranks all three terms are
    those of the gathered global batch, and every rank's loss is the whole batch's.

    >>> import torch
    >>> round(float(variance_term(torch.zeros(4, 3))), 4)  # collapsed: 1 − √ε
    0.99
    """

    views = 2

    def __init__(
        self,
        invariance_weight: NonNegativeFloat = 25.0,
        variance_weight: NonNegativeFloat = 25.0,
        covariance_weight: NonNegativeFloat = 1.0,
        gamma: PositiveFloat = 1.0,
        eps: PositiveFloat = 1e-4,
    ) -> None:
        super().__init__()
        if invariance_weight == variance_weight == covariance_weight == 0:
            raise ValueError("at least one of the three weights must be > 0")
        self.weights = (invariance_weight, variance_weight, covariance_weight)
        self.gamma, self.eps = gamma, eps

    def forward(self, encoder: nn.Module, views: list[torch.Tensor]) -> Output:
        v1, v2 = two_views(views, "vicreg")
        z1, z2 = encoder(v1), encoder(v2)  # (n, d) each: this rank's share of the batch
        a, b = collectives.gather(z1), collectives.gather(z2)  # (N, d) each: the whole batch
        inv = invariance_term(a, b)
        var = (variance_term(a, self.gamma, self.eps) + variance_term(b, self.gamma, self.eps)) / 2
        cov = covariance_term(a) + covariance_term(b)
        w_inv, w_var, w_cov = self.weights
        parts = {
            "invariance": inv.detach(),
            "variance_term": var.detach(),
            "covariance_term": cov.detach(),
        }
        return Output(loss=w_inv * inv + w_var * var + w_cov * cov, z=z1, z_pos=z2, parts=parts)
