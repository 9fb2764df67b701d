"""``simsiam``: a predictor and a stop-gradient, no negatives and no target network."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..encoders import mlp_head
from ..registry import PositiveInt
from .base import OBJECTIVES, Objective, Output, two_views


def negative_cosine(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """D(p, z) = −mean_i cos(p_i, z_i) over (N, d) rows: −1 for aligned, 0 for orthogonal."""
    if p.shape != z.shape:
        raise ValueError(f"p and z must have one shape, got {tuple(p.shape)}, {tuple(z.shape)}")
    return -F.cosine_similarity(p, z, dim=1).mean()


@OBJECTIVES.register("simsiam")
class SimSiam(Objective):
    """SimSiam (Chen and He 2021): a predictor and a stop-gradient, no negatives, no target.

    L = D(h(z₁), sg(z₂))/2 + D(h(z₂), sg(z₁))/2.

    h is the predictor MLP d → d/4 → d (BN and ReLU between), sg the stop-gradient. The paper
    shows that without the stop-gradient (``stop_gradient: false``) the loss reaches its
    minimum −1 at once by collapse, and that without the predictor (``predictor: false``)
    training collapses as well. Aligned views give −1:

    >>> import torch
    >>> from torch import nn
    >>> loss = SimSiam(predictor=False)
    >>> float(loss(nn.Identity(), [torch.eye(3), torch.eye(3)]).loss)
    -1.0
    """

    views = 2

    def __init__(
        self,
        stop_gradient: bool = True,
        predictor: bool = True,
        predictor_hidden: PositiveInt | None = None,
    ) -> None:
        super().__init__()
        self.stop_gradient, self.use_predictor = stop_gradient, predictor
        self.predictor_hidden = predictor_hidden
        self.predictor: nn.Module | None = None if predictor else nn.Identity()

    def setup(self, encoder: nn.Module, dim: int, batch_size: int, n: int) -> None:
        if self.use_predictor:  # the paper's bottleneck: 2048 → 512 → 2048
            self.predictor = mlp_head(dim, [self.predictor_hidden or max(dim // 4, 1), dim])

    def forward(self, encoder: nn.Module, views: list[torch.Tensor]) -> Output:
        v1, v2 = two_views(views, "simsiam")
        if self.predictor is None:
            raise RuntimeError("simsiam: call setup(encoder, dim, batch_size, n) first")
        z1, z2 = encoder(v1), encoder(v2)  # (N, d) each
        p1, p2 = self.predictor(z1), self.predictor(z2)
        t1, t2 = (z1.detach(), z2.detach()) if self.stop_gradient else (z1, z2)
        loss = negative_cosine(p1, t2) / 2 + negative_cosine(p2, t1) / 2
        return Output(loss=loss, z=z1, z_pos=z2)
