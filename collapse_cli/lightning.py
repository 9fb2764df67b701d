"""``CollapseMonitor``: a Lightning callback that writes the collapse metrics of a
LightningModule's training steps as a run folder, through `Monitor`.

Needs ``lightning`` (``import lightning.pytorch``) or ``pytorch-lightning``
(``pip install 'collapse-cli[lightning]'``); the one your code has already imported is used.
"""

from __future__ import annotations

import importlib
import inspect
import math
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from .errors import ConfigError
from .training.monitor import Monitor


def _lightning() -> Any:
    """lightning.pytorch or pytorch_lightning: the one already imported, else the first found."""
    for name in ("lightning.pytorch", "pytorch_lightning"):
        if name in sys.modules:
            return sys.modules[name]
    for name in ("lightning.pytorch", "pytorch_lightning"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise ConfigError(
        "collapse_cli.lightning needs Lightning: pip install 'collapse-cli[lightning]' "
        "(pytorch-lightning) or pip install lightning"
    )


pl = _lightning()
Embeddings = Callable[..., Any]


def default_embeddings(outputs: Any) -> Any:
    """``outputs["z"]`` (and ``outputs["z_pos"]`` when there is one): what training_step
    returned alongside its loss."""
    if not isinstance(outputs, Mapping) or "z" not in outputs:
        mapping = isinstance(outputs, Mapping)
        got = f"a dict with keys {sorted(outputs)}" if mapping else type(outputs).__name__
        raise ConfigError(
            f"CollapseMonitor: training_step returned {got}; return a dict with 'z' (the "
            "embeddings, and 'z_pos' for their positives) beside 'loss', or give "
            "CollapseMonitor(embeddings=callable)"
        )
    return outputs["z"] if outputs.get("z_pos") is None else (outputs["z"], outputs["z_pos"])


class CollapseMonitor(pl.Callback):  # type: ignore[misc,name-defined]
    """Measure a LightningModule's embeddings every ``every_n_steps`` optimizer steps.

    ``embeddings`` turns a training step's outputs (what ``training_step`` returned), and the
    batch when it takes two arguments, into z (N, d) or a pair (z, z_pos); by default
    ``outputs["z"]`` and ``outputs["z_pos"]``. The loss is ``outputs["loss"]`` (or the outputs
    themselves when they are a tensor), ``grad_norm`` comes from the module's parameters.
    ``config`` defaults to the module's ``hparams`` and the trainer's settings; ``name`` to the
    module's class name.

    Under several processes every rank computes its embeddings, they are gathered
    (``pl_module.all_gather``, the loss averaged), and only rank 0 writes the run folder.

    ``stop_on`` is the rule of ``train.stop_on`` (``{"verdict": "complete collapse",
    "patience": K}``): once it holds, rank 0's Monitor says so and every rank's trainer stops
    after that step (``trainer.should_stop``); the run ends ``stopped``.

    >>> monitor = CollapseMonitor(every_n_steps=50)  # doctest: +SKIP
    >>> Trainer(max_steps=500, callbacks=[monitor]).fit(model, data)  # doctest: +SKIP
    """

    def __init__(
        self,
        every_n_steps: int = 50,
        embeddings: Embeddings | None = None,
        *,
        runs_dir: str | Path = "runs",
        name: str | None = None,
        config: Mapping[str, Any] | None = None,
        stop_on: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(every_n_steps, int) or every_n_steps < 1:
            raise ConfigError(f"CollapseMonitor: every_n_steps must be >= 1, got {every_n_steps!r}")
        if stop_on is not None:  # checked now, as the Monitor checks it, not at the first step
            try:
                Monitor(stop_on=stop_on)
            except ConfigError as e:
                raise ConfigError(f"Collapse{e}") from None  # "CollapseMonitor: stop_on..."
        self.stop_on = stop_on
        self.every = every_n_steps
        self.embeddings = embeddings or default_embeddings
        self._with_batch = _takes_two(self.embeddings)
        self.runs_dir, self.name, self.config = runs_dir, name, config
        self.monitor: Monitor | None = None
        self._logged: int | None = None  # the last step logged
        self._last: int | None = None  # the last optimizer step of the fit, when known

    @property
    def path(self) -> Path | None:
        """The run folder (rank 0, once the first step was logged)."""
        return self.monitor.path if self.monitor is not None else None

    # ------------------------------------------------------------------ hooks
    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        total = trainer.estimated_stepping_batches  # optimizer steps of the fit (inf: unknown)
        self._logged, self._last = None, int(total) - 1 if math.isfinite(total) else None
        if not trainer.is_global_zero:
            return
        settings = {"max_steps": trainer.max_steps, "max_epochs": trainer.max_epochs}
        settings |= {"world_size": trainer.world_size}
        settings |= {"accumulate_grad_batches": trainer.accumulate_grad_batches}
        config = self.config if self.config is not None else {
            "trainer": settings, **dict(getattr(pl_module, "hparams", {}) or {})
        }  # fmt: skip
        self.monitor = Monitor(
            self.runs_dir,
            name=self.name or type(pl_module).__name__,
            config=config,
            objective=None,
            versions={"lightning": pl.__version__},
            gather=False,  # gathered here, through the strategy
            stop_on=self.stop_on,
        )
        self.monitor.__enter__()

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step - 1  # the optimizer step this batch ended
        if step < 0 or step == self._logged or (step % self.every and step != self._last):
            return
        self._logged = step
        z, z_pos = self._embeddings(outputs, batch)
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        loss = loss.detach() if isinstance(loss, torch.Tensor) else loss
        if trainer.world_size > 1:  # a collective: every rank takes part
            z = pl_module.all_gather(z).flatten(0, 1)
            z_pos = None if z_pos is None else pl_module.all_gather(z_pos).flatten(0, 1)
            if isinstance(loss, torch.Tensor):
                loss = pl_module.all_gather(loss).mean()
        if trainer.is_global_zero and self.monitor is not None:
            self.monitor.log(step, z, z_pos, loss=loss, parameters=pl_module.parameters())
        if self.stop_on is not None:  # rank 0 judges; every rank stops after this step
            dead = trainer.is_global_zero and self.monitor is not None and self.monitor.should_stop
            if trainer.strategy.reduce_boolean_decision(bool(dead), all=False):
                trainer.should_stop = True

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        if self.monitor is not None:
            self.monitor.__exit__(None, None, None)

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        if self.monitor is not None:
            self.monitor.__exit__(type(exception), exception, None)

    # ------------------------------------------------------------------ embeddings
    def _embeddings(self, outputs: Any, batch: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        got = self.embeddings(outputs, batch) if self._with_batch else self.embeddings(outputs)
        z, z_pos = got if isinstance(got, (tuple, list)) and len(got) == 2 else (got, None)
        if not _matrix(z) or not (z_pos is None or (_matrix(z_pos) and z_pos.shape == z.shape)):
            raise ConfigError(
                f"CollapseMonitor: embeddings returned {_describe(got)}; expected an (N, d) "
                "tensor with N >= 2, or a pair (z, z_pos) of two of the same shape"
            )
        return z.detach(), None if z_pos is None else z_pos.detach()


def _matrix(t: Any) -> bool:
    return isinstance(t, torch.Tensor) and t.ndim == 2 and t.shape[0] >= 2 and t.shape[1] >= 1


def _describe(got: Any) -> str:
    if isinstance(got, torch.Tensor):
        return f"a tensor of shape {tuple(got.shape)}"
    if isinstance(got, (tuple, list)):
        return f"a {type(got).__name__} of {', '.join(_describe(g) for g in got)}"
    return f"a {type(got).__name__}"


def _takes_two(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` takes (outputs, batch) rather than (outputs)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind is p.VAR_POSITIONAL for p in params)
