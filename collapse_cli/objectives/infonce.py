"""``infonce``: NT-Xent, two-view InfoNCE with cosine similarity and a temperature (SimCLR)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .. import collectives, metrics
from ..registry import PositiveFloat
from .base import OBJECTIVES, Objective, Output, two_views


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """Mean over the 2N anchors of −log exp(s_ij/τ) / Σ_{k≠i} exp(s_ik/τ).

    u = the rows of [z1; z2] (2N, d) scaled to unit norm, s = u uᵀ their cosine similarities,
    j the other view of anchor i; every other embedding in the batch is a negative.

    On several ranks z1 and z2 are this rank's n rows: its 2n anchors are compared with the
    gathered 2N candidates [Z1; Z2], in which its own rows sit at offset + i and N + offset + i;
    the mean over the rank's anchors averages over the ranks to the mean over all 2N.
    """
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(f"z1 and z2 must both be (N, d), got {tuple(z1.shape)}, {tuple(z2.shape)}")
    n = z1.shape[0]
    u = F.normalize(torch.cat([z1, z2]), dim=1)  # (2n, d) this rank's anchors
    candidates = torch.cat([collectives.gather(u[:n]), collectives.gather(u[n:])])  # (2N, d)
    total = candidates.shape[0]  # 2N
    sim = (u @ candidates.T) / temperature  # (2n, 2N)
    mine = torch.arange(n, device=u.device) + collectives.offset(n)
    own = torch.cat([mine, mine + total // 2])  # (2n,) each anchor's own column
    self_pairs = torch.zeros_like(sim, dtype=torch.bool).scatter_(1, own[:, None], True)
    sim = sim.masked_fill(self_pairs, float("-inf"))  # an anchor is never its own candidate
    positives = (own + total // 2) % total
    return F.cross_entropy(sim, positives)


@OBJECTIVES.register("infonce")
class InfoNCE(Objective):
    """NT-Xent (Chen et al. 2020, SimCLR): two views, cosine similarity / τ, batch negatives.

    Each sample's other view is its positive, the other 2N − 2 embeddings of the batch its
    negatives.

    L = (1/2N) Σ_i −log exp(cos(z_i, z_i⁺)/τ) / Σ_{k≠i} exp(cos(z_i, z_k)/τ),  τ = 0.5.

    Identical views of N orthogonal embeddings give log(1 + (2N − 2)·e^(−1/τ)):

    >>> import torch
    >>> from torch import nn
    >>> z = torch.eye(4)
    >>> round(float(InfoNCE()(nn.Identity(), [z, z]).loss), 4)
    0.5944
    """

    views = 2

    def __init__(self, temperature: PositiveFloat = 0.5) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(self, encoder: nn.Module, views: list[torch.Tensor]) -> Output:
        v1, v2 = two_views(views, "infonce")
        z1, z2 = encoder(v1), encoder(v2)  # (N, d) each
        return Output(loss=nt_xent(z1, z2, self.temperature), z=z1, z_pos=z2)

    def forces(self, z: torch.Tensor, z_pos: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """NT-Xent's anchors, both views' unit vectors u (2N, d): each against the other 2N − 1,
        its positive the other view of its sample."""
        if z_pos is None:
            return {}
        u = F.normalize(torch.cat([z, z_pos]).double(), dim=1)  # (2N, d)
        n = z.shape[0]
        positive = (torch.arange(2 * n, device=u.device) + n) % (2 * n)
        allowed = ~torch.eye(2 * n, dtype=torch.bool, device=u.device)  # never itself
        return metrics.contrastive_forces(u, u, positive, self.temperature, allowed)
