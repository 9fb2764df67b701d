"""Datasets: what a run trains on. Each registers its YAML name in DATASETS."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .registry import PositiveInt, Registry

DATASETS = Registry("dataset")


@dataclass
class Data:
    """Materialised training data: features (n, dim) and, when the data has them, labels (n,)."""

    x: torch.Tensor
    labels: torch.Tensor | None = None


class Dataset:
    """A dataset knows its shape before it draws anything, so the encoder can be built first."""

    n: int
    dim: int

    def materialize(self) -> Data:
        raise NotImplementedError


@DATASETS.register("gaussian")
class Gaussian(Dataset):
    """Fixed samples x ~ N(0, I), drawn once from the run's seed (the article's data)."""

    def __init__(self, n: PositiveInt = 512, dim: PositiveInt = 32) -> None:
        self.n, self.dim = n, dim

    def materialize(self) -> Data:
        # Global RNG on purpose: after torch.manual_seed(seed) and the encoder's init this is
        # exactly the article's `x = torch.randn(512, 32)`.
        return Data(torch.randn(self.n, self.dim))
