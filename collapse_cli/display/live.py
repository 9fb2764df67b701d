"""What a person sees while a run goes: a live Rich display in a terminal, plain lines elsewhere.

The live table keeps the step-0 row as the reference the red cells are judged against, and
drops columns by priority (catalogue ``keep``) so that no number is cut at any width.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from ..catalogue import AT_SEPARATOR, BY_KEY, LIVE
from ..verdict import findings, is_structural
from .text import Column, cell, fitted_table, print_lines

PARTS_KEEP = 10  # logged loss parts come after every metric of the catalogue
SKIP = {"step", "time"}


def live_keys(row: dict[str, Any]) -> list[str]:
    """The columns a row can fill: the catalogue's live metrics it has, then its loss parts
    (numbers that are not in the catalogue); of log.at's further places, the effective rank
    alone (``encoder/effective_rank``; metrics.jsonl has the rest)."""
    keys = [m.key for m in LIVE if m.key in row]
    placed = [k for k in row if AT_SEPARATOR in k]
    parts = [k for k, v in row.items() if k not in BY_KEY and k not in SKIP and k not in placed]
    parts += [k for k in placed if k.endswith(AT_SEPARATOR + "effective_rank")]
    return keys + [k for k in parts if isinstance(row[k], (int, float))]


def header(key: str) -> str:
    """A column's header in the live table."""
    return (BY_KEY[key].live if key in BY_KEY else None) or key.replace("_", " ")


def label(key: str) -> str:
    """A value's name in plain lines and the closing summary: its key, as in metrics.jsonl."""
    return "std_l2·√d" if key == "std_l2" else key


class _Collapse:
    """Which cells to highlight: those of the metrics whose verdict threshold the row crosses,
    judged against the first row logged (step 0), as the verdict is."""

    def __init__(self, thresholds: dict[str, float]) -> None:
        self.thresholds = thresholds
        self.first: dict[str, Any] | None = None

    def styles(self, row: dict[str, Any], dim: int) -> dict[str, str]:
        self.first = self.first or row
        reference_rank = int(self.first.get("rank") or 0)
        found = findings(row, dim, reference_rank, self.thresholds, self.first)
        out = {f.key: "bold red" for f in found}
        if is_structural(row.get("rank"), dim):
            out.setdefault("min_eig", "yellow")
        return out


class _Speed(ProgressColumn):
    def render(self, task: Any) -> Text:
        return Text(f"{task.speed:,.0f} steps/s" if task.speed else "- steps/s", style="cyan")


class LiveReporter:
    """A progress bar with steps/s and ETA over a table of the step-0 row and the last logged
    steps."""

    def __init__(self, console: Console, title: str, thresholds: dict[str, float], keep: int = 12):
        self.console, self.title = console, title
        self.first: tuple[dict[str, Any], dict[str, str]] | None = None
        self.rows: deque[tuple[dict[str, Any], dict[str, str]]] = deque(maxlen=keep - 1)
        self.collapse = _Collapse(thresholds)
        self.dim = 0
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            _Speed(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=console,
        )
        self.live: Live | None = None

    def _table(self) -> Any:
        rows = ([self.first] if self.first else []) + list(self.rows)
        if not rows:
            return Text("")
        keys = live_keys(rows[-1][0])
        columns = [Column("step", [str(r["step"]) for r, _ in rows], keep=0, justify="right")]
        for key in keys:
            texts = [Text(cell(key, r, self.dim), style=s.get(key, "")) for r, s in rows]
            keep = BY_KEY[key].keep if key in BY_KEY else PARTS_KEEP
            columns.append(Column(header(key), texts, keep=keep, justify="right"))
        return fitted_table(columns, self.console.width, title=self.title, expand=False)

    def start(self, steps: int) -> None:
        self.steps, self._touched = steps, 0.0
        self.task = self.progress.add_task("training", total=steps)
        self.live = Live(
            Group(self.progress, self._table()),
            console=self.console,
            refresh_per_second=4,
            transient=False,
        )
        self.live.start()

    def advance(self, step: int) -> None:
        # Called every step: touch the progress bar at most ten times a second, so the display
        # costs the training loop one clock read per step. Live redraws on its own clock.
        now = time.monotonic()
        if now - self._touched >= 0.1 or step >= self.steps:
            self._touched = now
            self.progress.update(self.task, completed=step)

    def log(self, row: dict[str, Any], dim: int) -> None:
        self.dim = dim
        entry = (row, self.collapse.styles(row, dim))
        if self.first is None:
            self.first = entry
        else:
            self.rows.append(entry)
        self._refresh()

    def note(self, text: str) -> None:
        """A line under the table for what happens after the loop ("drawing figures…")."""
        self.progress.update(self.task, description=text)
        self._refresh()

    def _refresh(self) -> None:
        if self.live:
            self.live.update(Group(self.progress, self._table()), refresh=True)

    def stop(self) -> None:
        if self.live:
            self.live.stop()
            self.live = None


class PlainReporter:
    """One line per log step, no control codes (for logs, pipes and CI)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.steps = 0

    def start(self, steps: int) -> None:
        self.steps = steps

    def advance(self, step: int) -> None: ...

    def log(self, row: dict[str, Any], dim: int) -> None:
        parts = [f"step {row['step']}/{self.steps}"]
        parts += [f"{label(key)} {cell(key, row, dim)}" for key in live_keys(row)]
        print_lines(self.console, "  ".join(parts))

    def note(self, text: str) -> None:
        print_lines(self.console, text)

    def stop(self) -> None: ...


def make_reporter(console: Console, mode: str, title: str, thresholds: dict[str, float]) -> Any:
    """``live`` in a terminal, ``plain`` otherwise (``--quiet`` passes no reporter at all)."""
    if mode == "live" or (mode == "auto" and console.is_terminal):
        return LiveReporter(console, title, thresholds)
    return PlainReporter(console)
