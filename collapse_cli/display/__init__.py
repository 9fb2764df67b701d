"""Everything the CLI shows: the live display of a run (Rich in a terminal, plain lines
elsewhere), its closing lines, and the tables of list, compare, components and inspect. With
cli.py the only code that imports Rich."""

from .live import LiveReporter, PlainReporter, make_reporter
from .tables import (
    print_comparison,
    print_components,
    print_ending,
    print_figures,
    print_inspected,
    print_inspection,
    print_runs,
    print_start,
    print_summary,
    print_valid,
)
from .text import fmt, print_error, print_lines

__all__ = [
    "LiveReporter",
    "PlainReporter",
    "fmt",
    "make_reporter",
    "print_comparison",
    "print_components",
    "print_ending",
    "print_error",
    "print_figures",
    "print_inspected",
    "print_inspection",
    "print_lines",
    "print_runs",
    "print_start",
    "print_summary",
    "print_valid",
]
