"""``log.at``: where the metrics are measured, the encoder's output, its projector's or the
objective's predictor's, and the forward hooks ("taps") that keep those tensors at log steps.

An objective's ``Output.z`` is one of these representations (`measured`): the projector's
output when the encoder ends in a ``projector`` head or the objective has its own (DINO's
prototype head, whose scores it measures), otherwise the encoder's output. ``log.at`` lists
the representations to measure, the first unprefixed (the names of DESIGN.md: the verdict, the
live table, ``compare`` and ``spectrum.jsonl`` read it), each further one under its name and a
``/`` (``encoder/effective_rank``). Its default is the objective's own, and the encoder as
well where there is a projector in between.

A tap records the first two calls of its module while armed, the step's forward pass on the
first view and on the second (two-view objectives; the second gives ``alignment``). Modules
copied before the taps are set (EMA targets, momentum encoders) carry none.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .. import collectives, metrics
from ..catalogue import AT_SEPARATOR, REPRESENTATIONS
from ..config import RunConfig
from ..errors import ConfigError


def _projector_of(encoder: nn.Module, cfg: RunConfig) -> nn.Module | None:
    """The encoder's ``projector`` head, when its config asks for one: the last module of
    the encoder's Sequential, or the sentence encoder's ``head``."""
    if not cfg.encoder.params().get("projector"):
        return None
    head = getattr(encoder, "head", None)
    if isinstance(head, nn.Module):
        return head
    return encoder[-1] if isinstance(encoder, nn.Sequential) else None


def _predictor_of(objective: nn.Module) -> nn.Module | None:
    predictor = getattr(objective, "predictor", None)
    usable = isinstance(predictor, nn.Module) and not isinstance(predictor, nn.Identity)
    return predictor if usable else None


def places(cfg: RunConfig, encoder: nn.Module, objective: nn.Module) -> dict[str, Any]:
    """Every representation this run can measure: name → (module, "input" | "output"), or
    None for the one that is ``Output.z`` itself (measured as the objective returns it)."""
    own_head = isinstance(getattr(objective, "head", None), nn.Module)  # dino's prototype head
    projector = _projector_of(encoder, cfg)
    found: dict[str, Any] = {}
    if own_head:
        found |= {"encoder": (encoder, "output"), "projector": None}
    elif projector is not None:
        found |= {"encoder": (projector, "input"), "projector": None}
    else:
        found |= {"encoder": None}
    predictor = _predictor_of(objective)
    if predictor is not None:
        found["predictor"] = (predictor, "output")
    return found


def own_place(found: dict[str, Any]) -> str:
    """The representation that is ``Output.z`` itself, of a `places` answer."""
    return next(name for name, where in found.items() if where is None)


def measured(
    cfg: RunConfig, encoder: nn.Module, objective: nn.Module, found: dict[str, Any] | None = None
) -> list[str]:
    """log.at resolved and checked: the representations measured, the unprefixed one first.
    A representation the run does not have is a ConfigError naming log.at and the objective.
    ``found``: `places` of this run, when the caller has it already."""
    found = places(cfg, encoder, objective) if found is None else found
    own = own_place(found)
    asked = cfg.log.at
    if asked is None:
        return [own] + (["encoder"] if own == "projector" else [])
    asked = [asked] if isinstance(asked, str) else list(asked)
    for name in asked:
        if name not in found:
            what = {"projector": "projector (encoder.projector)", "predictor": "predictor"}
            raise ConfigError(
                f"{cfg.source}: log.at: {name}: loss {cfg.loss.name} with encoder "
                f"{cfg.encoder.name} has no {what.get(name, name)}; it can measure "
                f"{', '.join(n for n in REPRESENTATIONS if n in found)}"
            )
    if len(set(asked)) != len(asked):
        raise ConfigError(f"{cfg.source}: log.at: {asked}: a representation is named twice")
    return asked


def measure_at(
    name: str,
    z: torch.Tensor,
    z_pos: torch.Tensor | None = None,
    precision: torch.dtype | None = None,
) -> dict[str, float]:
    """The metrics of a further place ``name`` (z (N, d) measured there), their keys prefixed
    with it (``encoder/effective_rank``): one `metrics.compute_metrics` (one read-back)."""
    found, _ = metrics.compute_metrics(z, z_pos, precision)
    return {f"{name}{AT_SEPARATOR}{k}": v for k, v in found.items()}


class Taps:
    """The representations of ``log.at`` other than ``Output.z``, recorded while ``armed``.

    The loop arms them around the forward pass of a log step only; between log steps a tap is
    one flag test per call and keeps nothing.
    """

    def __init__(self, cfg: RunConfig, encoder: nn.Module, objective: nn.Module) -> None:
        found = places(cfg, encoder, objective)
        self.names = measured(cfg, encoder, objective, found)
        self.own = own_place(found)
        self.armed = False
        self.seen: dict[str, list[torch.Tensor]] = {}
        self._handles = []
        for name in self.names:
            where = found[name]
            if where is None:
                continue
            module, side = where
            if side == "input":
                hook = module.register_forward_pre_hook(self._keep(name, lambda args, out: args[0]))
            else:
                hook = module.register_forward_hook(self._keep(name, lambda args, out: out))
            self._handles.append(hook)

    def _keep(self, name: str, pick: Any) -> Any:
        def hook(module: nn.Module, args: tuple[Any, ...], out: Any = None) -> None:
            seen = self.seen.setdefault(name, [])
            if self.armed and len(seen) < 2:
                seen.append(pick(args, out).detach())

        return hook

    def pair(self, name: str, out: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(z, z_pos) of one representation at this log step, gathered over the ranks."""
        if name == self.own:
            z, z_pos = out.z.detach(), out.z_pos
        else:
            kept = self.seen.get(name) or []
            if not kept:
                raise RuntimeError(f"log.at: {name} was not computed by this step's forward pass")
            z, z_pos = kept[0], kept[1] if len(kept) > 1 else None
        z = collectives.gather_detached(z)
        z_pos = collectives.gather_detached(z_pos.detach()) if z_pos is not None else None
        return z, z_pos

    def others(self, out: Any, precision: torch.dtype | None) -> dict[str, float]:
        """The metrics of every representation after the first, their keys prefixed: one
        `metrics.compute_metrics` (one read-back) each."""
        values: dict[str, float] = {}
        for name in self.names[1:]:
            values |= measure_at(name, *self.pair(name, out), precision)
        return values

    def clear(self) -> None:
        self.seen = {}

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
