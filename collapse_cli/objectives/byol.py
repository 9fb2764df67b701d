"""``byol``: a predictor on the online network and an EMA target network, no negatives."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..encoders import mlp_head
from ..registry import PositiveInt
from .base import (
    OBJECTIVES,
    Objective,
    Output,
    UnitInterval,
    cosine_momentum,
    ema_update,
    frozen_copy,
    two_views,
)


def byol_loss(p: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """mean_i ‖p̄_i − t̄_i‖² = mean_i (2 − 2 cos(p_i, t_i)) over (N, d) rows (p̄ = p/‖p‖):
    0 for aligned rows, 2 for orthogonal ones."""
    if p.shape != target.shape:
        raise ValueError(
            f"p and target must have one shape, got {tuple(p.shape)}, {tuple(target.shape)}"
        )
    return (2 - 2 * F.cosine_similarity(p, target, dim=1)).mean()


@OBJECTIVES.register("byol")
class BYOL(Objective):
    """BYOL (Grill et al. 2020): a predictor chases an EMA target network, no negatives.

    L = ℓ(q(z₁), t₂) + ℓ(q(z₂), t₁),  ℓ(p, t) = 2 − 2 cos(p, t).

    z = the online encoder's embeddings, q the predictor MLP d → 4096 → d (BN and ReLU
    between), t the target network's embeddings (no gradient). The target is an exponential
    moving average of the encoder, θ_t ← m θ_t + (1 − m) θ, with m rising from ``momentum``
    (0.99) to 1 on a cosine schedule (``momentum_schedule: constant`` keeps it fixed).
    Ablations: ``predictor: false`` collapses (the paper's Table 5b); ``momentum: 0`` makes the
    target the online network itself. Identical views give 0 before the encoder moves:

    >>> import torch
    >>> from torch import nn
    >>> byol, enc = BYOL(predictor=False), nn.Linear(3, 3)
    >>> byol.setup(enc, dim=3, batch_size=4, n=8)
    >>> x = torch.randn(4, 3)
    >>> abs(float(byol(enc, [x, x]).loss.detach())) < 1e-6
    True
    """

    views = 2

    def __init__(
        self,
        predictor: bool = True,
        predictor_hidden: PositiveInt = 4096,
        momentum: UnitInterval = 0.99,
        momentum_schedule: Literal["cosine", "constant"] = "cosine",
    ) -> None:
        super().__init__()
        self.use_predictor, self.predictor_hidden = predictor, predictor_hidden
        self.momentum, self.momentum_schedule = momentum, momentum_schedule
        self.predictor: nn.Module = nn.Identity()
        self.target: nn.Module | None = None

    def setup(self, encoder: nn.Module, dim: int, batch_size: int, n: int) -> None:
        if self.use_predictor:
            self.predictor = mlp_head(dim, [self.predictor_hidden, dim])
        self.target = frozen_copy(encoder)

    def forward(self, encoder: nn.Module, views: list[torch.Tensor]) -> Output:
        v1, v2 = two_views(views, "byol")
        if self.target is None:
            raise RuntimeError("byol: call setup(encoder, dim, batch_size, n) first")
        z1, z2 = encoder(v1), encoder(v2)  # (N, d) each
        p1, p2 = self.predictor(z1), self.predictor(z2)
        with torch.no_grad():
            t1, t2 = self.target(v1), self.target(v2)
        loss = byol_loss(p1, t2) + byol_loss(p2, t1)
        return Output(loss=loss, z=z1, z_pos=z2)

    def after_step(self, encoder: nn.Module, step: int, total_steps: int) -> None:
        assert self.target is not None
        ema_update(self.target, encoder, self.current_momentum(step, total_steps))

    def current_momentum(self, step: int, total_steps: int) -> float:
        if self.momentum_schedule == "constant":
            return self.momentum
        return cosine_momentum(self.momentum, step, total_steps)
