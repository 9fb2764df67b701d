"""Encoders and heads: the networks whose embeddings are measured. Each registers its YAML name.

Every encoder takes the data's per-sample shape (``in_shape``: (dim,) or (C, H, W)) from the
runner and may end in a ``projector`` head, whose output is then the embedding.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from .registry import PositiveInt, Registry

ENCODERS = Registry("encoder", injected=("in_shape",))

Activation = Literal["relu", "gelu", "tanh", "silu", "identity"]
# true: batch norm, synchronised over the ranks of a distributed run (the whole run's batch
# norms: encoder, projector, predictors, targets); per_rank: each rank's own statistics.
BatchNorm = Literal[True, False, "per_rank"]
_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "silu": nn.SiLU,
    "identity": nn.Identity,
}


def mlp_head(
    in_dim: int,
    sizes: list[int],
    activation: Activation = "relu",
    batch_norm: bool = True,
    bias: bool = True,
) -> nn.Sequential:
    """Linear layers to each size in turn, with (batch norm and) an activation between them but
    not after the last: the shape of the mlp encoder, projectors and predictors alike."""
    layers: list[nn.Module] = []
    width = in_dim
    for i, size in enumerate(sizes):
        layers.append(nn.Linear(width, size, bias=bias))
        if i < len(sizes) - 1:
            if batch_norm:
                layers.append(nn.BatchNorm1d(size))
            layers.append(_ACTIVATIONS[activation]())
        width = size
    return nn.Sequential(*layers)


def _finish(body: nn.Module, flatten: bool, out: int, projector: list[int] | None) -> nn.Module:
    """Flatten images in front of a vector encoder, append the projector when there is one."""
    parts = [nn.Flatten()] if flatten else []
    parts.append(body)
    if projector:
        parts.append(mlp_head(out, projector))
    # A bare module keeps the article's demos exactly nn.Linear(32, 128).
    return parts[0] if len(parts) == 1 else nn.Sequential(*parts)


@ENCODERS.register("linear")
def linear(
    in_shape: tuple[int, ...],
    out_dim: PositiveInt = 128,
    bias: bool = True,
    projector: list[PositiveInt] | None = None,
) -> nn.Module:
    """One linear map x -> Wx + b (the article's nn.Linear(32, 128)), then the projector."""
    body = nn.Linear(math.prod(in_shape), out_dim, bias=bias)
    return _finish(body, len(in_shape) > 1, out_dim, projector)


@ENCODERS.register("mlp")
def mlp(
    in_shape: tuple[int, ...],
    hidden: list[PositiveInt] = [256, 256],  # noqa: B006 - read only, shown as the default
    out_dim: PositiveInt = 128,
    activation: Activation = "relu",
    batch_norm: BatchNorm = False,
    bias: bool = True,
    projector: list[PositiveInt] | None = None,
) -> nn.Module:
    """Linear layers of the given hidden sizes with an activation (and batch norm) between."""
    body = mlp_head(math.prod(in_shape), [*hidden, out_dim], activation, bool(batch_norm), bias)
    return _finish(body, len(in_shape) > 1, out_dim, projector)


@ENCODERS.register("cnn")
def cnn(
    in_shape: tuple[int, ...],
    channels: list[PositiveInt] = [32, 64],  # noqa: B006 - read only, shown as the default
    out_dim: PositiveInt = 128,
    activation: Activation = "relu",
    batch_norm: BatchNorm = True,
    projector: list[PositiveInt] | None = None,
) -> nn.Module:
    """A small conv net for (C, H, W) images such as digits, then the projector.

    3×3 convolutions (the first at stride 1, the rest at stride 2, each with batch norm and the
    activation), global average pooling and a linear map to ``out_dim``."""
    if len(in_shape) != 3:
        raise ValueError(
            f"cnn needs image data (C, H, W); this data gives vectors of shape {in_shape} "
            "(use linear or mlp, or give data.image_shape)"
        )
    layers: list[nn.Module] = []
    width = in_shape[0]
    for i, c in enumerate(channels):
        layers.append(nn.Conv2d(width, c, 3, stride=1 if i == 0 else 2, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(c))
        layers.append(_ACTIVATIONS[activation]())
        width = c
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, out_dim)]
    return _finish(nn.Sequential(*layers), False, out_dim, projector)


@torch.no_grad()
def output_dim(encoder: nn.Module, in_shape: tuple[int, ...]) -> int:
    """The embedding dimension, from one forward pass of two zero samples in eval mode (no
    batch-norm statistics move, no random numbers are drawn)."""
    training = encoder.training
    encoder.eval()
    try:
        device = next(encoder.parameters(), torch.empty(0)).device
        return int(encoder(torch.zeros(2, *in_shape, device=device)).shape[-1])
    finally:
        encoder.train(training)


@torch.no_grad()
def embed(encoder: nn.Module, x: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """The embeddings (n, d) of ``x`` in eval mode, ``chunk`` samples at a time, on the encoder's
    device; the encoder's train/eval mode is restored."""
    training = encoder.training
    encoder.eval()
    try:
        device = next(encoder.parameters(), torch.empty(0)).device
        return torch.cat([encoder(part.to(device)) for part in x.split(chunk)])
    finally:
        encoder.train(training)
