"""Datasets: what a run trains on, with an optional held-out labelled split for kNN accuracy.

Each dataset registers its YAML name in DATASETS.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
from annotated_types import Ge, Lt

from .arrays import load_labels, read_array
from .errors import ConfigError
from .registry import PositiveFloat, PositiveInt, Registry

DATASETS = Registry("dataset")

Fraction = Annotated[float, Ge(0), Lt(1)]


@dataclass
class Data:
    """Materialised data: training features (n, *shape) and, when the data has them, labels (n,);
    ``x_test``/``labels_test`` are the held-out split that kNN accuracy is measured on;
    ``pairs`` (M, *shape) twice, held-out samples and their partners, the retrieval check of
    recall_at_1 (text data)."""

    x: torch.Tensor
    labels: torch.Tensor | None = None
    x_test: torch.Tensor | None = None
    labels_test: torch.Tensor | None = None
    pairs: tuple[torch.Tensor, torch.Tensor] | None = None


class Dataset:
    """A dataset knows its shape before it draws anything, so the encoder can be built first.

    ``n`` counts the training samples (the held-out split excluded); ``dim`` is the number of
    features per sample; ``image_shape`` is (C, H, W) for images, whose samples are stored as
    (C, H, W) tensors, and None for feature vectors.
    """

    n: int
    dim: int
    image_shape: tuple[int, int, int] | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        """One sample's shape: (C, H, W) for images, (dim,) for vectors."""
        return self.image_shape or (self.dim,)

    def materialize(self) -> Data:
        raise NotImplementedError


def split(x: torch.Tensor, labels: torch.Tensor, test_fraction: float, seed: int) -> Data:
    """A seeded random split of (x, labels) into training and held-out parts."""
    n = x.shape[0]
    n_test = round(n * test_fraction)
    if n_test == 0:
        return Data(x, labels)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    train, test = perm[n_test:], perm[:n_test]
    return Data(x[train], labels[train], x[test], labels[test])


def _check_split(n: int, test_fraction: float) -> int:
    """The number of training samples; a ValueError when the split leaves too little."""
    n_test = round(n * test_fraction)
    if test_fraction > 0 and (n_test < 1 or n - n_test < 2):
        raise ValueError(f"test_fraction {test_fraction} of {n} samples leaves no usable split")
    return n - n_test


@DATASETS.register("gaussian")
class Gaussian(Dataset):
    """Fixed samples x ~ N(0, I), drawn once from the run's seed (the article's data)."""

    def __init__(self, n: PositiveInt = 512, dim: PositiveInt = 32) -> None:
        self.n, self.dim = n, dim

    def materialize(self) -> Data:
        # Global RNG on purpose: after torch.manual_seed(seed) and the encoder's init this is
        # exactly the article's `x = torch.randn(512, 32)`.
        return Data(torch.randn(self.n, self.dim))


@DATASETS.register("clusters")
class Clusters(Dataset):
    """Labelled Gaussian clusters on a random ``intrinsic_dim``-dimensional subspace of ``dim``.

    Class means ~ N(0, separation² I) and samples = mean + N(0, I) in the subspace, then rotated
    into the ambient space by a random orthonormal map and given isotropic ``noise``. Drawn from
    ``seed`` (not the run's seed), so a seed sweep trains on the same data.
    """

    def __init__(
        self,
        n: PositiveInt = 2048,
        dim: PositiveInt = 32,
        intrinsic_dim: PositiveInt = 8,
        classes: PositiveInt = 10,
        separation: PositiveFloat = 3.0,
        noise: Annotated[float, Ge(0)] = 0.0,
        test_fraction: Fraction = 0.2,
        seed: int = 0,
    ) -> None:
        if intrinsic_dim > dim:
            raise ValueError(f"intrinsic_dim {intrinsic_dim} must be <= dim {dim}")
        if classes > n:
            raise ValueError(f"{classes} classes need at least {classes} samples, got n={n}")
        self.total, self.dim, self.k, self.classes = n, dim, intrinsic_dim, classes
        self.separation, self.noise, self.test_fraction, self.seed = (
            separation,
            noise,
            test_fraction,
            seed,
        )
        self.n = _check_split(n, test_fraction)

    def materialize(self) -> Data:
        g = torch.Generator().manual_seed(self.seed)
        means = torch.randn(self.classes, self.k, generator=g) * self.separation  # (classes, k)
        labels = torch.randperm(self.total, generator=g) % self.classes  # balanced, shuffled
        latent = means[labels] + torch.randn(self.total, self.k, generator=g)  # (n, k)
        basis, _ = torch.linalg.qr(torch.randn(self.dim, self.k, generator=g))  # (dim, k)
        x = latent @ basis.T + self.noise * torch.randn(self.total, self.dim, generator=g)
        return split(x, labels, self.test_fraction, self.seed)


@DATASETS.register("digits")
class Digits(Dataset):
    """scikit-learn's handwritten digits: 1,797 labelled 8×8 images (1, 8, 8), scaled to [0, 1].

    Needs scikit-learn (``pip install 'collapse-cli[digits]'``); the split is drawn from ``seed``.
    """

    image_shape = (1, 8, 8)

    def __init__(self, test_fraction: Fraction = 0.2, seed: int = 0) -> None:
        try:
            from sklearn.datasets import load_digits
        except ImportError:
            raise ConfigError(
                "data: digits needs scikit-learn: pip install 'collapse-cli[digits]'"
            ) from None
        self._load = load_digits
        self.test_fraction, self.seed, self.dim = test_fraction, seed, 64
        self.n = _check_split(1797, test_fraction)

    def materialize(self) -> Data:
        images, target = self._load(return_X_y=True)  # (1797, 64) in 0..16, (1797,)
        x = torch.as_tensor(images, dtype=torch.float32).view(-1, 1, 8, 8) / 16.0
        return split(x, torch.as_tensor(target, dtype=torch.long), self.test_fraction, self.seed)


@DATASETS.register("file")
class File(Dataset):
    """Your features from a .npy, .pt/.pth, .csv/.tsv or .safetensors file, optional labels.

    Rows are samples: (n, dim) vectors, (n, H, W) or (n, C, H, W) images, or vectors reshaped
    to ``image_shape`` [C, H, W]. Labels (integers or strings, one per row) enable the held-out
    split (``test_fraction``, default 0.2 with labels) and kNN accuracy.
    """

    def __init__(
        self,
        path: str,
        labels: str | None = None,
        image_shape: list[PositiveInt] | None = None,
        test_fraction: Fraction | None = None,
        seed: int = 0,
    ) -> None:
        raw = read_array(Path(path), "path")
        if isinstance(raw, np.ndarray):
            if raw.dtype.kind not in "biuf":
                raise ValueError(f"path: {path} holds {raw.dtype} values, not numbers")
            raw = torch.from_numpy(np.ascontiguousarray(raw))
        x = raw.float()
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"path: {path} holds NaN or infinite values")
        if x.ndim == 3:  # (n, H, W): one channel
            x = x.unsqueeze(1)
        if image_shape is not None:
            if len(image_shape) != 3 or x[0].numel() != math.prod(image_shape):
                raise ValueError(
                    f"image_shape {image_shape} must be [C, H, W] with C·H·W = "
                    f"{x[0].numel()} (the features per sample in {path})"
                )
            x = x.reshape(-1, *image_shape)
        if x.ndim not in (2, 4) or x.shape[0] < 2:
            raise ValueError(
                f"path: {path} has shape {tuple(x.shape)}; expected (n, dim), (n, H, W) or "
                "(n, C, H, W) with n >= 2"
            )
        y = load_labels(labels, x.shape[0]) if labels else None
        if test_fraction is None:
            test_fraction = 0.2 if y is not None else 0.0
        if test_fraction > 0 and y is None:
            raise ValueError(
                "test_fraction: a held-out split is only used for kNN accuracy, which needs "
                "labels; give data.labels or set data.test_fraction=0"
            )
        self.image_shape = tuple(x.shape[1:]) if x.ndim == 4 else None  # type: ignore[assignment]
        self.dim = x[0].numel()
        self.n = _check_split(x.shape[0], test_fraction)
        self._x, self._y, self.test_fraction, self.seed = x, y, test_fraction, seed

    def materialize(self) -> Data:
        if self._y is None:
            return Data(self._x)
        return split(self._x, self._y, self.test_fraction, self.seed)
