"""``alignment``: pull the two views of each sample together and nothing else (pure attraction)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import PositiveFloat
from .base import OBJECTIVES, Objective, Output, two_views


def alignment_loss(z1: torch.Tensor, z2: torch.Tensor, alpha: float = 2.0) -> torch.Tensor:
    """E ‖u − u⁺‖₂^α over positive pairs of unit-normalised rows u of z1, u⁺ of z2."""
    if z1.shape != z2.shape:
        raise ValueError(f"z1 and z2 must have one shape, got {tuple(z1.shape)}, {tuple(z2.shape)}")
    diff = F.normalize(z1, dim=1) - F.normalize(z2, dim=1)  # (N, d)
    return diff.pow(2).sum(1).pow(alpha / 2).mean()


@OBJECTIVES.register("alignment")
class Alignment(Objective):
    """Pull the two views of each sample together and nothing else (collapses by design).

    The alignment term of Wang and Isola (2020) alone: L = E ‖u − u⁺‖₂^α, α = 2.

    Nothing pushes different samples apart, so mapping every input to one point is a global
    minimum (L = 0): training drifts to complete collapse, as the article's argument predicts
    for attraction without repulsion. Identical views give 0, orthogonal ones 2^(α/2):

    >>> import torch
    >>> from torch import nn
    >>> float(Alignment()(nn.Identity(), [torch.eye(3), torch.eye(3).roll(1, 1)]).loss)
    2.0
    """

    views = 2

    def __init__(self, alpha: PositiveFloat = 2.0) -> None:
        super().__init__()
        self.alpha = alpha

    def forward(self, encoder: nn.Module, views: list[torch.Tensor]) -> Output:
        v1, v2 = two_views(views, "alignment")
        z1, z2 = encoder(v1), encoder(v2)  # (N, d) each
        return Output(loss=alignment_loss(z1, z2, self.alpha), z=z1, z_pos=z2)
