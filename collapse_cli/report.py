"""What a person sees while a run goes: a live Rich display in a terminal, plain lines elsewhere."""

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
from rich.table import Table
from rich.text import Text

from .verdict import COMPLETE, DIMENSIONAL, min_eig_text

# (key, header) of the live table and the plain lines, in order.
COLUMNS = [
    ("step", "step"),
    ("loss", "loss"),
    ("variance", "variance"),
    ("min_eig", "min eig"),
    ("rank", "rank"),
    ("effective_rank", "eff. rank"),
    ("grad_norm", "grad norm"),
]


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return str(value)
    return f"{value:.4g}" if 1e-3 <= abs(value) < 1e5 or value == 0 else f"{value:.3e}"


def cells(row: dict[str, Any], dim: int) -> dict[str, str]:
    """The displayed text of each column; λ_min reads ``0 (rank 32/128)`` when it is structural."""
    out = {key: fmt(row.get(key)) for key, _ in COLUMNS}
    out["min_eig"] = min_eig_text(row.get("min_eig"), row.get("rank"), dim)
    if row.get("rank") is not None:
        out["rank"] = f"{row['rank']}/{dim}"
    return out


class _Collapse:
    """Decides which cells to highlight: the variance fading, the effective rank shrinking."""

    def __init__(self, thresholds: dict[str, float]) -> None:
        self.t = thresholds
        self.first: dict[str, Any] | None = None

    def styles(self, row: dict[str, Any]) -> dict[str, str]:
        self.first = self.first or row
        var0, er0 = self.first.get("variance"), self.first.get("rank")
        out = {}
        var = row.get("variance")
        if var is not None and var0 and var <= self.t["complete_variance_ratio"] * var0:
            out["variance"] = "bold red"
        er = row.get("effective_rank")
        if er is not None and er0 and er < self.t["dimensional_fraction"] * er0:
            out["effective_rank"] = "bold red"
        return out


class _Speed(ProgressColumn):
    def render(self, task: Any) -> Text:
        return Text(f"{task.speed:,.0f} steps/s" if task.speed else "- steps/s", style="cyan")


class LiveReporter:
    """A progress bar with steps/s and ETA over a table of the last logged steps."""

    def __init__(self, console: Console, title: str, thresholds: dict[str, float], keep: int = 12):
        self.console, self.title = console, title
        self.rows: deque[tuple[dict[str, str], dict[str, str]]] = deque(maxlen=keep)
        self.collapse = _Collapse(thresholds)
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

    def _table(self) -> Table:
        table = Table(title=self.title, title_justify="left", expand=False)
        for _, header in COLUMNS:
            table.add_column(header, justify="right", no_wrap=True)
        for text, style in self.rows:
            table.add_row(*(Text(text[k], style=style.get(k, "")) for k, _ in COLUMNS))
        return table

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
        if now - self._touched >= 0.1 or step == self.steps:
            self._touched = now
            self.progress.update(self.task, completed=step)

    def log(self, row: dict[str, Any], dim: int) -> None:
        styles = self.collapse.styles(row)
        if row.get("rank") is not None and row["rank"] < dim:
            styles["min_eig"] = "yellow"
        self.rows.append((cells(row, dim), styles))
        if self.live:
            self.live.update(Group(self.progress, self._table()))

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
        c = cells(row, dim)
        parts = [f"step {c['step']}/{self.steps}"]
        parts += [f"{key} {c[key]}" for key, _ in COLUMNS[1:]]
        self.console.print("  ".join(parts), highlight=False, markup=False, soft_wrap=True)

    def stop(self) -> None: ...


def make_reporter(console: Console, mode: str, title: str, thresholds: dict[str, float]) -> Any:
    """``live`` in a terminal, ``plain`` otherwise (``--quiet`` passes no reporter at all)."""
    if mode == "live" or (mode == "auto" and console.is_terminal):
        return LiveReporter(console, title, thresholds)
    return PlainReporter(console)


def print_summary(console: Console, path: Any, summary: dict[str, Any]) -> None:
    """The closing lines of a run: verdict, final numbers, and the run folder's path last."""
    final = summary.get("final", {})
    dim = summary.get("dim", 0)
    verdict = summary.get("verdict", "no metrics logged")
    colour = {COMPLETE: "red", DIMENSIONAL: "yellow"}.get(verdict, "green")
    status = summary.get("status", "?")
    console.print(
        f"[bold]{summary.get('name')}[/]: {status} after {summary.get('steps_done')} steps "
        f"in {summary.get('wall_time_s', 0):.1f} s "
        f"({summary.get('steps_per_second') or 0:,.0f} steps/s)"
    )
    if final:
        c = cells(final, dim)
        console.print(
            f"  verdict: [bold {colour}]{verdict}[/] ({summary.get('verdict_reason', '')})",
            highlight=False,
            soft_wrap=True,
        )
        console.print(
            "  final: " + "  ".join(f"{k} {c[k]}" for k, _ in COLUMNS[1:] if k != "rank"),
            highlight=False,
            soft_wrap=True,
        )
        if "min_eig_note" in summary:
            note = summary["min_eig_note"]
            console.print(f"  [yellow]note:[/] {note}", highlight=False, soft_wrap=True)
    console.print(str(path), highlight=False, soft_wrap=True)
