"""collapse: an experiment runner for studying representation collapse in embedding models.

The API is imported lazily so that ``collapse --help`` stays fast and never imports torch:
``run_experiment``, ``resume_run``, ``run_sweep``, ``resume_sweep`` and ``Monitor`` (the write
side), ``load_run`` and ``load_sweep`` (the read side).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_API = {
    "run_experiment": ".training",
    "resume_run": ".training",
    "run_sweep": ".training.sweep",
    "resume_sweep": ".training.sweep",
    "Monitor": ".training",
    "load_run": ".reading",
    "load_sweep": ".reading.sweep",
}
__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(import_module(_API[name], __name__), name)
    raise AttributeError(f"module 'collapse_cli' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
