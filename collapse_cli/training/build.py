"""Building one run's parts from a loaded config: the device, the data, the encoder, the
objective and the optimizer, in the article's order."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import RunConfig, load_config, registries, resolved
from ..data import Data
from ..encoders import output_dim
from ..errors import ComponentBug, ConfigError
from ..objectives import Objective
from ..views import check_fits_data, view_count
from ..yamlfile import dump_yaml
from .probes import check_probes
from .taps import measured


@dataclass
class Components:
    data: Data
    encoder: nn.Module
    objective: Objective
    optimizer: torch.optim.Optimizer


def resolve_device(spec: str) -> torch.device:
    """``auto`` takes CUDA when there is one; asking for an absent CUDA device is an error."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device: {spec!r} asked for, but this torch ({torch.__version__}) sees no CUDA "
                "device; use device=cpu or auto"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(
                f"device: {spec!r} asked for, but there are {torch.cuda.device_count()} CUDA "
                "devices"
            )
    return device


def _make(cfg: RunConfig, block: str, *args: Any) -> Any:
    """One component from its block. A ValueError is a value the component refuses (bad
    config); a TypeError raised inside the component's own code is a bug in that code, since
    the config layer has already checked every parameter's type against its signature."""
    spec = getattr(cfg, block)
    try:
        return registries()[block].build(spec.name, *args, **spec.params())
    except (ValueError, ConfigError) as e:  # a ConfigError: a file the component reads
        raise ConfigError(f"{cfg.source}: {block} ({spec.name}): {e}") from None
    except TypeError as e:
        raise ComponentBug(
            f"{block} {spec.name!r} failed in its own code: TypeError: {e} (a bug in the "
            "component, not a problem with the config)"
        ) from e


def build(cfg: RunConfig) -> Components:
    """Seed, then build data, encoder, objective and optimizer in the article's order.

    The encoder is built before the data is drawn, as the article's demos do after
    ``torch.manual_seed(0)``, so a run reproduces them exactly. Everything is built on the CPU.
    """
    if cfg.log.tensorboard:
        from .tensorboard import check_available

        check_available()
    torch.manual_seed(cfg.seed)
    dataset = _make(cfg, "data")
    encoder = _make(cfg, "encoder", dataset.shape)
    data = dataset.materialize()
    objective = _make(cfg, "loss")
    # Before the optimizer collects parameters: check that the views fit the loss, then let the
    # loss build its heads (sized by the embedding) and EMA copies of the encoder.
    batch_size = cfg.train.batch_size
    if batch_size is not None and batch_size > dataset.n:
        raise ConfigError(
            f"{cfg.source}: train.batch_size: {batch_size} is larger than the data "
            f"({dataset.n} samples)"
        )
    try:
        view_count(cfg.views, objective.views, cfg.loss.name)
        check_fits_data(cfg.views, dataset.shape)
        check_probes(cfg, data, objective.views)  # log.lidar and log.probe fit this run
        dim = output_dim(encoder, dataset.shape)
        objective.setup(encoder, dim, batch_size or dataset.n, dataset.n)
    except ValueError as e:
        raise ConfigError(f"{cfg.source}: {e}") from None
    measured(cfg, encoder, objective)  # log.at names only what this run has (ConfigError)
    trainable = [p for m in (encoder, objective) for p in m.parameters() if p.requires_grad]
    optimizer = _make(cfg, "optimizer", trainable)
    return Components(data, encoder, objective, optimizer)


def check(config: str | Path | dict[str, Any], overrides: list[str] | None = None) -> str:
    """What ``collapse validate`` does: load the config, resolve its device and build every
    part (raising what a run would raise), then return the resolved config as YAML."""
    cfg = load_config(config, overrides)
    resolve_device(cfg.device)
    build(cfg)
    return dump_yaml(resolved(cfg))
