"""Augmented views: ``count`` random views of each sample, the positive pairs of two-view losses.

Views are drawn with torch operations on the run's device from their own ``torch.Generator``,
never the global RNG, so the article's single-view demos stay bit-identical. torch is imported
inside the functions: config.py imports ViewsConfig and must not import torch.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, field_validator

if TYPE_CHECKING:
    import torch

VIEWS_SEED_OFFSET = 7919  # views.seed: null draws from run seed + this, apart from the batch order


class ViewsConfig(BaseModel):
    """The ``views`` block. Vector and image data get noise, masking and scaling; image data
    (N, C, H, W) also get a random resized crop, shift, flip and cutout (ignored for vectors)."""

    model_config = ConfigDict(extra="forbid")

    count: int | None = Field(
        None,
        ge=1,
        description="views per sample; null: what the loss takes (the raw batch "
        "for one-view losses)",
    )
    seed: int | None = Field(None, description="null: the run's seed + 7919")
    noise: float = Field(0.1, ge=0, description="std of additive Gaussian noise (data units)")
    noise_features: int | None = Field(
        None,
        ge=1,
        description="vectors: the noise goes to the last N features only (Jing et al. 2022's "
        "augmentation covariance block_diag(0, noise² I)); null: every feature",
    )
    mask: float = Field(0.1, ge=0, lt=1, description="probability that a feature is zeroed")
    scale: tuple[float, float] = Field(
        (0.8, 1.2), description="range of a per-sample multiplicative factor"
    )
    crop: tuple[float, float] | None = Field(
        (0.8, 1.0), description="images: resized crop, range of the area kept; null: none"
    )
    shift: int = Field(0, ge=0, description="images: largest translation, in pixels")
    flip: float = Field(0.0, ge=0, le=1, description="images: probability of a horizontal flip")
    cutout: float = Field(
        0.0, ge=0, lt=1, description="images: side of one zeroed square, a fraction of H and W"
    )

    def kept_defaults(self) -> list[str]:
        """The augmentations left on at their defaults when a views block sets only some keys:
        ``views: {noise: 0.1}`` keeps mask, scale and crop as well. Empty when no block was
        given (the defaults are then the documented setup) or when none is left on."""
        given = self.model_fields_set
        if not given:
            return []
        off = {"noise": 0.0, "mask": 0.0, "scale": (1.0, 1.0), "crop": None, "shift": 0}
        off |= {"flip": 0.0, "cutout": 0.0}
        return [
            f"{key}={list(value) if isinstance(value, tuple) else value}"
            for key, value in ((k, getattr(self, k)) for k in off)
            if key not in given and value != off[key]
        ]

    @field_validator("scale")
    @classmethod
    def _scale(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0 < v[0] <= v[1]:
            raise ValueError(f"must be [low, high] with 0 < low <= high, got {list(v)}")
        return v

    @field_validator("crop")
    @classmethod
    def _crop(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is not None and not 0 < v[0] <= v[1] <= 1:
            raise ValueError(f"must be [low, high] with 0 < low <= high <= 1, got {list(v)}")
        return v


def check_fits_data(cfg: ViewsConfig, shape: tuple[int, ...]) -> None:
    """A ValueError when the views block asks for something this data's samples cannot take:
    ``noise_features`` needs feature vectors with at least that many features."""
    k = cfg.noise_features
    if k is None:
        return
    if len(shape) != 1:
        raise ValueError(
            f"views.noise_features: applies to feature vectors; this data's samples have shape "
            f"{list(shape)} (remove it, or use views.noise on every feature)"
        )
    if k > shape[0]:
        raise ValueError(
            f"views.noise_features: {k} is more than the data's {shape[0]} features "
            f"(give 1 to {shape[0]}, or null for every feature)"
        )


def view_count(cfg: ViewsConfig, needed: int, loss: str) -> int:
    """How many views a step makes; a ValueError when the views block does not fit the loss."""
    count = needed if cfg.count is None else cfg.count
    if count != needed and needed > 1:
        raise ValueError(
            f"views.count: loss {loss} compares {needed} views of each sample, but views.count "
            f"is {count}; set views.count={needed} (or remove it)"
        )
    if count != needed:
        raise ValueError(
            f"views.count: loss {loss} takes one view of each sample, but views.count is "
            f"{count}; set views.count=1 (or remove it)"
        )
    return count


class ViewMaker:
    """Turns a batch (B, *shape) into a list of ``count`` independently augmented views.

    A one-view loss with ``views.count`` unset gets the raw batch (the article's demos); set
    ``views.count=1`` to train it on one augmented view instead.
    """

    def __init__(
        self,
        cfg: ViewsConfig,
        needed: int,
        seed: int,
        device: torch.device | str = "cpu",
        loss: str = "this loss",
    ) -> None:
        import torch

        self.cfg = cfg
        self.count = view_count(cfg, needed, loss)
        self.raw = cfg.count is None and needed == 1
        seed = cfg.seed if cfg.seed is not None else seed + VIEWS_SEED_OFFSET
        self.generator = torch.Generator(device=device).manual_seed(seed)

    def __call__(self, batch: torch.Tensor) -> list[torch.Tensor]:
        if self.raw:
            return [batch]
        return [augment(batch, self.cfg, self.generator) for _ in range(self.count)]


def augment(x: torch.Tensor, cfg: ViewsConfig, g: torch.Generator) -> torch.Tensor:
    """One random view of every row of x: (B, dim) vectors or (B, C, H, W) images (no gradient
    flows through it). Integer x (text: bytes or token ids) is returned as it is: views of text
    differ only by what the encoder does to them (its dropout, as in SimCSE)."""
    import torch

    x, b = x.detach(), x.shape[0]
    if not x.is_floating_point():  # text as bytes or token ids: the views are the same samples
        return x
    if x.ndim == 4:
        x = _geometric(x, cfg, g)
    lo, hi = cfg.scale
    if hi > lo or lo != 1:
        factor = lo + (hi - lo) * _uniform(g, x, b)  # (B,)
        x = x * factor.view(b, *[1] * (x.ndim - 1))
    if x.ndim == 4 and cfg.cutout > 0:
        x = x * _cutout_keep(x, cfg.cutout, g)
    if cfg.mask > 0:
        x = x * (_uniform(g, x, *x.shape) >= cfg.mask)
    if cfg.noise > 0:
        noise = cfg.noise * torch.randn(x.shape, generator=g, device=x.device, dtype=x.dtype)
        if cfg.noise_features is not None and x.ndim == 2:  # the last k features only
            noise[:, : x.shape[1] - cfg.noise_features] = 0
        x = x + noise
    return x


def _uniform(g: torch.Generator, like: torch.Tensor, *shape: int) -> torch.Tensor:
    import torch

    return torch.rand(shape, generator=g, device=like.device, dtype=like.dtype)


def _geometric(x: torch.Tensor, cfg: ViewsConfig, g: torch.Generator) -> torch.Tensor:
    """Random resized crop, shift and flip as one affine resampling per image (bilinear, zeros
    outside). In affine_grid's coordinates the image spans [-1, 1], so a crop keeping a fraction
    s of the width is a scale of s and may move its centre by up to ±(1 − s)."""
    import torch
    import torch.nn.functional as F

    b, _, h, w = x.shape
    if cfg.crop is None and cfg.shift == 0 and cfg.flip == 0:
        return x
    sx, sy, tx, ty = (x.new_ones(b), x.new_ones(b), x.new_zeros(b), x.new_zeros(b))
    if cfg.crop is not None:
        lo, hi = cfg.crop
        area = lo + (hi - lo) * _uniform(g, x, b)
        ratio = torch.exp((2 * _uniform(g, x, b) - 1) * math.log(4 / 3))  # aspect 3/4 .. 4/3
        sx, sy = (area * ratio).sqrt().clamp(max=1), (area / ratio).sqrt().clamp(max=1)
        tx, ty = (2 * _uniform(g, x, b) - 1) * (1 - sx), (2 * _uniform(g, x, b) - 1) * (1 - sy)
    if cfg.shift > 0:
        step = torch.randint(-cfg.shift, cfg.shift + 1, (2, b), generator=g, device=x.device)
        tx, ty = tx + step[0] * 2 / w, ty + step[1] * 2 / h
    if cfg.flip > 0:
        sx = torch.where(_uniform(g, x, b) < cfg.flip, -sx, sx)
    theta = torch.zeros(b, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = sx, tx, sy, ty
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _cutout_keep(x: torch.Tensor, size: float, g: torch.Generator) -> torch.Tensor:
    """(B, 1, H, W) mask that zeroes one square of side ⌈size·H⌉×⌈size·W⌉ per image, centred
    anywhere in the image (it may be cut by the border)."""
    import torch

    b, _, h, w = x.shape
    sh, sw = math.ceil(size * h), math.ceil(size * w)
    cy = torch.randint(0, h, (b, 1), generator=g, device=x.device) - sh // 2
    cx = torch.randint(0, w, (b, 1), generator=g, device=x.device) - sw // 2
    rows, cols = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
    in_y = (rows >= cy) & (rows < cy + sh)  # (B, H)
    in_x = (cols >= cx) & (cols < cx + sw)  # (B, W)
    return (~(in_y[:, :, None] & in_x[:, None, :])).unsqueeze(1).to(x.dtype)
