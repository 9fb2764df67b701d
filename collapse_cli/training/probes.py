"""The log-step measurements that have inputs of their own: LiDAR over a fixed, seeded set of
augmented views (``log.lidar``) and the linear probe on the labelled split (``log.probe``).

Like kNN they are measured on rank 0, in eval mode, before the step's forward pass, and they
draw only from generators of their own: the training's batch order and views never move.
"""

from __future__ import annotations

import torch

from .. import metrics
from ..config import RunConfig
from ..data import Data
from ..encoders import embed
from ..errors import ConfigError
from ..views import augment

LIDAR_SEED_OFFSET = 104729  # LiDAR's probe set draws from run seed + this (views: + 7919)


def check_probes(cfg: RunConfig, data: Data, views_needed: int) -> None:
    """A ConfigError naming the key when ``log.lidar`` or ``log.probe`` cannot be measured on
    this run: LiDAR needs augmented views (a one-view loss on the raw batch has none, and views
    of text are the same samples) and at most as many samples as the data has; the probe needs
    labelled data with a held-out split."""
    where = f"{cfg.source}: log"
    lidar = cfg.log.lidar
    if lidar is not None:
        if cfg.views.count is None and views_needed == 1:
            raise ConfigError(
                f"{where}.lidar: loss {cfg.loss.name} trains on the raw batch, so the run has no "
                "augmented views to measure LiDAR over; set views.count=1 to train on views, "
                "or remove log.lidar"
            )
        if not data.x.is_floating_point():
            raise ConfigError(
                f"{where}.lidar: data {cfg.data.name} is text (token ids): its views are the "
                "same samples, so LiDAR has no within-sample spread to measure; remove log.lidar"
            )
        if lidar.samples > data.x.shape[0]:
            raise ConfigError(
                f"{where}.lidar.samples: {lidar.samples} is larger than the data "
                f"({data.x.shape[0]} samples)"
            )
    if cfg.log.probe is not None and (data.labels is None or data.labels_test is None):
        raise ConfigError(
            f"{where}.probe: {cfg.log.probe} needs labelled data with a held-out split, and data "
            f"{cfg.data.name} has none; remove log.probe"
        )


class Probes:
    """What ``log.lidar`` and ``log.probe`` measure at a log step; calling it with the encoder
    returns their values by catalogue key (empty when both are off).

    LiDAR's probe set is drawn once, here: ``samples`` rows of the training data (a seeded
    permutation) and ``views`` augmented views of each (the run's views block), from a
    generator seeded with run seed + LIDAR_SEED_OFFSET, so every log step (and a resumed run)
    measures the same inputs and only the model changes.
    """

    def __init__(self, cfg: RunConfig, data: Data, device: torch.device) -> None:
        self.data, self.probe = data, cfg.log.probe
        self.lidar_x: torch.Tensor | None = None  # (n q, *shape): sample i's views in a block
        self.lidar_shape = (0, 0)
        if cfg.log.lidar is not None:
            n, q = cfg.log.lidar.samples, cfg.log.lidar.views
            seed = cfg.seed + LIDAR_SEED_OFFSET
            rows = torch.randperm(data.x.shape[0], generator=torch.Generator().manual_seed(seed))
            picked = data.x[rows[:n].sort().values].to(device)  # (n, *shape)
            views = torch.Generator(device=device).manual_seed(seed)
            self.lidar_x = augment(picked.repeat_interleave(q, 0), cfg.views, views)
            self.lidar_shape = (n, q)

    @torch.no_grad()
    def __call__(self, encoder: torch.nn.Module) -> dict[str, float]:
        values: dict[str, float] = {}
        if self.lidar_x is not None:
            z = embed(encoder, self.lidar_x)  # (n q, d)
            values["lidar"] = metrics.lidar(z.view(*self.lidar_shape, z.shape[-1]))
        if self.probe == "linear":
            d = self.data
            assert d.labels is not None and d.x_test is not None and d.labels_test is not None
            train_z, test_z = embed(encoder, d.x), embed(encoder, d.x_test)
            values["probe_acc"] = metrics.linear_probe_accuracy(
                train_z, d.labels, test_z, d.labels_test
            )
        return values
