"""checkpoint.pt: what ``--resume`` needs to continue a run exactly where it stopped.

Saving and restoring stand side by side, so that what one writes the other reads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn


@dataclass
class Position:
    """Where the loop stands: steps done, seconds spent, the epoch's order and the place in it."""

    step: int
    elapsed: float
    perm: torch.Tensor  # (n,) the mini-batch order of the current epoch
    pos: int  # the next sample of perm


def save_checkpoint(
    path: Path,
    at: Position,
    encoder: nn.Module,
    objective: nn.Module,
    optimizer: torch.optim.Optimizer,
    generators: dict[str, torch.Generator],
    device: torch.device,
) -> None:
    """Everything that decides the rest of the run, through a temporary file and a rename, so
    a checkpoint is never half written: weights, the objective's state (EMA targets, queues,
    centres), the optimizer, every random generator and the mini-batch position."""
    rng = {"torch": torch.get_rng_state()} | {name: g.get_state() for name, g in generators.items()}
    if device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(device)
    state = {
        "step": at.step,
        "elapsed": at.elapsed,
        "encoder": encoder.state_dict(),
        "objective": objective.state_dict(),
        "optimizer": optimizer.state_dict(),
        "rng": rng,
        "perm": at.perm,
        "pos": at.pos,
    }
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint's state, loaded with ``weights_only=True`` (tensors and plain data only)."""
    return torch.load(path, map_location="cpu", weights_only=True)


def restore_checkpoint(
    state: dict[str, Any],
    encoder: nn.Module,
    objective: nn.Module,
    optimizer: torch.optim.Optimizer,
    generators: dict[str, torch.Generator],
) -> Position:
    """Load a saved state into the live objects; returns where the loop continues."""
    encoder.load_state_dict(state["encoder"])
    objective.load_state_dict(state["objective"])
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"]["torch"])
    for name, g in generators.items():
        g.set_state(state["rng"][name])
    if "cuda" in state["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["rng"]["cuda"])
    return Position(state["step"], state["elapsed"], state["perm"], state["pos"])
