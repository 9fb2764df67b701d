"""Building a run's components and the training loop; talks to a reporter and a run writer."""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from . import metrics
from .config import RunConfig, registries
from .data import Data, Dataset
from .encoders import embed, output_dim
from .errors import ConfigError
from .objectives import Objective
from .runs import RunWriter
from .views import ViewMaker


class Reporter(Protocol):
    def start(self, steps: int) -> None: ...
    def advance(self, step: int) -> None: ...
    def log(self, row: dict[str, Any], dim: int) -> None: ...


@dataclass
class Result:
    rows: list[dict[str, Any]]  # the metric rows logged by this call (finite ones only)
    status: str  # completed | interrupted | diverged
    start: int  # the step this call started from (non-zero when resumed)
    steps_done: int
    wall_time: float  # seconds, including the time before a resume
    batch_size: int
    dim: int  # embedding dimension (0 when nothing was logged)
    diverged_at: int | None = None  # the log step at which a non-finite value was seen


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
        except (ValueError, TypeError, ConfigError) as e:  # a ConfigError: a file it reads
            raise ConfigError(f"{label}: {block} ({spec.name}): {e}") from None

    torch.manual_seed(cfg.seed)
    dataset = make("data")
    encoder = make("encoder", dataset.shape)
    data = dataset.materialize() if materialize else None
    objective = make("loss")
    # Before the optimizer collects parameters: check that the views fit the loss, then let the
    # loss build its heads (sized by the embedding) and EMA copies of the encoder.
    try:
        ViewMaker(cfg.views, objective.views, cfg.seed, loss=cfg.loss.name)
        dim = output_dim(encoder, dataset.shape)
        objective.setup(encoder, dim, min(cfg.train.batch_size or dataset.n, dataset.n), dataset.n)
    except ValueError as e:
        raise ConfigError(f"{label}: {e}") from None
    trainable = [p for m in (encoder, objective) for p in m.parameters() if p.requires_grad]
    optimizer = make("optimizer", trainable)
    bs = cfg.train.batch_size
    if bs is not None and bs > dataset.n:
        raise ConfigError(
            f"{label}: train.batch_size: {bs} is larger than the data ({dataset.n} samples)"
        )
    return Components(dataset, encoder, objective, optimizer, data)


class Stop:
    """Set by a signal handler; the loop checks it between steps and stops cleanly."""

    def __init__(self) -> None:
        self.signal: str | None = None


def train(
    cfg: RunConfig,
    parts: Components,
    device: torch.device,
    writer: RunWriter,
    reporter: Reporter,
    *,
    stop: Stop | None = None,
    checkpoint: Path | None = None,
    resume: dict[str, Any] | None = None,
) -> Result:
    """Run the loop; returns the logged rows and how it ended.

    Steps that are not logged never synchronise with the device: the loss, metrics and grad
    norm are read back only every ``log.every`` steps (and at step 0 and the last step). A
    non-finite loss is caught by a flag kept on the device and read back with the log.
    ``checkpoint`` is where ``train.checkpoint_every`` saves; ``resume`` is a saved state.
    """
    assert parts.data is not None
    encoder = parts.encoder.to(device)
    objective = parts.objective.to(device)
    optimizer = parts.optimizer
    x = parts.data.x.to(device)  # (n, *shape)
    n, steps, every = x.shape[0], cfg.train.steps, cfg.log.every
    batch_size = cfg.train.batch_size or n
    trainable = [p for g in optimizer.param_groups for p in g["params"]]
    # Mini-batch order has its own generator so that it never shifts the global RNG stream.
    order = torch.Generator().manual_seed(cfg.seed)
    # So do the augmented views (views.seed), drawn on the run's device.
    make_views = ViewMaker(cfg.views, objective.views, cfg.seed, device, cfg.loss.name)
    generators = {"order": order, "views": make_views.generator}  # saved with checkpoints
    bf16 = cfg.train.autocast == "bf16"  # the encoder and loss in bfloat16; metrics stay float64
    perm, pos = torch.arange(n), n if batch_size < n else 0
    start, elapsed = 0, 0.0
    if resume is not None:
        start, elapsed, perm, pos = _restore(resume, encoder, objective, optimizer, generators)

    def snapshot(done: int) -> None:
        if checkpoint is not None:
            rng = {"torch": torch.get_rng_state()}
            rng |= {name: g.get_state() for name, g in generators.items()}
            if device.type == "cuda":
                rng["cuda"] = torch.cuda.get_rng_state(device)
            state = {
                "step": done,
                "elapsed": elapsed + time.perf_counter() - t0,
                "encoder": encoder.state_dict(),
                "objective": objective.state_dict(),
                "optimizer": optimizer.state_dict(),
                "rng": rng,
                "perm": perm,
                "pos": pos,
            }
            save_checkpoint(checkpoint, state)

    rows: list[dict[str, Any]] = []
    status, done, dim, diverged_at = "completed", start, 0, None
    finite = torch.ones((), dtype=torch.bool, device=device)  # stays True while the loss does
    reporter.start(steps)
    reporter.advance(start)
    t0 = time.perf_counter()
    try:
        for step in range(start, steps):
            if stop is not None and stop.signal:
                status = "interrupted"
                break
            # ---------------------------------------------------------------- batch
            if batch_size < n:
                if pos + batch_size > n:  # new epoch: reshuffle, drop the ragged tail
                    perm, pos = torch.randperm(n, generator=order), 0
                batch = x[perm[pos : pos + batch_size].to(device)]  # (B, *shape)
                pos += batch_size
            else:
                batch = x
            views = make_views(batch)  # views.count tensors (B, *shape); [batch] for 1-view losses

            # ---------------------------------------------------------------- step
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                out = objective(encoder, views)
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            optimizer.step()
            objective.after_step(encoder, step, steps)
            finite &= torch.isfinite(out.loss.detach())

            # ---------------------------------------------------------------- log
            if step % every == 0 or step == steps - 1:
                # Metrics in float64; under autocast the rank tolerance is bfloat16's.
                z = out.z.detach()
                z_pos = out.z_pos.detach() if out.z_pos is not None else None
                precision = torch.bfloat16 if bf16 else None
                values, eigenvalues = metrics.compute_metrics(z, z_pos, precision)
                head = torch.stack(
                    [finite.double(), out.loss.detach().double()]
                    + [metrics.grad_norm(trainable).double()]
                    + [v.detach().double() for v in out.parts.values()]
                ).tolist()  # the one read-back of the training side
                now = round(elapsed + time.perf_counter() - t0, 4)
                row = {"step": step, "time": now, "loss": head[1]}
                row.update(values)
                row["grad_norm"] = head[2]
                row.update(zip(out.parts, head[3:], strict=True))
                # kNN accuracy of the held-out split against the training set, in eval mode.
                data = parts.data
                if head[0] and data.labels is not None and data.labels_test is not None:
                    train_z, test_z = embed(encoder, x), embed(encoder, data.x_test)
                    row["knn_acc"] = metrics.knn_accuracy(
                        train_z, data.labels, test_z, data.labels_test, k=cfg.log.knn_k
                    )
                writer.append_metrics(row)
                if not head[0] or not math.isfinite(values["variance"]):
                    status, diverged_at = "diverged", step
                    break
                rows.append(row)
                if cfg.log.spectrum:
                    writer.append_spectrum(step, eigenvalues.tolist())
                dim = eigenvalues.numel()
                reporter.log(row, dim)
            done = step + 1
            reporter.advance(done)
            if cfg.train.checkpoint_every and done % cfg.train.checkpoint_every == 0:
                snapshot(done)
    except KeyboardInterrupt:
        status = "interrupted"
    if status == "interrupted" and cfg.train.checkpoint_every:
        snapshot(done)  # the state after the last finished step: resume picks up exactly here
    wall = elapsed + time.perf_counter() - t0
    return Result(rows, status, start, done, wall, batch_size, dim, diverged_at)


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """torch.save through a temporary file and a rename, so a checkpoint is never half written."""
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint's state, loaded with ``weights_only=True`` (tensors and plain data only)."""
    return torch.load(path, map_location="cpu", weights_only=True)


def _restore(
    state: dict[str, Any],
    encoder: nn.Module,
    objective: nn.Module,
    optimizer: torch.optim.Optimizer,
    generators: dict[str, torch.Generator],
) -> tuple[int, float, torch.Tensor, int]:
    """Load a checkpoint into the live objects; returns (step, elapsed, perm, pos)."""
    encoder.load_state_dict(state["encoder"])
    objective.load_state_dict(state["objective"])
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"]["torch"])
    for name, g in generators.items():
        g.set_state(state["rng"][name])
    if "cuda" in state["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["rng"]["cuda"])
    return state["step"], state["elapsed"], state["perm"], state["pos"]
