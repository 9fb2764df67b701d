"""One run on several processes: joining the process group torchrun set up and leaving it, this
rank's share of the global batch, what rank 0 passes to the other ranks (the run folder, the
summary, errors), the step as one DistributedDataParallel module with batch norm synchronised
across the ranks, and the launcher behind ``collapse run --nproc N`` (torch.distributed.run).

One process is a `World` of one rank, in which every method is the identity (the gathers are
in `collectives`), so a single-process run computes exactly what it computes without them.
"""

from __future__ import annotations

import contextlib
import datetime
import inspect
import logging
import os
import re
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from .. import collectives
from ..config import RunConfig
from ..errors import CollapseError, ConfigError, RunError
from ..objectives import Objective, Output
from .build import build, resolve_device

T = TypeVar("T")

TIMEOUT_ENV = "COLLAPSE_DIST_TIMEOUT"  # seconds a collective waits for the other ranks
TIMEOUT_S = 600.0


def _launched_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


@dataclass
class World:
    """The ranks of a run as this process sees them; ``World(device)`` is one process."""

    device: torch.device
    rank: int = 0
    size: int = 1
    backend: str | None = None  # gloo (CPU) or nccl (CUDA) with several ranks
    control: Any = None  # a gloo group for host-side flags and objects (None: the default one)
    owned: bool = False  # this process created the process group and destroys it
    alive: bool = field(default=True, repr=False)  # False once a failure tore the group down

    @property
    def main(self) -> bool:
        """Rank 0: the one that creates, writes and reports the run folder."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def meta(self) -> dict[str, Any]:
        """The fields of meta.json that say how the run was spread."""
        return {"world_size": self.size, "backend": self.backend}

    def share(self, batch_size: int) -> slice:
        """This rank's rows of a global batch (all of them in one process)."""
        n = batch_size // self.size
        return slice(self.rank * n, (self.rank + 1) * n)

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` is set on any rank, the same answer on every rank: a signal reaches
        the ranks at different steps, and they must stop after the same one."""
        if not self.distributed:
            return flag
        # On the host, through the gloo control group; a group of nccl alone (a user's own
        # loop, `Monitor`) reduces device tensors only.
        nccl_only = self.control is None and self.backend == "nccl"
        t = torch.tensor([int(flag)], device=self.device if nccl_only else "cpu")
        dist.all_reduce(t, op=dist.ReduceOp.MAX, group=self.control)
        return bool(t.item())

    def from_main(self, make: Callable[[], T]) -> T:
        """Rank 0's ``make()``, on every rank (the other ranks do not call it). What it raises
        is raised on every rank: a CollapseError as it is, anything else as a RunError."""
        return self._from_main(make, share=True)

    def on_main(self, make: Callable[[], T]) -> T | None:
        """``make()`` on rank 0 alone (None elsewhere); what it raises is raised on every rank."""
        return self._from_main(make, share=False)

    def _from_main(self, make: Callable[[], T], share: bool) -> Any:
        if not self.distributed:
            return make()
        box: list[Any] = [None]
        raised: Exception | None = None
        if self.main:
            try:
                value = make()
                box[0] = ("value", value if share else None)
            except Exception as e:
                raised = e
                sent = e if isinstance(e, CollapseError) else RunError(f"rank 0: {_text(e)}")
                box[0] = ("error", sent)
        dist.broadcast_object_list(box, src=0, group=self.control)
        if raised is not None:
            raise raised
        kind, got = box[0]
        if kind == "error":
            raise got
        return value if self.main else got

    def wrap(self, encoder: nn.Module, objective: Objective, cfg: RunConfig) -> nn.Module:
        """The module whose forward is one step: the objective on the encoder; with several
        ranks, under DistributedDataParallel (which averages the gradients over the ranks) and
        with every batch norm of the run synchronised, unless the encoder's ``batch_norm`` is
        ``per_rank``."""
        step = Step(encoder, objective)
        if not self.distributed:
            return step
        if cfg.encoder.params().get("batch_norm") != "per_rank":
            synchronise_batch_norm(step, self.device)
        ids = [self.device] if self.device.type == "cuda" else None
        # Buffers (batch-norm statistics, queues, centres) are kept equal by the computation
        # itself, so DDP need not broadcast them at every forward (only once, at the start).
        ddp = nn.parallel.DistributedDataParallel
        sync = "forward_sync_buffers"  # newer torch's name of broadcast_buffers
        no_sync = (
            {sync: False}
            if sync in inspect.signature(ddp).parameters
            else {"broadcast_buffers": False}
        )
        return ddp(step, device_ids=ids, **no_sync)

    def failure(self, text: str, key: str) -> tuple[str, int | None]:
        """Why the run failed, from this rank's error ``text``, and the rank that failed (None
        when unknown, and in one process). With several ranks, the first that applies: the
        error another rank posted (the root cause: this rank's is then the collective it
        broke); a rank on this host whose process ended without one (killed: out of memory,
        kill -9); this rank's own error, posted for the others, unless it is only lost contact
        with a rank that hung or ended elsewhere. Then the process group is torn down, so that
        no rank waits on this one. ``key`` names the run in the store."""
        if not self.distributed:
            return text, None
        cause = _cause(self, text, key)
        self.abort()
        return cause

    def abort(self) -> None:
        """Tear the process group down now: the other ranks' collectives fail at once."""
        if self.distributed and self.alive and dist.is_initialized():
            self.alive = False
            with contextlib.suppress(Exception):
                dist.destroy_process_group()


def _cause(world: World, text: str, key: str) -> tuple[str, int | None]:
    """`World.failure`'s search for the root cause, through the store of the process group."""
    others = [r for r in range(world.size) if r != world.rank]
    lost = any(sign in text for sign in ("gloo/transport", "NCCL", "Timed out", "Connection"))
    try:
        store = dist.distributed_c10d._get_default_store()
        for r in others:
            if store.check([_error_key(key, r)]):
                return f"rank {r}: {store.get(_error_key(key, r)).decode()}", r
        gone = _ended_rank(store, others) if lost else None
        if gone is not None:
            r, pid = gone
            return (
                f"rank {r}: its process ({pid}) ended without an error (killed, or out of "
                f"memory?); rank {world.rank} saw: {text}",
                r,
            )
        if not lost:
            store.set(_error_key(key, world.rank), text)
    except Exception:  # no store to ask (its host is gone): this rank's own view
        pass
    if lost:
        return (
            f"rank {world.rank} lost contact with the other ranks and none reported an error "
            f"(one hung past {TIMEOUT_ENV}, or ended on another host): {text}",
            None,
        )
    return f"rank {world.rank}: {text}", world.rank


def _ended_rank(store: Any, ranks: list[int], wait: float = 2.0) -> tuple[int, int] | None:
    """The first of ``ranks`` on this host whose process has ended, and its process id. A
    killed process closes its connections before it is a zombie, so this looks again for up
    to ``wait`` seconds."""
    here = {}
    for r in ranks:
        if store.check([_process_key(r)]):
            host, pid = store.get(_process_key(r)).decode().rsplit(":", 1)
            if host == socket.gethostname():
                here[r] = int(pid)
    deadline = time.monotonic() + wait
    while here:
        for r, pid in here.items():
            if _ended(pid):
                return r, pid
        if time.monotonic() > deadline:
            return None
        time.sleep(0.05)
    return None


def _ended(pid: int) -> bool:
    """Whether process ``pid`` of this host has ended (gone, or a zombie not yet reaped)."""
    try:
        os.kill(pid, 0)  # signal 0 sends nothing: it only checks that the process exists
    except ProcessLookupError:
        return True
    except OSError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def _error_key(key: str, rank: int) -> str:
    return f"collapse/{key}/error/{rank}"


def _process_key(rank: int) -> str:
    return f"collapse/process/{rank}"


def _register(world: World) -> None:
    """Record this rank's host and process id in the store, for `World.failure`."""
    with contextlib.suppress(Exception):
        store = dist.distributed_c10d._get_default_store()
        store.set(_process_key(world.rank), f"{socket.gethostname()}:{os.getpid()}")


def _text(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"


class Step(nn.Module):
    """The encoder and the objective as one module whose forward is one step's Output: what
    DistributedDataParallel wraps, so that the objective's two passes through the encoder and
    its own heads are one forward to it."""

    def __init__(self, encoder: nn.Module, objective: Objective) -> None:
        super().__init__()
        self.encoder, self.objective = encoder, objective

    def forward(self, views: list[torch.Tensor]) -> Output:
        return self.objective(self.encoder, views)


class NoFiles:
    """The run writer of every rank but 0: rank 0 alone writes the run folder."""

    def append_metrics(self, row: dict[str, Any]) -> None: ...
    def append_spectrum(self, step: int, eigenvalues: list[float]) -> None: ...
    def close(self) -> None: ...


# --------------------------------------------------------------------------- joining
@contextlib.contextmanager
def joined(device: str) -> Iterator[World]:
    """The world of this process for one run, ``device`` being the config's. Under torchrun
    (``WORLD_SIZE`` > 1) the process group is initialised here, gloo for the CPU and nccl for
    CUDA (one device per rank, ``cuda:LOCAL_RANK``), and destroyed at the end; a process group
    that already exists is used as it is and left alone, unless a rank fails (`World.failure`
    tears it down). Every rank has passed the opening barrier before this yields, so what each
    read before (a run to resume) is read. An error that is not a CollapseError (a collective
    that failed because another rank stopped before the run began) becomes a RunError."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        world = _existing(device)
    elif _launched_size() > 1:
        world = _initialise(device)
    else:
        yield World(resolve_device(device))
        return
    try:
        _register(world)
        dist.barrier(group=world.control)
        yield world
    except CollapseError:
        raise
    except Exception as e:
        raise RunError(f"rank {world.rank}: {_text(e)}") from e
    finally:
        if world.alive and world.control is not None:
            with contextlib.suppress(Exception):
                dist.destroy_process_group(world.control)
        if world.owned:
            world.abort()


def timeout() -> datetime.timedelta:
    """How long a collective waits for the other ranks before the run fails (a rank that hung):
    ``COLLAPSE_DIST_TIMEOUT`` seconds, default 600. A rank that dies is noticed at once."""
    raw = os.environ.get(TIMEOUT_ENV)
    try:
        seconds = float(raw) if raw else TIMEOUT_S
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise ConfigError(f"{TIMEOUT_ENV}={raw!r}: must be a number of seconds > 0")
    return datetime.timedelta(seconds=seconds)


def backend_for(device: str) -> str:
    """nccl for CUDA (``cuda``, or ``auto`` where torch sees CUDA), gloo for the CPU; a device
    index is an error, each rank taking its own device."""
    if re.fullmatch(r"cuda:\d+", device):
        raise ConfigError(
            f"device: {device!r} names one device, but each rank of a distributed run takes its "
            "own (cuda:LOCAL_RANK); use device=cuda"
        )
    if device == "cuda" or (device == "auto" and torch.cuda.is_available()):
        resolve_device("cuda")  # the error when this torch sees no CUDA device
        return "nccl"
    return "gloo"


def _initialise(device: str) -> World:
    backend, limit = backend_for(device), timeout()
    where = _rank_device(backend)
    dist.init_process_group(backend, timeout=limit)
    control = dist.new_group(backend="gloo", timeout=limit) if backend == "nccl" else None
    return World(where, dist.get_rank(), dist.get_world_size(), backend, control, owned=True)


def _existing(device: str) -> World:
    backend = str(dist.get_backend())
    if device != "auto" and (device == "cpu") == (backend == "nccl"):
        raise ConfigError(
            f"device: {device!r}, but the process group's backend is {backend} (gloo for the "
            "CPU, nccl for CUDA)"
        )
    where = _rank_device("nccl" if backend == "nccl" else "gloo")
    control = dist.new_group(backend="gloo") if backend == "nccl" else None
    return World(where, dist.get_rank(), dist.get_world_size(), backend, control)


def _rank_device(backend: str) -> torch.device:
    if backend != "nccl":
        return torch.device("cpu")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if local >= torch.cuda.device_count():
        raise ConfigError(
            f"LOCAL_RANK {local}: this host has {torch.cuda.device_count()} CUDA devices, one per "
            "rank; start at most that many ranks on it (torchrun --nproc-per-node)"
        )
    where = torch.device("cuda", local)
    torch.cuda.set_device(where)
    return where


def check_split(cfg: RunConfig, size: int, n: int | None) -> None:
    """The global batch (``train.batch_size``, or all ``n`` samples) must split evenly over
    ``size`` ranks; a ConfigError naming the key when it does not."""
    batch = cfg.train.batch_size or n
    if size == 1 or batch is None or batch % size == 0:
        return
    what = f"{batch}" if cfg.train.batch_size else f"null (the whole data, {n} samples)"
    fix = "use" if cfg.train.batch_size else "set train.batch_size to"
    raise ConfigError(
        f"{cfg.source}: train.batch_size: {what} does not split evenly over {size} ranks; "
        f"{fix} a multiple of {size}"
    )


# --------------------------------------------------------------------------- batch norm
class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm over the global batch on the CPU, where torch's SyncBatchNorm does not run.

    In training, each channel's mean and biased variance are those of every rank's rows
    together, from two autograd-aware sums over the ranks, and the running statistics move with
    them (the variance unbiased over the global count, as BatchNorm does); in eval mode, and in
    one process, it is BatchNorm itself.
    """

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected (N, C, ...) input, got {tuple(x.shape)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and collectives.world_size() > 1):
            return super().forward(x)
        self._check_input_dim(x)
        dims, shape = [0, *range(2, x.dim())], [1, -1] + [1] * (x.dim() - 2)
        x32 = x.float()  # statistics in float32, under autocast too
        count = x32.numel() // x32.shape[1] * collectives.world_size()
        mean = collectives.reduce_sum(x32.sum(dims)) / count  # (C,)
        centred = x32 - mean.view(shape)
        var = collectives.reduce_sum(centred.pow(2).sum(dims)) / count  # (C,) biased
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = self.momentum
                if m is None:  # cumulative average
                    m = 1.0 / float(self.num_batches_tracked)
                self.running_mean.lerp_(mean.detach(), m)
                self.running_var.lerp_(var.detach() * count / max(count - 1, 1), m)
        y = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def synchronise_batch_norm(module: nn.Module, device: torch.device) -> nn.Module:
    """Every batch norm inside ``module`` replaced, in place and sharing its parameters and
    buffers, by one whose statistics are the global batch's: torch's SyncBatchNorm on CUDA,
    `GlobalBatchNorm` on the CPU."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for name, child in module.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm) and not isinstance(
            child, (GlobalBatchNorm, nn.SyncBatchNorm)
        ):
            setattr(module, name, _global_copy(child))
        else:
            synchronise_batch_norm(child, device)
    return module


def _global_copy(bn: nn.modules.batchnorm._BatchNorm) -> GlobalBatchNorm:
    new = GlobalBatchNorm(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
    if bn.affine:
        new.weight, new.bias = bn.weight, bn.bias
    new.running_mean, new.running_var = bn.running_mean, bn.running_var
    new.num_batches_tracked = bn.num_batches_tracked
    new.train(bn.training)
    return new


# --------------------------------------------------------------------------- launching
def check_launch(cfg: RunConfig, nproc: int) -> None:
    """What ``--nproc`` can tell before it starts any process: the device and the batch."""
    if _launched_size() > 1:
        raise ConfigError(
            "--nproc: this process is already one rank of a distributed run (torchrun); leave "
            "--nproc out"
        )
    if backend_for(cfg.device) == "nccl" and nproc > torch.cuda.device_count():
        raise ConfigError(
            f"--nproc {nproc}: each rank takes one CUDA device and torch sees "
            f"{torch.cuda.device_count()}; use --nproc {torch.cuda.device_count()} or "
            "device=cpu"
        )
    n = None if cfg.train.batch_size else build(cfg).data.x.shape[0]  # the whole data's size
    check_split(cfg, nproc, n)


def launch(nproc: int, args: list[str]) -> int:
    """``python -m collapse_cli ARGS`` on ``nproc`` processes of this machine, started by
    torchrun's own launcher (torch.distributed.run, a standalone rendezvous on a free port).
    Returns rank 0's exit code (1 when a signal ended it, or when only another rank failed),
    130 when the launcher itself was interrupted (it passes the signal on to the ranks and
    waits for them to stop)."""
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    # The ranks report the run; of torchrun's own lines, only its errors (a rank that was
    # killed, with its exit code) say something they cannot.
    for name in list(logging.root.manager.loggerDict):
        if name.startswith(("torch.distributed.elastic", "torch.distributed.run")):
            logging.getLogger(name).setLevel(logging.ERROR)
    # torchrun's default is one thread per rank; the machine's cores shared out is as safe.
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    argv = ["--standalone", f"--nproc-per-node={nproc}", "--module", "collapse_cli", *args]
    try:
        torchrun.run(torchrun.parse_args(argv))
    except ChildFailedError as e:  # rank 0's own code (2, 3, 130), else 1: the run failed
        first = e.failures.get(0)
        return first.exitcode if first is not None and first.exitcode > 0 else 1
    except SignalException:
        return 130
    return 0
