"""``variance``: the article's demo 1, minimising the embeddings' variance (pure attraction)."""

from __future__ import annotations

import torch
from torch import nn

from .. import collectives
from .base import OBJECTIVES, Objective, Output


def variance_loss(z: torch.Tensor) -> torch.Tensor:
    """mean_ij (z_ij − mean_i z_ij)²: the article's ``collapse_loss``; z is (N, d)."""
    mean = z.mean(dim=0)
    return ((z - mean) ** 2).mean()


@OBJECTIVES.register("variance")
class Variance(Objective):
    """Minimise the embeddings' variance: its global minimum is complete collapse.

    This is the attraction term alone. Its gradient 2(z_i − μ)/(N d) vanishes only when every
    embedding equals the mean, so training contracts the cloud to a point: every eigenvalue of
    the covariance shrinks together, the largest as fast as the rest.

    >>> import torch
    >>> from torch import nn
    >>> out = Variance()(nn.Identity(), [torch.ones(4, 3)])
    >>> float(out.loss)
    0.0
    """

    def forward(self, encoder: nn.Module, views: list[torch.Tensor]) -> Output:
        z = encoder(views[0])  # (n, d): this rank's share; the variance is the whole batch's
        return Output(loss=variance_loss(collectives.gather(z)), z=z)
