"""``Monitor``: the collapse metrics of any training loop, written as a run folder that every
reader (``collapse plot``, ``compare``, ``list``, ``load_run``) reads like one of ``collapse run``.

The folder is made by the first ``log`` call, once its inputs are checked, so a loop that fails
before logging anything leaves nothing behind.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError

from .. import __version__, metrics, rundir
from ..catalogue import AT_SEPARATOR, ORDER
from ..config import StopOnConfig, VerdictConfig, _describe
from ..errors import ConfigError, RunError
from ..summary import build_summary
from ..yamlfile import dump_yaml
from .distributed import World
from .lifecycle import _device_name, finish_run
from .stopping import StopOn
from .taps import measure_at

RESERVED = {"step", "time", *ORDER}  # names **extra may not take


class Monitor:
    """Collapse metrics for your own training loop, written as a run folder.

    ``config`` is any dict of your hyperparameters (an argparse Namespace or a dataclass too):
    it becomes the folder's config.yaml, which ``collapse compare`` diffs. ``every``: ``log``
    measures only steps that are multiples of it and returns at once otherwise. ``objective``
    names your loss (``collapse list`` shows it); ``thresholds`` are the verdict's (the
    defaults of ``log.verdict``).

    ``place`` names where z is taken (``measured_at``'s first entry; ``encoder``, as a run
    without a projector calls it); ``log(at={"encoder": h})`` measures further places, under
    their names and a ``/`` (``encoder/effective_rank``), as ``log.at`` does.

    ``stop_on``: train.stop_on's rule, ``{"verdict": "complete collapse", "patience": K}``,
    judged at each finite logged step; once the verdict has held K + 1 log steps in a row,
    ``should_stop`` is True and ``stop_reason`` says why, and the run, closed after that, ends
    ``stopped`` (summary.json's ``stopped_at`` and ``stop_reason``). Your loop decides whether
    to break; one that logs on is judged on, and ends ``stopped`` only if the rule holds at its
    last logged step.

    Under torch.distributed (DistributedDataParallel, several processes), call ``log`` on every
    rank with the same steps: each call gathers every rank's z, z_pos and labels (same shape on
    each rank) and averages the loss, then only rank 0 measures and writes; the other ranks get
    None. With ``stop_on``, every rank gets rank 0's ``should_stop`` (``stop_reason`` is rank
    0's alone). ``gather=False`` turns that off for a caller that gathers itself (the Lightning
    callback).

    As a context manager it ends the run when the block ends: ``completed`` (``diverged`` when
    a logged loss or embedding was NaN or infinite), ``interrupted`` on KeyboardInterrupt,
    ``failed`` on any other exception, which it lets through. Without ``with``, call ``close``.

    >>> with Monitor("runs", name="mlp", config={"lr": 1e-3}, every=50) as monitor:
    ...     for step in range(1000):  # doctest: +SKIP
    ...         ...  # forward, loss.backward(), optimizer.step()
    ...         monitor.log(step, z, loss=loss, parameters=model.parameters())
    """

    def __init__(
        self,
        runs_dir: str | Path = "runs",
        name: str = "run",
        config: Mapping[str, Any] | argparse.Namespace | Any = None,
        *,
        every: int = 1,
        objective: str | None = None,
        thresholds: Mapping[str, float] | None = None,
        spectrum: bool = True,
        seed: int | None = None,
        versions: Mapping[str, str] | None = None,
        gather: bool = True,
        place: str = "encoder",
        stop_on: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(every, int) or every < 1:
            raise ConfigError(f"Monitor: every must be an integer >= 1, got {every!r}")
        self.runs_dir, self.name = Path(runs_dir), rundir.sanitize_name(str(name))
        self.config = plain_config(config)
        self.every, self.objective, self.spectrum, self.seed = every, objective, spectrum, seed
        self.gather = gather
        try:
            self.thresholds = VerdictConfig(**(thresholds or {})).model_dump()
        except (ValidationError, TypeError) as e:
            first = str(e).splitlines()[0] if isinstance(e, TypeError) else _pydantic_line(e)
            raise ConfigError(f"Monitor: thresholds: {first}") from None
        self.place = _place(place, "Monitor: place")
        self._stop = _stop_rule(stop_on, self.thresholds)
        self.should_stop, self.stop_reason = False, None  # the rule's answer at the last log
        self.versions = {
            "torch": torch.__version__,
            "collapse_cli": __version__,
            **(versions or {}),
        }
        self.path: Path | None = None  # made by the first log
        self.summary: dict[str, Any] | None = None  # written by close
        self._writer: rundir.RunWriter | None = None
        self._meta: dict[str, Any] = {}
        self._rows: list[dict[str, Any]] = []  # finite rows up to the first non-finite one
        self._at: dict[str, int] = {}  # log's further places, in the order first seen: their d
        self._world: World | None = None  # the ranks, for stop_on under torch.distributed
        self._dim, self._batch, self._last_step = 0, 0, -1
        self._diverged_at: int | None = None
        self._knn_chance: float | None = None
        self._knn_collapsed: float | None = None
        self._last: tuple[torch.Tensor, float] | None = None  # z and λ₁ of the last finite step
        self._closed = False
        self._t0 = time.perf_counter()

    # ------------------------------------------------------------------ the run's life
    def __enter__(self) -> Monitor:
        self._t0 = time.perf_counter()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: Any
    ) -> None:
        if kind is None:
            self.close()
        elif issubclass(kind, Exception):
            self.close("failed", error=f"{kind.__name__}: {error}")
        else:  # KeyboardInterrupt, SystemExit
            self.close("interrupted")

    def close(self, status: str | None = None, error: str | None = None) -> dict[str, Any] | None:
        """End the run: summary.json (with the verdict), the figures, meta.json. ``status``
        defaults to ``completed`` (``diverged`` after a non-finite step, ``stopped`` when
        ``should_stop``); ``error`` goes into meta.json. Returns the summary, or None when
        nothing was ever logged (no folder)."""
        if self._closed:
            return self.summary
        self._closed = True
        if self.path is None:
            return None
        if status is None:
            status = "stopped" if self.should_stop else "completed"
            status = "diverged" if self._diverged_at is not None else status
        assert self._writer is not None
        self._writer.close()
        summary = build_summary(
            self._rows,
            run_id=self.path.name,
            name=self.name,
            status=status,
            loss=self.objective,
            steps=None,
            steps_done=self._last_step + 1,
            batch_size=self._batch,
            dim=self._dim,
            thresholds=self.thresholds,
            wall_time_s=time.perf_counter() - self._t0,
            knn_chance=self._knn_chance,
            knn_collapsed=self._knn_collapsed,
            diverged_at=self._diverged_at,
            dimensions=metrics.dimensions(*self._last) if self._last is not None else None,
            stop_reason=self.stop_reason if status == "stopped" else None,
        )
        summary["measured_at"] = [self.place, *self._at]  # z's place first, as log.at's
        try:
            finish_run(self.path, self._meta, summary, **({"error": error} if error else {}))
        except OSError as e:
            if error is None:  # else the loop's own exception is what the user must see
                raise RunError(
                    f"{self.path}: cannot write to the run folder ({e.strerror})"
                ) from None
        self.summary = summary
        return summary

    # ------------------------------------------------------------------ one log step
    def log(
        self,
        step: int,
        z: torch.Tensor,
        z_pos: torch.Tensor | None = None,
        loss: float | torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        parameters: Iterable[torch.Tensor] | None = None,
        at: Mapping[str, torch.Tensor] | None = None,
        **extra: float | torch.Tensor,
    ) -> dict[str, Any] | None:
        """Measure the embeddings ``z`` (N, d) of step ``step`` and append them to the run.

        ``z_pos`` (N, d): their positives, for ``alignment``. ``loss``: a number or a 0-dim
        tensor. ``parameters``: the model's (``model.parameters()``), for ``grad_norm``, after
        ``backward()``. ``labels`` (N,): class indices of z's rows, for ``knn_acc`` on a
        seeded 20 % of the rows held out against the rest (as ``collapse inspect --labels``).
        ``extra``: other numbers to log (``lr=...``). The metrics are a run's (compute_metrics:
        float64, one eigendecomposition of the covariance), and they, the loss, the gradient
        norm and any tensor in ``extra`` are read back from the device in one copy (kNN
        accuracy, with labels, adds its own). ``at``: {place: (N, d') tensor}, the embeddings
        of the same N rows at further places, each measured the same way (one more read-back
        each) under ``place/metric``; the unprefixed metrics stay z's.
        Returns the row written, or None for a step that ``every`` skips. Then, with
        ``stop_on``, ``should_stop`` and ``stop_reason`` answer for the rows so far.
        """
        if self._closed:
            raise ConfigError(
                f"Monitor: the run {self.path or self.name} has ended; log nothing after"
            )
        step = int(step)
        if step % self.every:
            return None
        z, z_pos = self._check(step, z, z_pos, extra)
        places = self._check_at(step, z, at)
        self._at |= {name: h.shape[1] for name, h in places.items()}
        rank, world = distributed() if self.gather else (0, 1)
        if world > 1:  # every rank's rows, in rank order; only rank 0 goes on
            z, z_pos = gather_rows(z), None if z_pos is None else gather_rows(z_pos)
            places = {name: gather_rows(h) for name, h in places.items()}
            if labels is not None:
                labels = gather_rows(_tensor(labels, "labels").to(z.device))
            if loss is not None:
                loss = gather_rows(torch.as_tensor(loss, device=z.device).reshape(1)).mean()
            if rank != 0:
                self._decide(z.device, world)  # rank 0's answer, once it has judged its row
                return None
        tensors = {"loss": loss} if isinstance(loss, torch.Tensor) else {}
        tensors |= {k: v for k, v in extra.items() if isinstance(v, torch.Tensor)}
        grads = [p for p in (parameters or []) if p.grad is not None]
        if grads:
            tensors["grad_norm"] = metrics.grad_norm(grads)
        values, eigenvalues = metrics.compute_metrics(z, z_pos, also=tensors)
        read = {k: values.pop(k) for k in tensors}
        row: dict[str, Any] = {"step": step, "time": round(time.perf_counter() - self._t0, 4)}
        if loss is not None:
            row["loss"] = read.pop("loss") if "loss" in read else float(loss)
        row |= values
        if "grad_norm" in read:
            row["grad_norm"] = read.pop("grad_norm")
        row |= {k: read.get(k, v) for k, v in extra.items()}
        for name, h in places.items():  # the further places, prefixed (encoder/rank)
            row |= measure_at(name, h)
        finite = math.isfinite(values["variance"]) and math.isfinite(row.get("loss", 0.0))
        if labels is not None and finite:
            row["knn_acc"] = self._knn(z, labels)
        self._append(step, row, eigenvalues, finite, z)
        self._decide(z.device, world)
        return row

    def _decide(self, device: torch.device, world: int) -> None:
        """``should_stop`` after a logged step: whether rank 0's rule gives a ``stop_reason``,
        the same answer on every rank (one small all-reduce, at logged steps only, as the
        training loop agrees on stopping)."""
        if self._stop is None:
            return
        stop = self.stop_reason is not None
        if world > 1:
            if self._world is None:
                import torch.distributed as dist

                rank, size = distributed()
                self._world = World(device, rank, size, backend=str(dist.get_backend()))
            stop = self._world.any(stop)
        self.should_stop = stop

    def _check(
        self, step: int, z: Any, z_pos: Any, extra: dict[str, Any]
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """z and z_pos as tensors of one (N, d) shape, the same d as before; a ConfigError
        (nothing written) naming what is wrong."""
        z = _tensor(z, "z")
        if z.ndim != 2 or z.shape[0] < 2 or z.shape[1] < 1:
            raise ConfigError(
                f"Monitor.log: z must be an (N, d) matrix with N >= 2 rows, got shape "
                f"{tuple(z.shape)} at step {step}"
            )
        if self._dim and z.shape[1] != self._dim:
            raise ConfigError(
                f"Monitor.log: z has d = {z.shape[1]} at step {step}, but d = {self._dim} before; "
                "the embedding dimension must stay the same"
            )
        if z_pos is not None:
            z_pos = _tensor(z_pos, "z_pos")
            if z_pos.shape != z.shape:
                raise ConfigError(
                    f"Monitor.log: z_pos must have z's shape {tuple(z.shape)}, got "
                    f"{tuple(z_pos.shape)} at step {step}"
                )
        if clash := sorted(set(extra) & RESERVED):
            raise ConfigError(f"Monitor.log: {', '.join(clash)} is a name the run logs itself")
        for key, value in extra.items():
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not (ok or (isinstance(value, torch.Tensor) and value.numel() == 1)):
                raise ConfigError(f"Monitor.log: {key} must be a number, got {value!r:.60}")
        return z, z_pos

    def _check_at(self, step: int, z: torch.Tensor, at: Any) -> dict[str, torch.Tensor]:
        """log's ``at`` as {place: (N, d') tensor}, with z's N rows and the place's d' as
        before; a ConfigError (nothing written) naming the place and what is wrong."""
        if at is None:
            return {}
        if not isinstance(at, Mapping):
            raise ConfigError(
                f"Monitor.log: at must be a dict {{place: (N, d) tensor}}, got "
                f"{type(at).__name__} at step {step}"
            )
        places: dict[str, torch.Tensor] = {}
        for name, h in at.items():
            name = _place(name, "Monitor.log: at")
            if name == self.place:
                raise ConfigError(
                    f"Monitor.log: at: {name} is z's own place (Monitor(place={self.place!r})); "
                    "give z's place another name, e.g. Monitor(place='projector')"
                )
            h = _tensor(h, f"at: {name}")
            if h.ndim != 2 or h.shape[0] != z.shape[0] or h.shape[1] < 1:
                raise ConfigError(
                    f"Monitor.log: at: {name} must be an (N, d) matrix of z's N = {z.shape[0]} "
                    f"rows, got shape {tuple(h.shape)} at step {step}"
                )
            if self._at.get(name, h.shape[1]) != h.shape[1]:
                raise ConfigError(
                    f"Monitor.log: at: {name} has d = {h.shape[1]} at step {step}, but "
                    f"d = {self._at[name]} before; a place's dimension must stay the same"
                )
            places[name] = h
        return places

    def _knn(self, z: torch.Tensor, labels: Any) -> float:
        from ..inspection import knn_split

        info = knn_split(z, _tensor(labels, "labels").to(z.device))
        self._knn_chance, self._knn_collapsed = info["chance"], info["collapsed"]
        return float(info["accuracy"])

    def _append(
        self,
        step: int,
        row: dict[str, Any],
        eigenvalues: torch.Tensor,
        finite: bool,
        z: torch.Tensor,
    ) -> None:
        """The row into the folder; stop_on judges it when it is finite and no row before
        diverged (a row it does not judge leaves ``stop_reason`` as it was)."""
        if self.path is None:
            self._open(z)
        assert self._writer is not None and self.path is not None
        try:
            self._writer.append_metrics(row)
            if finite and self.spectrum:
                self._writer.append_spectrum(step, eigenvalues.tolist())
        except OSError as e:
            raise RunError(f"{self.path}: cannot write to the run folder ({e.strerror})") from None
        self._dim, self._batch = z.shape[1], max(self._batch, z.shape[0])
        self._last_step = max(self._last_step, step)
        if not finite and self._diverged_at is None:
            self._diverged_at = step
        if finite and self._diverged_at is None:
            self._rows.append(row)
            self._last = (z, row["max_eig"])  # its dead dimensions are measured at close
            if self._stop is not None:
                self.stop_reason = self._stop.see(row, self._dim)

    def _open(self, z: torch.Tensor) -> None:
        """The run folder, its config.yaml and meta.json (at the first logged step)."""
        path = rundir.create_run_dir(self.runs_dir, self.name)
        self._meta = rundir.new_meta(
            path.name,
            self.name,
            command=" ".join(sys.argv),
            seed=self.seed,
            device=str(z.device),
            device_name=_device_name(z.device),
            versions=self.versions,
        )
        self._meta["writer"] = "Monitor"
        try:
            rundir.write_atomic(path / rundir.CONFIG, dump_yaml(self.config))
            rundir.write_json(path / rundir.META, self._meta)
            self._writer = rundir.RunWriter(path)
        except OSError as e:
            raise RunError(f"{path}: cannot write the run folder ({e.strerror})") from None
        self.path = path


def _place(name: Any, where: str) -> str:
    """A place's name, checked: a non-empty string without the separator of its keys."""
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{where}: a place's name must be a non-empty string, got {name!r}")
    if AT_SEPARATOR in name:
        raise ConfigError(
            f"{where}: {name!r}: a place's name may not contain {AT_SEPARATOR!r}, which "
            f"separates it from the metric's in the logged keys (encoder{AT_SEPARATOR}rank)"
        )
    return name


def _stop_rule(stop_on: Any, thresholds: dict[str, float]) -> StopOn | None:
    """train.stop_on's rule from ``stop_on``, validated as the config validates it."""
    if stop_on is None:
        return None
    try:
        rule = StopOnConfig.model_validate(stop_on)
    except ValidationError as e:
        raise ConfigError(f"Monitor: {_describe(e, StopOnConfig, prefix='stop_on')}") from None
    return StopOn(rule.verdict, rule.patience, thresholds)


def _pydantic_line(e: ValidationError) -> str:
    err = e.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    return f"{where}: {err['msg']}" + (f" (got {err['input']!r})" if "input" in err else "")


def distributed() -> tuple[int, int]:
    """(rank, world size) of torch.distributed, (0, 1) when it is not initialised."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_rows(t: torch.Tensor) -> torch.Tensor:
    """Every rank's ``t`` (same shape on each), concatenated along dim 0 in rank order; no
    gradient flows through it."""
    import torch.distributed as dist

    parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, t.detach().contiguous())
    return torch.cat(parts)


def _tensor(value: Any, what: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach()
    try:
        return torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError):
        raise ConfigError(
            f"Monitor.log: {what} must be a tensor, got {type(value).__name__}"
        ) from None


def plain_config(config: Any) -> dict[str, Any]:
    """The user's hyperparameters as YAML-able data: mappings (an argparse Namespace, a
    dataclass) with string keys, lists, numbers, strings, booleans and None; a 0-dim tensor or
    NumPy scalar becomes its number, anything else its ``str``."""
    if config is None:
        return {}
    if isinstance(config, argparse.Namespace):
        config = vars(config)
    elif dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = dataclasses.asdict(config)
    if not isinstance(config, Mapping):
        raise ConfigError(
            f"Monitor: config must be a dict of your hyperparameters, got {type(config).__name__}"
        )
    return _plain(config)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):
        return value.item()
    return str(value)
