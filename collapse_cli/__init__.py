"""collapse: an experiment runner for studying representation collapse in embedding models.

``run_experiment`` and ``load_run`` are imported lazily so that ``collapse --help`` stays fast
and never imports torch.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "load_run", "run_experiment"]


def __getattr__(name: str) -> Any:
    if name == "run_experiment":
        from .api import run_experiment

        return run_experiment
    if name == "load_run":
        from .rundata import load_run

        return load_run
    raise AttributeError(f"module 'collapse_cli' has no attribute {name!r}")
