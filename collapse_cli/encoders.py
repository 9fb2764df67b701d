"""Encoders: the networks whose embeddings are measured. Each registers its YAML name."""

from __future__ import annotations

from typing import Literal

from torch import nn

from .registry import PositiveInt, Registry

ENCODERS = Registry("encoder", injected=("in_dim",))

Activation = Literal["relu", "gelu", "tanh", "silu", "identity"]
_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "silu": nn.SiLU,
    "identity": nn.Identity,
}


@ENCODERS.register("linear")
def linear(in_dim: int, out_dim: PositiveInt = 128, bias: bool = True) -> nn.Module:
    """One linear map x -> Wx + b (the article's nn.Linear(32, 128))."""
    return nn.Linear(in_dim, out_dim, bias=bias)


@ENCODERS.register("mlp")
def mlp(
    in_dim: int,
    hidden: list[PositiveInt] = [256, 256],  # noqa: B006 - read only, shown as the default
    out_dim: PositiveInt = 128,
    activation: Activation = "relu",
    batch_norm: bool = False,
    bias: bool = True,
) -> nn.Module:
    """Linear layers of the given hidden sizes with an activation (and batch norm) between."""
    layers: list[nn.Module] = []
    width = in_dim
    for h in hidden:
        layers.append(nn.Linear(width, h, bias=bias))
        if batch_norm:
            layers.append(nn.BatchNorm1d(h))
        layers.append(_ACTIVATIONS[activation]())
        width = h
    layers.append(nn.Linear(width, out_dim, bias=bias))
    return nn.Sequential(*layers)
