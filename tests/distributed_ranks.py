"""What the ranks of the tests' spawned process group run (tests/test_distributed.py).

Two gloo ranks on the CPU share one process group for a list of jobs, each writing what it
found to ``<folder>/<job name>-<rank>.pt``; the test process runs the same jobs in one process
and compares. Not a test module: spawned processes import it by name.
"""

from __future__ import annotations

import datetime
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from collapse_cli import collectives, run_experiment
from collapse_cli.config import load_config
from collapse_cli.errors import RunError
from collapse_cli.training import lifecycle, resume_run
from collapse_cli.training.build import build
from collapse_cli.training.distributed import joined
from collapse_cli.views import ViewMaker

RANKS = 2


def no_figures(path: Path, meta: dict[str, Any]) -> None:
    """Instead of the end-of-run figures, which these runs need not draw (seconds each)."""


def one_step(doc: dict[str, Any]) -> dict[str, Any]:
    """One training step as the loop takes it, from its first global batch: the loss (the mean
    over the ranks, as logged) and the gradient of every trainable parameter after DDP."""
    cfg = load_config(doc)
    with joined(cfg.device) as world:
        parts = build(cfg)
        model = world.wrap(parts.encoder, parts.objective, cfg)
        objective = parts.objective
        make_views = ViewMaker(cfg.views, objective.views, cfg.seed, world.device, cfg.loss.name)
        batch = parts.data.x[: cfg.train.batch_size]
        views = [v[world.share(batch.shape[0])] for v in make_views(batch)]
        out = model(views)
        out.loss.backward()
        loss = float(collectives.mean_over_ranks(out.loss.detach()))
        grads = {
            name.removeprefix("module."): p.grad.clone()
            for name, p in model.named_parameters()
            if p.requires_grad
        }
    return {"loss": loss, "grads": grads}


def plain_gather(x: torch.Tensor) -> torch.Tensor:
    """The classic mistake: a gather whose other ranks' rows carry no gradient back."""
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.detach().contiguous())
    parts[dist.get_rank()] = x
    return torch.cat(parts)


class SignalAt:
    """A reporter that sends this process SIGINT after a given step, as Ctrl-C would."""

    def __init__(self, step: int) -> None:
        self.step = step

    def start(self, steps: int) -> None: ...
    def log(self, row: dict[str, Any], dim: int) -> None: ...

    def advance(self, step: int) -> None:
        if step == self.step:
            os.kill(os.getpid(), signal.SIGINT)


def _failing_forward(original: Any, after: int, how: str) -> Any:
    """The objective's forward, which after ``after`` calls raises, hangs or kills its process."""
    calls = [0]

    def forward(self: Any, encoder: Any, views: Any) -> Any:
        calls[0] += 1
        if calls[0] > after:
            if how == "raise":
                raise RuntimeError(f"boom in step {calls[0] - 1}")
            if how == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(float(how.removeprefix("sleep ")))
        return original(self, encoder, views)

    return forward


def run_job(job: dict[str, Any], rank: int, folder: Path) -> Any:
    kind = job["kind"]
    if kind == "step":
        return one_step(job["doc"])
    if kind == "plain_step":
        original = collectives.gather
        collectives.gather = plain_gather
        try:
            return one_step(job["doc"])
        finally:
            collectives.gather = original
    if kind == "run":
        path, summary = run_experiment(job["doc"], runs_dir=folder / job["name"])
        return {"path": str(path), "summary": summary}
    if kind == "interrupt_and_resume":
        runs = folder / job["name"]
        path, summary = run_experiment(job["doc"], runs_dir=runs, reporter=SignalAt(job["at"]))
        if rank == 0:  # a copy for the test process to resume in one process
            shutil.copytree(path, folder / f"{job['name']}-copy" / path.name)
        dist.barrier()
        _, resumed = resume_run(path, runs_dir=runs)
        return {"path": str(path), "interrupted": summary, "resumed": resumed}
    if kind == "fail":
        from collapse_cli.objectives import OBJECTIVES

        cls = type(OBJECTIVES.build(job["doc"]["loss"]["name"]))
        if rank == job["rank"]:
            cls.forward = _failing_forward(cls.forward, job["after"], job["how"])
        try:
            run_experiment(job["doc"], runs_dir=folder / job["name"])
        except RunError as e:
            return {"error": str(e)}
        return {"error": None}
    raise ValueError(f"unknown job {kind}")


def main(rank: int, folder: str, jobs: list[dict[str, Any]]) -> None:
    """One rank: run every job in one process group (joined through a file store), a fresh one
    after a job that failed, or for a job with its own ``timeout``; save what each gave."""
    torch.set_num_threads(1)
    lifecycle._plot = no_figures
    out = Path(folder)
    out.mkdir(exist_ok=True)
    for n, job in enumerate(jobs):
        if "timeout" in job or not dist.is_initialized():
            if dist.is_initialized():
                dist.destroy_process_group()
            dist.init_process_group(
                "gloo",
                init_method=f"file://{out / f'store-{n}'}",
                rank=rank,
                world_size=RANKS,
                timeout=datetime.timedelta(seconds=job.get("timeout", 60)),
            )
        torch.save(run_job(job, rank, out), out / f"{job['name']}-{rank}.pt")
    if dist.is_initialized():
        dist.destroy_process_group()
