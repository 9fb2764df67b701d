"""Encoders and heads: the networks whose embeddings are measured. Each registers its YAML name.

Every encoder takes the data's per-sample shape (``in_shape``: (dim,) or (C, H, W)) from the
runner and may end in a ``projector`` head, whose output is then the embedding.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from .registry import NonNegativeFloat, PositiveInt, Registry

ENCODERS = Registry("encoder", injected=("in_shape",))

Activation = Literal["relu", "gelu", "tanh", "silu", "identity"]
# true: batch norm, synchronised over the ranks of a distributed run (the whole run's batch
# norms: encoder, projector, predictors, targets); per_rank: each rank's own statistics.
BatchNorm = Literal[True, False, "per_rank"]
# default: torch's own initialisation; near_collapse: the first embeddings are c + eps·δ_i.
Init = Literal["default", "near_collapse"]
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


def check_init(init: str, eps: float | None) -> None:
    """The near-collapse keys make sense together, or a ValueError naming the key."""
    if init == "near_collapse" and eps is None:
        raise ValueError("eps: init: near_collapse needs eps (>= 0; 0 is exact collapse)")
    if init == "default" and eps is not None:
        raise ValueError(f"eps: {eps!r} is only used with init: near_collapse")


@torch.no_grad()
def start_near_collapse(module: nn.Module, eps: float) -> nn.Module:
    """Make the first embeddings c + eps·δ_i: the last linear layer's weight W₀ (torch's default
    initialisation, drawn as in a default run) scaled by ``eps``, its bias set to c.

    Its output for the hidden features h_i (the input itself for ``linear``) is then
    z_i = eps·W₀h_i + c: c (d,) is shared, a standard normal vector drawn from the run's seed
    after the weights; δ_i = W₀h_i is sample i's own perturbation, the default layer's output
    without its bias, so eps = 1 spreads as a default encoder does around c and eps = 0 is exact
    collapse (every input, every view, maps to c). The layers before it keep their default
    initialisation; at eps = 0 they get no gradient until W moves (∂L/∂h_i = Wᵀ ∂L/∂z_i = 0).

    >>> torch.manual_seed(0) and None
    >>> z = start_near_collapse(nn.Linear(4, 3), 0.0)(torch.randn(5, 4))
    >>> bool((z == z[0]).all())
    True
    """
    last = [m for m in module.modules() if isinstance(m, nn.Linear)][-1]
    if last.bias is None:
        raise ValueError("init: near_collapse needs bias: true (the shared vector c is a bias)")
    last.weight.mul_(eps)
    last.bias.copy_(torch.randn(last.out_features))
    return module


def _initialised(module: nn.Module, init: str, eps: float | None) -> nn.Module:
    return start_near_collapse(module, float(eps or 0.0)) if init == "near_collapse" else module


@ENCODERS.register(
    "linear",
    "One linear map x -> Wx + b (the article's nn.Linear(32, 128)), then the projector; "
    "init: near_collapse with eps >= 0 starts the embeddings at c + eps·δ_i (eps 0: collapsed).",
)
def linear(
    in_shape: tuple[int, ...],
    out_dim: PositiveInt = 128,
    bias: bool = True,
    projector: list[PositiveInt] | None = None,
    init: Init = "default",
    eps: NonNegativeFloat | None = None,
) -> nn.Module:
    """One linear map x -> Wx + b (the article's nn.Linear(32, 128)), then the projector;
    init: near_collapse starts the embeddings at c + eps·δ_i (eps = 0: exact collapse).

    ``init: near_collapse`` with ``eps`` ≥ 0 scales the last linear layer's weight by eps and
    sets its bias to a shared random vector c (`start_near_collapse`)."""
    check_init(init, eps)
    body = nn.Linear(math.prod(in_shape), out_dim, bias=bias)
    return _initialised(_finish(body, len(in_shape) > 1, out_dim, projector), init, eps)


@ENCODERS.register(
    "mlp",
    "Linear layers of the given hidden sizes with an activation (and batch norm) between; "
    "init: near_collapse with eps >= 0 starts the embeddings at c + eps·δ_i (eps 0: collapsed).",
)
def mlp(
    in_shape: tuple[int, ...],
    hidden: list[PositiveInt] = [256, 256],  # noqa: B006 - read only, shown as the default
    out_dim: PositiveInt = 128,
    activation: Activation = "relu",
    batch_norm: BatchNorm = False,
    bias: bool = True,
    projector: list[PositiveInt] | None = None,
    init: Init = "default",
    eps: NonNegativeFloat | None = None,
) -> nn.Module:
    """Linear layers of the given hidden sizes with an activation (and batch norm) between;
    init: near_collapse starts the embeddings at c + eps·δ_i (eps = 0: exact collapse).

    ``init: near_collapse`` acts on the last linear layer only, as for ``linear``."""
    check_init(init, eps)
    body = mlp_head(math.prod(in_shape), [*hidden, out_dim], activation, bool(batch_norm), bias)
    return _initialised(_finish(body, len(in_shape) > 1, out_dim, projector), init, eps)


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
