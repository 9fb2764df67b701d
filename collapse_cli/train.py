"""Building a run's components and the training loop; talks to a reporter and a run writer."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from . import metrics
from .config import RunConfig, registries
from .data import Data, Dataset
from .errors import ConfigError
from .objectives import Objective
from .runs import RunWriter


class Reporter(Protocol):
    def start(self, steps: int) -> None: ...
    def advance(self, step: int) -> None: ...
    def log(self, row: dict[str, Any], dim: int) -> None: ...


@dataclass
class Result:
    rows: list[dict[str, Any]]  # the logged metric rows
    status: str  # completed | interrupted
    steps_done: int
    wall_time: float
    batch_size: int
    dim: int  # embedding dimension (0 when nothing was logged)


@dataclass
class Components:
    dataset: Dataset
    encoder: nn.Module
    objective: Objective
    optimizer: torch.optim.Optimizer
    data: Data | None  # None when built only to validate


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


def build(cfg: RunConfig, label: str = "config", materialize: bool = True) -> Components:
    """Seed, then build data, encoder, objective and optimizer in the article's order.

    The encoder is built before the data is drawn, as the article's demos do after
    ``torch.manual_seed(0)``, so a run reproduces them exactly. Everything is built on the CPU.
    """
    regs = registries()

    def make(block: str, *args: Any) -> Any:
        spec = getattr(cfg, block)
        try:
            return regs[block].build(spec.name, *args, **spec.params())
        except (ValueError, TypeError) as e:
            raise ConfigError(f"{label}: {block} ({spec.name}): {e}") from None

    torch.manual_seed(cfg.seed)
    dataset = make("data")
    encoder = make("encoder", dataset.dim)
    data = dataset.materialize() if materialize else None
    objective = make("loss")
    trainable = [p for m in (encoder, objective) for p in m.parameters() if p.requires_grad]
    optimizer = make("optimizer", trainable)
    bs = cfg.train.batch_size
    if bs is not None and bs > dataset.n:
        raise ConfigError(
            f"{label}: train.batch_size: {bs} is larger than the data ({dataset.n} samples)"
        )
    return Components(dataset, encoder, objective, optimizer, data)


def train(
    cfg: RunConfig, parts: Components, device: torch.device, writer: RunWriter, reporter: Reporter
) -> Result:
    """Run the loop; returns the logged rows and how it ended (``completed``/``interrupted``).

    Steps that are not logged never synchronise with the device: the loss, metrics and grad
    norm are read back only every ``log.every`` steps (and at step 0 and the last step).
    """
    assert parts.data is not None
    encoder = parts.encoder.to(device)
    objective = parts.objective.to(device)
    optimizer = parts.optimizer
    x = parts.data.x.to(device)  # (n, dim)
    n, steps, every = x.shape[0], cfg.train.steps, cfg.log.every
    batch_size = cfg.train.batch_size or n
    trainable = [p for g in optimizer.param_groups for p in g["params"]]
    # Mini-batch order has its own generator so that it never shifts the global RNG stream.
    order = torch.Generator().manual_seed(cfg.seed)
    perm, pos = torch.arange(n), n if batch_size < n else 0

    rows: list[dict[str, Any]] = []
    status, done, dim = "completed", 0, 0
    reporter.start(steps)
    t0 = time.perf_counter()
    try:
        for step in range(steps):
            # ---------------------------------------------------------------- batch
            if batch_size < n:
                if pos + batch_size > n:  # new epoch: reshuffle, drop the ragged tail
                    perm, pos = torch.randperm(n, generator=order), 0
                batch = x[perm[pos : pos + batch_size].to(device)]  # (B, dim)
                pos += batch_size
            else:
                batch = x
            views = [batch] * objective.views

            # ---------------------------------------------------------------- step
            out = objective(encoder, views)
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            optimizer.step()
            objective.after_step(encoder, step, steps)

            # ---------------------------------------------------------------- log
            if step % every == 0 or step == steps - 1:
                z_pos = out.z_pos.detach() if out.z_pos is not None else None
                values, eigenvalues = metrics.compute_metrics(out.z.detach(), z_pos)
                head = torch.stack(
                    [out.loss.detach().double(), metrics.grad_norm(trainable).double()]
                    + [v.detach().double() for v in out.parts.values()]
                ).tolist()  # the one read-back of the training side
                row = {"step": step, "time": round(time.perf_counter() - t0, 4), "loss": head[0]}
                row.update(values)
                row["grad_norm"] = head[1]
                row.update(zip(out.parts, head[2:], strict=True))
                rows.append(row)
                writer.append_metrics(row)
                if cfg.log.spectrum:
                    writer.append_spectrum(step, eigenvalues.tolist())
                dim = eigenvalues.numel()
                reporter.log(row, dim)
            done = step + 1
            reporter.advance(done)
    except KeyboardInterrupt:
        status = "interrupted"
    return Result(rows, status, done, time.perf_counter() - t0, batch_size, dim)
