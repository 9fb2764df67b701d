"""What every objective is: a module that turns views into a loss and the embeddings to measure,
plus the helpers its EMA targets share."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Annotated

import torch
from annotated_types import Ge, Le
from torch import nn

from ..registry import Registry

OBJECTIVES = Registry("loss")

UnitInterval = Annotated[float, Ge(0), Le(1)]  # momenta: 0 copies the online network, 1 freezes


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

    def setup(self, encoder: nn.Module, dim: int, batch_size: int, n: int) -> None:
        """Called once by ``train.build`` before the optimizer is made, with the encoder, its
        embedding dimension, the batch size and the number of training samples: build heads
        sized by ``dim``, copy the encoder for EMA targets, and raise ValueError (naming the
        ``loss.`` key) when the objective does not fit the run. Nothing by default."""

    def forward(self, encoder: nn.Module, views: list[torch.Tensor]) -> Output:
        raise NotImplementedError

    def after_step(self, encoder: nn.Module, step: int, total_steps: int) -> None:
        """Called after each optimizer step (EMA targets, queues); nothing by default."""

    def forces(self, z: torch.Tensor, z_pos: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """Diagnostics of a log step from its (gathered, detached) embeddings, logged beside the
        metrics: the InfoNCE objectives give the attraction and repulsion terms of their
        gradient (`metrics.contrastive_forces`). Called at log steps only; nothing by default."""
        return {}


def frozen_copy(module: nn.Module) -> nn.Module:
    """A deep copy that receives no gradient: the start of an EMA target or momentum encoder."""
    target = copy.deepcopy(module)
    for p in target.parameters():
        p.requires_grad_(False)
    return target


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """θ_target ← m·θ_target + (1 − m)·θ_online for every parameter; buffers (batch-norm
    statistics) are copied. m = 0 makes the target an exact copy, m = 1 freezes it."""
    for t, o in zip(target.parameters(), online.parameters(), strict=True):
        t.lerp_(o, 1.0 - momentum)
    for t, o in zip(target.buffers(), online.buffers(), strict=True):
        t.copy_(o)


def cosine_momentum(base: float, step: int, total_steps: int) -> float:
    """BYOL's schedule m_k = 1 − (1 − m_base)·(cos(πk/K) + 1)/2 for the update after 0-based
    step k of K: m_base at the first update, rising to 1 at the end (Grill et al. 2020)."""
    return 1.0 - (1.0 - base) * (math.cos(math.pi * step / total_steps) + 1.0) / 2.0


def off_diagonal_entries(m: torch.Tensor) -> torch.Tensor:
    """The d(d − 1) entries m_ij, i ≠ j, of a (d, d) matrix as a (d − 1, d) view, without
    forming Σ_ij m_ij² − Σ_i m_ii², which cancels catastrophically near a diagonal matrix
    (percent-level errors in float32, exactly 0 under bfloat16 autocast).

    Row-major, the first d² − 1 entries fall into d − 1 runs of d + 1, each run opening on a
    diagonal entry m_kk followed by the d entries before m_{k+1,k+1}, all off the diagonal.
    """
    d = m.shape[0]
    return m.flatten()[:-1].view(d - 1, d + 1)[:, 1:]  # (d − 1, d)


def two_views(views: list[torch.Tensor], name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The two views of a two-view objective, or a ValueError that says what came instead."""
    if len(views) != 2:
        raise ValueError(f"{name} needs 2 views of each batch, got {len(views)}")
    if views[0].shape != views[1].shape:
        raise ValueError(
            f"{name}: the views must have one shape, got {tuple(views[0].shape)} and "
            f"{tuple(views[1].shape)}"
        )
    return views[0], views[1]
