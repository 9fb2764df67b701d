"""Optimizers by YAML name; each takes torch's own arguments and defaults."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from .registry import NonNegativeFloat, PositiveFloat, Registry

OPTIMIZERS = Registry("optimizer", injected=("params",))

Params = Iterable[nn.Parameter]


@OPTIMIZERS.register("sgd")
def sgd(
    params: Params,
    lr: PositiveFloat = 1e-3,
    momentum: NonNegativeFloat = 0.0,
    dampening: float = 0.0,
    weight_decay: NonNegativeFloat = 0.0,
    nesterov: bool = False,
) -> torch.optim.Optimizer:
    """Stochastic gradient descent (torch.optim.SGD), optionally with (Nesterov) momentum."""
    return torch.optim.SGD(
        params,
        lr=lr,
        momentum=momentum,
        dampening=dampening,
        weight_decay=weight_decay,
        nesterov=nesterov,
    )


@OPTIMIZERS.register("adam")
def adam(
    params: Params,
    lr: PositiveFloat = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: PositiveFloat = 1e-8,
    weight_decay: NonNegativeFloat = 0.0,
    amsgrad: bool = False,
) -> torch.optim.Optimizer:
    """Adam (torch.optim.Adam) with torch's defaults."""
    return torch.optim.Adam(
        params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad
    )


@OPTIMIZERS.register("adamw")
def adamw(
    params: Params,
    lr: PositiveFloat = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: PositiveFloat = 1e-8,
    weight_decay: NonNegativeFloat = 1e-2,
    amsgrad: bool = False,
) -> torch.optim.Optimizer:
    """AdamW (torch.optim.AdamW): Adam with decoupled weight decay."""
    return torch.optim.AdamW(
        params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad
    )
