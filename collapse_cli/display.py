"""Everything the CLI shows: the live display of a run (Rich in a terminal, plain lines
elsewhere), its closing summary, and the tables of list, compare, components and inspect.
The only module besides cli.py that imports Rich."""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
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

from .catalogue import LIVE
from .verdict import COMPLETE, DIMENSIONAL, HEALTHY, findings, is_structural, min_eig_text

# (key, header) of the live table and the plain lines, in order: the catalogue's live columns.
COLUMNS = [("step", "step"), *LIVE]


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
    """Which cells to highlight: those of the metrics whose verdict threshold the row crosses,
    judged against the first row logged (step 0), as the verdict is."""

    def __init__(self, thresholds: dict[str, float]) -> None:
        self.thresholds = thresholds
        self.first: dict[str, Any] | None = None

    def styles(self, row: dict[str, Any], dim: int) -> dict[str, str]:
        self.first = self.first or row
        reference_rank = int(self.first.get("rank") or 0)
        found = findings(row, dim, reference_rank, self.thresholds, self.first)
        return {f.key: "bold red" for f in found}


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
        styles = self.collapse.styles(row, dim)
        if is_structural(row.get("rank"), dim):
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
    speed = summary.get("steps_per_second") or 0
    console.print(
        f"[bold]{summary.get('name')}[/]: {status} after {summary.get('steps_done')} steps "
        f"in {summary.get('wall_time_s', 0):.1f} s "
        f"({f'{speed:,.0f}' if speed >= 10 else f'{speed:.2g}'} steps/s)"  # slow runs: not 0
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


# --------------------------------------------------------------------------- tables
def print_table(console: Console, table: Table) -> None:
    """Print a table; piped output (files, CI logs) keeps its rows whole instead of wrapping
    them at Rich's default 80 columns, which no terminal imposes there."""
    (console if console.is_terminal else Console(width=200, highlight=False)).print(table)


def print_lines(console: Console, *lines: str) -> None:
    """Plain text, never read as markup (paths and names may hold square brackets)."""
    for line in lines:
        console.print(line, soft_wrap=True, markup=False, highlight=False)


STYLES = {COMPLETE: "red", DIMENSIONAL: "yellow", HEALTHY: "green", "running": "cyan"}
STYLES |= {"interrupted": "yellow", "diverged": "red", "failed": "red", "died": "red"}


def marked(value: str | None) -> Text:
    """A status or verdict in the colour a reader scans for ("-" when there is none)."""
    return Text(value or "-", style=STYLES.get(value or "", ""))


def print_components(console: Console, regs: dict[str, Any], kind: str | None) -> None:
    """Each registry (or only ``kind``'s) as a table: names, parameters with types and
    defaults, and descriptions."""
    from .registry import type_text

    for block, reg in regs.items():
        if kind not in (None, block):
            continue
        table = Table(title=f"{block}  ([dim]YAML: {block}.name[/])", title_justify="left")
        table.add_column("name", style="bold cyan", no_wrap=True)
        table.add_column("parameters (default)")
        table.add_column("description")
        for name in reg.names():
            params = "\n".join(
                f"{p.name}: {type_text(p.annotation)}"
                + ("  (required)" if p.required else f" = {p.default!r}")
                for p in reg.params(name)
            )
            table.add_row(name, escape(params) or "-", escape(reg.get(name).description))
        console.print(table)


def print_figures(console: Console, paths: list[Any], folder: Any) -> None:
    names = ", ".join(p.name for p in paths)
    print_lines(console, f"{len(paths)} figures: {names}", str(folder))


def print_comparison(console: Console, result: Any) -> None:
    """``collapse compare``: the runs, the config keys that differ, the metrics side by side."""
    cols = [f"#{i + 1}" for i in range(len(result.runs))]
    table = Table(title="runs", title_justify="left")
    for name in ["", "name in legends", "id", "status", "steps", "verdict"]:
        table.add_column(name, no_wrap=name in ("", "id"))
    for col, label, r in zip(cols, result.labels, result.runs, strict=True):
        s = r.summary
        verdict = s.get("verdict") if r.finished else None
        steps = f"{s.get('steps_done', '-')}/{s.get('steps') or '-'}"
        table.add_row(col, escape(label), escape(r.id), marked(r.status), steps, marked(verdict))
    print_table(console, table)

    if result.differing:
        table = Table(title="config keys that differ", title_justify="left")
        for name in ["key", *cols]:
            table.add_column(name)
        for key, values in result.differing.items():
            table.add_row(escape(key), *(escape(str(v)) for v in values))
        print_table(console, table)
    else:
        console.print("[dim]the configs are identical[/]")

    table = Table(title="metrics (Δ: difference to #1)", title_justify="left")
    table.add_column("metric", style="bold")
    table.add_column("")
    for col in cols:
        table.add_column(col, justify="right", no_wrap=True)
    for row in result.rows:
        cells_ = []
        for i, (v, d, text) in enumerate(zip(row.values, row.diffs, row.texts, strict=True)):
            cell = text or fmt(v)
            if i and d is not None and not (text or row.texts[0]):
                cell += f" [dim]({'+' if d >= 0 else ''}{fmt(d)})[/]"
            cells_.append(cell)
        first = row.stat == "final"
        table.add_row(row.metric if first else "", row.stat, *cells_, end_section=row.stat == "max")
    print_table(console, table)
    if result.out:
        print_figures(console, result.figures, result.out)


def print_runs(console: Console, runs_dir: Any, rows: list[dict[str, Any]]) -> None:
    """``collapse list``: one row per run, newest first."""
    from rich import box

    if not rows:
        print_lines(console, f"no runs in {runs_dir}")
        return
    table = Table(title=escape(str(runs_dir)), title_justify="left", box=box.SIMPLE_HEAD)
    for name in ["id", "status", "objective", "steps", "variance", "eff. rank", "verdict"]:
        numeric = name in ("steps", "variance", "eff. rank")
        # The id is what the user copies into plot/compare: never cut it.
        table.add_column(
            name, justify="right" if numeric else "left", no_wrap=name == "id" or numeric
        )
    for r in rows:
        table.add_row(
            escape(r["id"]),
            marked(r["status"]),
            escape(str(r["objective"] or "-")),
            f"{fmt(r['steps_done'])}/{fmt(r['steps'])}",
            fmt(r["variance"]),
            fmt(r["effective_rank"]),
            marked(r["verdict"]),
        )
    print_table(console, table)


def print_inspection(console: Console, name: str, report: Any) -> None:
    """``collapse inspect``: every metric with its value and reading, then the verdict."""
    (n, d), m = report.shape, report.metrics
    title = f"{escape(name)}: N = {n}, d = {d}, {report.dtype}"
    table = Table(title=title, title_justify="left")
    table.add_column("metric", style="bold", no_wrap=True)
    table.add_column("value", justify="right", no_wrap=True)
    table.add_column("reading")
    for key, value in m.items():
        shown = {"min_eig": min_eig_text(value, m["rank"], d), "rank": f"{value}/{d}"}
        table.add_row(key, shown.get(key, fmt(value)), escape(report.readings.get(key, "")))
    print_table(console, table)
    console.print(Text.assemble("verdict: ", marked(report.verdict), f" ({report.reason})"))


def print_error(console: Console, message: str) -> None:
    """``error: <message>`` in red, the message itself never read as markup."""
    console.print(Text.assemble(("error:", "bold red"), " ", message), soft_wrap=True)


def print_ending(console: Console, path: Any, summary: dict[str, Any]) -> int:
    """What stderr says when a run did not complete; returns the exit code (0 completed, 3
    diverged, 130 interrupted)."""
    status = summary.get("status")
    if status == "diverged":
        print_error(console, f"run diverged: {summary['divergence']}")
        return 3
    if status == "interrupted":
        what = f"interrupted after {summary['steps_done']} steps; {path} holds what ran"
        print_lines(console, what)
        return 130
    return 0


def print_valid(console: Console, resolved_yaml: str, config: Any) -> None:
    """``collapse validate``: the resolved config, then that it is valid."""
    print_lines(console, resolved_yaml.rstrip())
    console.print(Text.assemble(("ok", "green"), f": {config} is a valid config"))


def print_inspected(
    console: Console,
    errors: Console,
    name: str,
    report: Any,
    folder: Any,
    replaced: list[str],
    as_json: bool,
) -> None:
    """``collapse inspect``: the table (or inspect.json on stdout) and where the files went."""
    import json

    note = f" (replaced {' and '.join(replaced)})" if replaced else ""
    written = f"wrote inspect.json and spectrum.png{note} in"
    if as_json:
        print(json.dumps(report.to_json(), indent=2, ensure_ascii=False))
        print_lines(errors, written, str(folder))
        return
    print_inspection(console, name, report)
    print_lines(console, written, str(folder))
