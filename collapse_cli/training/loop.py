"""The training loop of one run: views, encoder, objective, backward, step; metrics at log steps.

It talks to a reporter (what a person sees) and a run writer (the run folder), nothing else.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from .. import collectives, metrics
from ..config import RunConfig
from ..encoders import embed
from ..rundir import RunWriter
from ..views import ViewMaker
from .build import Components
from .checkpoint import Position, restore_checkpoint, save_checkpoint
from .distributed import World
from .probes import Probes
from .stopping import StopOn
from .taps import Taps


class Reporter(Protocol):
    def start(self, steps: int) -> None: ...
    def advance(self, step: int) -> None: ...
    def log(self, row: dict[str, Any], dim: int) -> None: ...


class Silent:
    """A reporter that shows nothing (the library's default)."""

    def start(self, steps: int) -> None: ...
    def advance(self, step: int) -> None: ...
    def log(self, row: dict[str, Any], dim: int) -> None: ...


class Stop:
    """Set by a signal handler; the loop checks it between steps and stops cleanly."""

    def __init__(self) -> None:
        self.signal: str | None = None


@dataclass
class Result:
    rows: list[dict[str, Any]]  # the metric rows logged by this call (finite ones only)
    status: str  # completed | interrupted | diverged | stopped (train.stop_on)
    steps_done: int
    wall_time: float  # seconds, including the time before a resume
    batch_size: int
    dim: int  # embedding dimension (0 when nothing was logged)
    diverged_at: int | None = None  # the log step at which a non-finite value was seen
    dims: dict[str, Any] | None = None  # metrics.dimensions of the last finite log step
    stop_reason: str | None = None  # why train.stop_on ended the run (status stopped)


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
    world: World | None = None,
    stop_on: StopOn | None = None,
) -> Result:
    """Run the loop; returns the logged rows and how it ended.

    Steps that are not logged never synchronise with the device: the loss, metrics and grad
    norm are read back only every ``log.every`` steps (and at step 0 and the last step). A
    non-finite loss is caught by a flag kept on the device and read back with the log.
    ``checkpoint`` is where the state is saved every ``train.checkpoint_every`` steps and when
    the run is interrupted; ``resume`` is a saved state. kNN accuracy is measured on the model
    that the step's forward pass uses, before its optimizer step, like every other metric of
    the row.

    ``world``: the ranks of a distributed run (default one process). Each rank draws the views
    of the whole global batch from the same generator and keeps its share; the metrics are those
    of the gathered batch, and every rank takes the same decisions from them.

    ``stop_on``: train.stop_on's rule (`stopping.StopOn`), judged at log steps on rank 0.
    """
    world = world or World(device)
    encoder = parts.encoder.to(device)
    objective = parts.objective.to(device)
    model = world.wrap(encoder, objective, cfg)  # DDP over both with several ranks
    optimizer = parts.optimizer
    data = parts.data
    x = data.x.to(device)  # (n, *shape)
    n, steps, every = x.shape[0], cfg.train.steps, cfg.log.every
    batch_size = cfg.train.batch_size or n  # the global batch
    share = world.share(batch_size)  # this rank's rows of it
    trainable = [p for g in optimizer.param_groups for p in g["params"]]
    labelled = data.labels is not None and data.labels_test is not None
    pairs = getattr(data, "pairs", None) is not None  # text data's held-out sentence pairs
    # Mini-batch order has its own generator so that it never shifts the global RNG stream.
    order = torch.Generator().manual_seed(cfg.seed)
    # So do the augmented views (views.seed), drawn on the run's device.
    make_views = ViewMaker(cfg.views, objective.views, cfg.seed, device, cfg.loss.name)
    generators = {"order": order, "views": make_views.generator}  # saved with checkpoints
    probes = Probes(cfg, data, device)  # log.lidar's fixed views, log.probe (own generators)
    bf16 = cfg.train.autocast == "bf16"  # the encoder and loss in bfloat16; metrics stay float64
    at = Position(0, 0.0, torch.arange(n), n if batch_size < n else 0)
    if resume is not None:
        at = restore_checkpoint(resume, encoder, objective, optimizer, generators)
    start, before = at.step, at.elapsed  # before: seconds spent before a resume

    def snapshot() -> None:
        if checkpoint is not None:
            at.elapsed = before + time.perf_counter() - t0
            save_checkpoint(checkpoint, at, encoder, objective, optimizer, generators, device)

    taps = Taps(cfg, encoder, objective)  # log.at: where the metrics are measured (taps.py)
    rows: list[dict[str, Any]] = []
    status, dim, diverged_at, stop_reason = "completed", 0, None, None
    last: tuple[torch.Tensor, torch.dtype | None, float] | None = None  # for dead dimensions
    finite = torch.ones((), dtype=torch.bool, device=device)  # stays True while the loss does
    reporter.start(steps)
    reporter.advance(start)
    t0 = time.perf_counter()
    try:
        for step in range(start, steps):
            # Every rank stops after the same step, whichever the signal reached first.
            if world.any(stop is not None and stop.signal is not None):
                status = "interrupted"
                break
            # ---------------------------------------------------------------- batch
            if batch_size < n:
                if at.pos + batch_size > n:  # new epoch: reshuffle, drop the ragged tail
                    at.perm, at.pos = torch.randperm(n, generator=order), 0
                batch = x[at.perm[at.pos : at.pos + batch_size].to(device)]  # (B, *shape)
                at.pos += batch_size
            else:
                batch = x
            views = make_views(batch)  # views.count tensors (B, *shape); [batch] for 1-view losses
            views = [v[share] for v in views]  # (B / ranks, *shape) each: this rank's rows

            # ---------------------------------------------------------------- step
            log_step = step % every == 0 or step == steps - 1
            # kNN of the model the row's other metrics describe, in eval mode before this step's
            # forward pass moves batch-norm statistics; on rank 0, which alone writes it.
            if log_step and labelled and world.main:
                train_z, test_z = embed(encoder, x), embed(encoder, data.x_test)
                knn = metrics.knn_accuracy(
                    train_z, data.labels, test_z, data.labels_test, k=cfg.log.knn_k
                )
            if log_step and pairs and world.main:  # recall@1 of held-out pairs, likewise
                queries, partners = (embed(encoder, part) for part in data.pairs)
                recall = metrics.recall_at_1(queries, partners)
            probed = probes(encoder) if log_step and world.main else {}  # LiDAR, linear probe
            taps.armed = log_step  # log.at's hooks keep this forward pass's tensors, if logged
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                out = model(views)  # objective(encoder, views)
            taps.armed = False
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            optimizer.step()
            objective.after_step(encoder, step, steps)
            finite &= torch.isfinite(out.loss.detach())

            # ---------------------------------------------------------------- log
            if log_step:
                # Metrics in float64 of the global batch, gathered from every rank; under
                # autocast the rank tolerance is bfloat16's.
                # log.at's first representation: out.z by default.
                z, z_pos = taps.pair(taps.names[0], out)  # (B, d) each
                precision = torch.bfloat16 if bf16 else None
                values, eigenvalues = metrics.compute_metrics(z, z_pos, precision)
                # The loss's parts, then diagnostics of the objective (InfoNCE's forces), always
                # of the embeddings its loss compares, wherever log.at measures first.
                own = (z, z_pos) if taps.names[0] == taps.own else taps.pair(taps.own, out)
                named = out.parts | objective.forces(*own)
                elsewhere = taps.others(out, precision)  # log.at's further ones, prefixed
                taps.clear()
                # The one read-back of the training side: flag, loss, grad norm, loss parts,
                # averaged over the ranks (their mean loss is the global batch's loss).
                still_finite, loss, grad_norm, *part_values = collectives.mean_over_ranks(
                    torch.stack(
                        [finite.double(), out.loss.detach().double()]
                        + [metrics.grad_norm(trainable).double()]
                        + [v.detach().double() for v in named.values()]
                    )
                ).tolist()
                still_finite = still_finite == 1  # finite on every rank
                row = {"step": step, "time": round(before + time.perf_counter() - t0, 4)}
                row |= {"loss": loss, **values, "grad_norm": grad_norm}
                row |= dict(zip(named, part_values, strict=True))
                row |= elsewhere
                if still_finite and labelled and world.main:
                    row["knn_acc"] = knn  # held-out split against the training set, eval mode
                if still_finite and pairs and world.main:
                    row["recall_at_1"] = recall  # held-out pairs (text data), eval mode
                row |= probed if still_finite else {}
                writer.append_metrics(row)
                if not still_finite or not math.isfinite(values["variance"]):
                    status, diverged_at = "diverged", step
                    break
                rows.append(row)
                last = (z, precision, values["max_eig"])  # kept, measured once at the end
                if cfg.log.spectrum:
                    writer.append_spectrum(step, eigenvalues.tolist())
                dim = eigenvalues.numel()
                reporter.log(row, dim)
                # train.stop_on: rank 0 judges the rows so far (it alone has every row of a
                # resumed run); every rank follows its decision (one small all-reduce with
                # several ranks, at log steps only: nothing on the other steps).
                if stop_on is not None:
                    reason = stop_on.see(row, dim) if world.main else None
                    if world.any(reason is not None):
                        status, stop_reason, at.step = "stopped", reason, step + 1
                        reporter.advance(at.step)
                        break
            at.step = step + 1
            reporter.advance(at.step)
            if cfg.train.checkpoint_every and at.step % cfg.train.checkpoint_every == 0:
                snapshot()
    except KeyboardInterrupt:
        status = "interrupted"
    finally:
        taps.remove()  # the encoder leaves the loop without log.at's hooks, however it ends
    if status == "interrupted":
        snapshot()  # the state after the last finished step: resume picks up exactly here
    wall = before + time.perf_counter() - t0
    dims = metrics.dimensions(last[0], last[2], last[1]) if last is not None else None
    return Result(
        rows, status, at.step, wall, batch_size, dim, diverged_at, dims, stop_reason=stop_reason
    )
