"""The read side: run folders read back (``load_run``), their figures, comparisons and the
list of runs. Never imports torch or the write side, so it starts fast and reads runs made by
any version."""

from .listing import run_table
from .run import Run, Spectrum, load_run

__all__ = ["Run", "Spectrum", "load_run", "run_table"]
