"""What every objective is: a module that turns views into a loss and the embeddings to measure."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..registry import Registry

OBJECTIVES = Registry("loss")


@dataclass
class Output:
    """One step's result.

    ``z`` (N, d) is what the metrics are computed on (the first view's embeddings);
    ``z_pos`` (N, d) its positives for two-view objectives; ``parts`` named loss terms to log.
    """

    loss: torch.Tensor
    z: torch.Tensor
    z_pos: torch.Tensor | None = None
    parts: dict[str, torch.Tensor] = field(default_factory=dict)


class Objective(nn.Module):
    """Base class. ``views`` is how many views of each batch ``forward`` needs."""

    views: int = 1

    def forward(self, encoder: nn.Module, views: list[torch.Tensor]) -> Output:
        raise NotImplementedError

    def after_step(self, encoder: nn.Module, step: int, total_steps: int) -> None:
        """Called after each optimizer step (EMA targets, queues); nothing by default."""
