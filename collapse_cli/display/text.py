"""How values read on screen, and tables that fit: columns are dropped by priority, never cut
mid-number (an exponent cut off is the collapse signal lost)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..verdict import COMPLETE, DIMENSIONAL, HEALTHY, NOT_JUDGED, max_eig_text, min_eig_text

WIDE = 200  # the width of tables in output that is not a terminal (files, pipes, CI logs)


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return str(value)
    return f"{value:.4g}" if 1e-3 <= abs(value) < 1e5 or value == 0 else f"{value:.3e}"


def cell(key: str, row: dict[str, Any], dim: int) -> str:
    """The displayed text of one metric: λ_min reads ``0 (rank 32/128)`` when it is structural
    and λ₁ ``0 (rank 0/128)`` when it is round-off, the rank ``32/128``, std_l2 as std_l2·√d
    (1 = spread over the sphere, the verdict's scale)."""
    value = row.get(key)
    if key == "min_eig":
        return min_eig_text(value, row.get("rank"), dim)
    if key == "max_eig" and row.get("rank") == 0 and value is not None:
        return max_eig_text(value, 0, dim)  # round-off only: not beside rank 0
    if key == "rank" and value is not None:
        return f"{value}/{dim}"
    if key == "std_l2" and value is not None and dim:
        return fmt(value * math.sqrt(dim))
    return fmt(value)


STYLES = {COMPLETE: "red", DIMENSIONAL: "yellow", HEALTHY: "green", "running": "cyan"}
STYLES |= {"interrupted": "yellow", "diverged": "red", "failed": "red", "died": "red"}
STYLES |= {NOT_JUDGED: "yellow", "stopped": "yellow"}


def marked(value: str | None) -> Text:
    """A status or verdict in the colour a reader scans for ("-" when there is none)."""
    return Text(value or "-", style=STYLES.get(value or "", ""))


def width_of(console: Console) -> int:
    return console.width if console.is_terminal else WIDE


@dataclass
class Column:
    """One column of a fitted table: its cells, and ``keep``, its priority (lower stays longer)."""

    header: str
    cells: list[Text | str] = field(default_factory=list)
    keep: int = 0
    justify: str = "left"
    wrap: bool = False  # text that may wrap at word boundaries (never numbers or ids)

    def width(self) -> int:
        texts = [c.plain if isinstance(c, Text) else c for c in self.cells]
        widest = max((cell_len(t) for t in texts), default=0)
        return max(cell_len(self.header), 12 if self.wrap else widest)


def fit(columns: list[Column], width: int) -> list[Column]:
    """The columns that fit in ``width`` (padding and borders counted), chosen by priority and
    shown in their own order. The first column always stays."""
    chosen: set[int] = set()
    used = 1  # the left border
    for i in sorted(range(len(columns)), key=lambda i: (columns[i].keep, i)):
        need = columns[i].width() + 3  # padding on both sides and a border
        if not chosen or used + need <= width:
            chosen.add(i)
            used += need
    return [c for i, c in enumerate(columns) if i in chosen]


def fitted_table(columns: list[Column], width: int, **table: Any) -> Table:
    """A Rich table of the columns that fit, every cell whole."""
    out = Table(title_justify="left", **table)
    shown = fit(columns, width)
    for c in shown:
        out.add_column(c.header, justify=c.justify, no_wrap=not c.wrap)  # type: ignore[arg-type]
    for r in range(max((len(c.cells) for c in shown), default=0)):
        out.add_row(*(c.cells[r] for c in shown))
    return out


def print_table(console: Console, table: Table) -> None:
    """Print a table; piped output keeps its rows whole instead of wrapping them at Rich's
    default 80 columns, which no terminal imposes there."""
    if not console.is_terminal:
        console = Console(file=console.file, width=WIDE, highlight=False)
    console.print(table)


def print_lines(console: Console, *lines: str) -> None:
    """Plain text, never read as markup (paths and names may hold square brackets)."""
    for line in lines:
        console.print(line, soft_wrap=True, markup=False, highlight=False)


def print_note(console: Console, text: str) -> None:
    """A sentence for the reader, wrapped at word boundaries, never read as markup."""
    console.print(text, markup=False, highlight=False)


def print_error(console: Console, message: str) -> None:
    """``error: <message>`` in red, the message itself never read as markup."""
    console.print(Text.assemble(("error:", "bold red"), " ", message), soft_wrap=True)


def print_fields(console: Console, fields: list[tuple[str, Text | str]], indent: int = 2) -> None:
    """``label: value`` lines whose values wrap at word boundaries under themselves."""
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True)
    grid.add_column(overflow="fold")
    for label, value in fields:
        grid.add_row(" " * indent + f"{label}:", value)
    console.print(grid)  # at the console's width: the terminal's, or 80 in a file or a pipe
