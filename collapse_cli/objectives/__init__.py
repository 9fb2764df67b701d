"""Training objectives, one file per family; importing this package registers them all."""

from __future__ import annotations

# Each objective module registers its YAML name on import.
from . import infonce_self, variance  # noqa: F401
from .base import OBJECTIVES, Objective, Output

__all__ = ["OBJECTIVES", "Objective", "Output"]
