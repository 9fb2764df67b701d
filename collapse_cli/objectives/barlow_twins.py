"""``barlow_twins``: drive the cross-correlation of two views' embeddings to the identity."""

from __future__ import annotations

import torch
from torch import nn

from .. import collectives
from ..registry import NonNegativeFloat
from .base import OBJECTIVES, Objective, Output, off_diagonal_entries, two_views

BN_EPS = 1e-5  # the paper's code standardises with BatchNorm1d(affine=False): eps 1e-5


def cross_correlation(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """C_ij = (1/N) Σ_b ẑ1_bi ẑ2_bj (d, d), ẑ = each column standardised over the batch (biased
    variance, as batch norm in training mode). Identical views give C_ii = 1."""
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(f"z1 and z2 must both be (N, d), got {tuple(z1.shape)}, {tuple(z2.shape)}")

    def standardise(z: torch.Tensor) -> torch.Tensor:
        return (z - z.mean(0)) / (z.var(0, unbiased=False) + BN_EPS).sqrt()

    return standardise(z1).T @ standardise(z2) / z1.shape[0]


def on_diagonal(c: torch.Tensor) -> torch.Tensor:
    """Σ_i (1 − C_ii)²: the invariance term (0 when each dimension agrees across the views)."""
    return (1 - torch.diagonal(c)).pow(2).sum()


def off_diagonal(c: torch.Tensor) -> torch.Tensor:
    """Σ_{i≠j} C_ij²: the redundancy-reduction term (0 when dimensions are decorrelated),
    summed over the off-diagonal entries themselves (see `off_diagonal_entries`)."""
    return off_diagonal_entries(c).pow(2).sum()


@OBJECTIVES.register("barlow_twins")
class BarlowTwins(Objective):
    """Barlow Twins (Zbontar et al. 2021): the views' cross-correlation driven to the identity.

    L = Σ_i (1 − C_ii)² + λ Σ_{i≠j} C_ij², λ = 5e-3.

    C is the cross-correlation of the batch-standardised embeddings of the two views. The YAML
    key of λ is ``lambd`` (``lambda`` is a Python keyword), as in the paper's code; ``lambd: 0``
    drops redundancy reduction, leaving every dimension free to carry the same feature.
    Logged parts: ``on_diagonal`` and ``off_diagonal`` (unweighted). On several ranks C is
    that of the gathered global batch, and every rank's loss is the whole batch's.

    >>> import torch
    >>> c = cross_correlation(torch.eye(2), torch.eye(2))  # columns ±1: C = [[1, −1], [−1, 1]]
    >>> round(float(on_diagonal(c)), 3), round(float(off_diagonal(c)), 3)
    (0.0, 2.0)
    """

    views = 2

    def __init__(self, lambd: NonNegativeFloat = 5e-3) -> None:
        super().__init__()
        self.lambd = lambd

    def forward(self, encoder: nn.Module, views: list[torch.Tensor]) -> Output:
        v1, v2 = two_views(views, "barlow_twins")
        z1, z2 = encoder(v1), encoder(v2)  # (n, d) each: this rank's share of the batch
        c = cross_correlation(collectives.gather(z1), collectives.gather(z2))  # (d, d), all N
        on, off = on_diagonal(c), off_diagonal(c)
        parts = {"on_diagonal": on.detach(), "off_diagonal": off.detach()}
        return Output(loss=on + self.lambd * off, z=z1, z_pos=z2, parts=parts)
