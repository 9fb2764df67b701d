"""``infonce_self``: the article's demo 2, InfoNCE with each sample as its own positive."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .. import collectives, metrics
from ..registry import PositiveFloat
from .base import OBJECTIVES, Objective, Output


def infonce_self_loss(z: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Cross-entropy of the raw dot-product similarities ``z @ z.T`` (N, N) against ``arange(N)``.

    There is no second view and no normalisation: the positive of z_i is z_i itself, so the loss
    falls simply by growing ‖z_i‖ relative to the off-diagonal dot products.

    On several ranks z is this rank's n rows: they are the anchors, the gathered batch (N, d)
    the candidates, and row i's positive is column offset + i; the mean over the rank's anchors
    averages over the ranks to the mean over all N (`collectives`).
    """
    sim = z @ collectives.gather(z).T  # (n, N)
    if temperature != 1.0:
        sim = sim / temperature
    labels = torch.arange(z.size(0), device=z.device) + collectives.offset(z.size(0))
    return F.cross_entropy(sim, labels)


@OBJECTIVES.register("infonce_self")
class InfoNCESelf(Objective):
    """InfoNCE exactly as the article's demo 2 writes it: ``CrossEntropy(z @ z.T, arange(N))``.

    Each embedding is its own positive and the similarities are unnormalised dot products, so
    the loss is minimised by inflating norms rather than by learning invariances. The optional
    temperature divides the similarities (1 reproduces the article). Proper two-view InfoNCE
    is ``infonce``.

    >>> import torch
    >>> from torch import nn
    >>> round(float(InfoNCESelf()(nn.Identity(), [torch.eye(3) * 10]).loss), 6)
    0.0
    """

    def __init__(self, temperature: PositiveFloat = 1.0) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(self, encoder: nn.Module, views: list[torch.Tensor]) -> Output:
        z = encoder(views[0])  # (N, d)
        return Output(loss=infonce_self_loss(z, self.temperature), z=z)

    def forces(self, z: torch.Tensor, z_pos: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """The raw embeddings against themselves, each its own positive (keys held fixed)."""
        positive = torch.arange(z.shape[0], device=z.device)
        return metrics.contrastive_forces(z, z, positive, self.temperature)
