"""Collectives over the ranks of one run on several processes, for the objectives and the loop.

In one process every function here is the identity (or returns 0 and 1), so a single-process
run computes exactly what it computes without them. Rank r holds rows r·n … (r + 1)·n − 1 of
the global batch (`training.distributed`), so a gathered tensor is the global batch's, row for
row, in the order one process would have it.

How a loss stays independent of the world size W. DistributedDataParallel averages the
parameter gradients over the ranks, and the autograd-aware `gather` sums, into each rank's
rows, the gradients of every rank's loss with respect to them. Together they differentiate
(1/W) Σ_r L_r, the mean of the ranks' losses, as one function. So a rank's loss L_r must be
such that this mean is the single-process loss L:

- a mean over samples (InfoNCE's anchors, BYOL's pairs) is the mean over the rank's own
  samples, the gathered batch serving only as candidates: the mean of W local means is the
  global mean;
- a statistic of the whole batch (Barlow Twins' cross-correlation, VICReg's variance and
  covariance) is computed from the gathered batch, and the same L on every rank is its own
  mean.

A gather without autograd loses the terms of the other ranks' losses: the gradient then misses
the negatives' side of InfoNCE and is L's divided by W for a whole-batch statistic.
"""

from __future__ import annotations

import warnings

import torch
import torch.distributed as dist

# torch.distributed.nn.functional warns on every call that it is deprecated in favour of the
# private torch.distributed._functional_collectives; it is the public autograd-aware API.
warnings.filterwarnings(
    "ignore",
    message=r"torch\.distributed\.nn\.functional\.\w+ is deprecated",
    category=FutureWarning,
)


def world_size() -> int:
    """The number of ranks of the run: 1 in one process."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process's rank: 0 in one process."""
    return dist.get_rank() if world_size() > 1 else 0


def offset(n: int) -> int:
    """The global index of this rank's first row, for ``n`` rows per rank."""
    return rank() * n


def gather(x: torch.Tensor) -> torch.Tensor:
    """(W·n, ...): every rank's x (n, ...) in rank order, differentiable. The gradient that
    reaches this rank's x sums the gradients of every rank's loss with respect to its rows."""
    if world_size() == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x))


def gather_detached(x: torch.Tensor) -> torch.Tensor:
    """(W·n, ...): every rank's x in rank order, without a gradient (metrics, MoCo's keys)."""
    if world_size() == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(parts, x.detach().contiguous())
    return torch.cat(parts)


def reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """Σ_r x_r, the same on every rank, differentiable: the gradient reaching each rank's x is
    the sum over ranks of the gradients with respect to the total (synchronised batch norm)."""
    if world_size() == 1:
        return x
    from torch.distributed.nn.functional import all_reduce

    return all_reduce(x)


def mean_over_ranks(x: torch.Tensor) -> torch.Tensor:
    """(1/W) Σ_r x_r, the same on every rank, without a gradient: the global batch's mean of a
    per-rank mean over equally many samples (logged losses, DINO's centre)."""
    if world_size() == 1:
        return x
    total = x.detach().clone()
    dist.all_reduce(total)
    return total / world_size()
