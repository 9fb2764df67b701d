"""Training objectives, one file per family; importing this package registers them all."""

from __future__ import annotations

# Each objective module registers its YAML name on import.
from . import (  # noqa: F401
    alignment,
    barlow_twins,
    byol,
    dino,
    infonce,
    infonce_self,
    moco,
    simsiam,
    variance,
    vicreg,
)
from .base import OBJECTIVES, Objective, Output

__all__ = ["OBJECTIVES", "Objective", "Output"]
