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
    if hasattr(result, "groups"):  # runs that differ only in seed
        return print_seed_comparison(console, result)
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


# --------------------------------------------------------------------------- sweeps
def _point(entry: dict[str, Any]) -> str:
    """``loss.temperature=0.1 optimizer.lr=0.001 seed=2``: what sets a run of a sweep apart."""
    params = " ".join(f"{k}={v}" for k, v in (entry.get("params") or {}).items())
    return f"{params} seed={entry.get('seed')}".strip()


def sweep_counts(index: dict[str, Any]) -> dict[str, int]:
    """How many runs of a sweep are in each state (pending, running, completed, ...)."""
    counts: dict[str, int] = {}
    for entry in index.get("runs", []):
        counts[entry.get("status", "pending")] = counts.get(entry.get("status", "pending"), 0) + 1
    return counts


def _many(n: Any, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


class _SweepClock:
    """Counts and an ETA from the runs ended so far in this call: remaining ÷ (ended per
    second), which already counts the runs going side by side."""

    def start(self, index: dict[str, Any], todo: int) -> None:
        self.index, self.todo, self.t0 = index, todo, time.monotonic()
        self.total = len(index.get("runs", []))
        self.ended_here = 0

    def counts(self) -> dict[str, int]:
        return sweep_counts(self.index)

    def eta(self) -> str:
        c = self.counts()
        left = c.get("pending", 0) + c.get("running", 0)
        if not self.ended_here or not left:
            return "-" if left else "0:00"
        seconds = left * (time.monotonic() - self.t0) / self.ended_here
        return f"{int(seconds // 60)}:{int(seconds % 60):02d}"

    def status_line(self) -> str:
        c = self.counts()
        done = sum(c.get(s, 0) for s in ("completed", "diverged", "failed"))
        parts = [f"{done}/{self.total} done", f"{c.get('running', 0)} running"]
        parts += [f"{c[s]} {s}" for s in ("failed", "diverged", "interrupted") if c.get(s)]
        return ", ".join(parts) + f", eta {self.eta()}"


def _ended_cells(entry: dict[str, Any]) -> list[str]:
    wall = entry.get("wall_time_s")
    return [
        str(entry.get("index")),
        _point(entry),
        entry.get("status", "?"),
        entry.get("verdict") or "-",
        fmt(entry.get("effective_rank")),
        f"{wall:.1f} s" if isinstance(wall, (int, float)) else "-",
    ]


class LiveSweepReporter(_SweepClock):
    """A bar of the runs ended over a table with one row per run ended, newest last."""

    HEADERS = ("#", "run", "status", "verdict", "eff. rank", "time")

    def __init__(self, console: Console, keep: int = 15) -> None:
        self.console = console
        self.rows: deque[list[str]] = deque(maxlen=keep)
        self.live: Live | None = None

    def _render(self) -> Group:
        from rich.progress_bar import ProgressBar

        c = self.counts()
        ended = sum(c.get(s, 0) for s in ("completed", "diverged", "failed", "interrupted"))
        table = Table(title=escape(self.index.get("id", "sweep")), title_justify="left")
        for header in self.HEADERS:
            right = header in ("#", "eff. rank", "time")
            table.add_column(header, justify="right" if right else "left")
        for cells_ in self.rows:
            table.add_row(*cells_[:2], marked(cells_[2]), marked(cells_[3]), *cells_[4:])
        head = Table.grid(padding=(0, 1))
        head.add_row("runs", ProgressBar(total=max(self.total, 1), completed=ended, width=40),
                     escape(self.status_line()))  # fmt: skip
        return Group(head, table)

    def start(self, index: dict[str, Any], todo: int) -> None:
        super().start(index, todo)
        self.live = Live(self._render(), console=self.console, refresh_per_second=4)
        self.live.start()

    def update(self, entry: dict[str, Any] | None) -> None:
        if entry is not None:
            self.ended_here += 1
            self.rows.append(_ended_cells(entry))
        if self.live:
            self.live.update(self._render())

    def stop(self) -> None:
        if self.live:
            self.live.stop()
            self.live = None


class PlainSweepReporter(_SweepClock):
    """One line when the sweep starts and one per run that ends (logs, pipes, CI)."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def start(self, index: dict[str, Any], todo: int) -> None:
        super().start(index, todo)
        ex = index.get("executor") or {}
        how = f"{ex.get('name')}: {_many(ex.get('workers'), 'worker')} × "
        how += _many(ex.get("threads"), "thread")
        print_lines(self.console, f"{index.get('id')}: {todo} of {self.total} runs to go ({how})")

    def update(self, entry: dict[str, Any] | None) -> None:
        if entry is None:
            return
        self.ended_here += 1
        index, point, status, verdict, rank, wall = _ended_cells(entry)
        line = f"[{index}] {status}  {point}  {verdict}  eff. rank {rank}  {wall}"
        print_lines(self.console, f"{line}  ({self.status_line()})")

    def stop(self) -> None: ...


def make_sweep_reporter(console: Console, mode: str) -> Any:
    """``live`` in a terminal, ``plain`` otherwise."""
    if mode == "live" or (mode == "auto" and console.is_terminal):
        return LiveSweepReporter(console)
    return PlainSweepReporter(console)


def print_sweep_plan(console: Console, plan: Any) -> None:
    """``collapse sweep --dry-run``: every run the sweep would start, and that it is valid."""
    seeds = sorted({p["seed"] for p in plan.points})
    shape = " × ".join(f"{len(v)} {k}" for k, v in plan.grid.items()) or "1 config"
    print_lines(console, f"{plan.name}: {len(plan.points)} runs ({shape} × {len(seeds)} seeds)")
    for p in plan.points:
        print_lines(console, f"  [{p['index']}] {_point(p)}")
    console.print(Text.assemble(("ok", "green"), f": every point of {plan.source} is valid"))


def print_sweep_summary(console: Console, errors: Console, result: Any) -> int:
    """The closing lines of a sweep: counts, verdicts, every run that did not complete and why,
    and the sweep folder last. Returns the exit code: 130 interrupted, 1 a run failed, 3 a run
    diverged, else 0."""
    index = result.index
    c = sweep_counts(index)
    total = len(index.get("runs", []))
    order = ("completed", "diverged", "failed", "interrupted", "running", "pending")
    states = ", ".join(
        f"{c[s]} {'not started' if s == 'pending' else s}" for s in order if c.get(s)
    )
    console.print(f"[bold]{escape(index.get('id', ''))}[/]: {total} runs: {states}", soft_wrap=True)
    verdicts: dict[str, int] = {}
    for entry in index.get("runs", []):
        if entry.get("status") == "completed" and entry.get("verdict"):
            verdicts[entry["verdict"]] = verdicts.get(entry["verdict"], 0) + 1
    if verdicts:
        shown = [Text(f"{n} ") + marked(v) for v, n in verdicts.items()]
        console.print(Text("  verdicts: ") + Text(", ").join(shown), soft_wrap=True)
    for entry in index.get("runs", []):
        if entry.get("status") in ("diverged", "failed", "interrupted"):
            where = f" ({entry['folder']})" if entry.get("folder") else ""
            why = entry.get("reason") or "no reason recorded"
            line = Text.assemble("  ", marked(entry["status"]), f" [{entry['index']}] ")
            line.append(f"{_point(entry)}: {why}{where}")
            console.print(line, soft_wrap=True)
    print_lines(console, str(result.path))
    if result.interrupted or c.get("interrupted"):
        print_lines(errors, f"interrupted; collapse sweep --resume {result.path} runs the rest")
        return 130
    bad = [f"{c[s]} {s}" for s in ("failed", "diverged") if c.get(s)]
    if bad:
        print_error(errors, f"{' and '.join(bad)} of {total} runs (listed above)")
        return 1 if c.get("failed") else 3
    return 0


def _mean_std(stat: tuple[float | None, float | None, int]) -> str:
    mean, std, _ = stat
    if mean is None:
        return "-"
    return fmt(mean) if std is None else f"{fmt(mean)} ± {fmt(std)}"


def _structural(group: Any) -> str | None:
    """``0 (rank 32/128)`` when λ_min is structurally zero in every completed run of a group."""
    ranks = {int(f["rank"]) for f in group.finals if isinstance(f.get("rank"), int)}
    dims = {r.dim for r in group.used}
    if len(ranks) == 1 and len(dims) == 1 and len(group.finals) == len(group.used):
        rank, dim = ranks.pop(), dims.pop()
        return min_eig_text(0.0, rank, dim) if dim and is_structural(rank, dim) else None
    return None


def print_seed_comparison(console: Console, result: Any) -> None:
    """``collapse compare`` of runs grouped by seed: one row per group with what sets it apart
    as columns, its seeds, majority verdict and the study's metrics as mean ± std; then every
    final metric for every group."""
    from .reading.sweep import STUDY, TITLES

    study = [m for m in STUDY if m in result.metrics]
    table = Table(title=f"{escape(result.title)}: final metrics, mean ± std over the completed "
                  "seeds", title_justify="left")  # fmt: skip
    for header in ["#", *result.keys, "seeds", "majority"]:
        table.add_column(escape(header), no_wrap=header == "#")
    for m in study:
        table.add_column(TITLES[m], justify="right", no_wrap=True)
    for i, group in enumerate(result.groups):
        outcome, count = group.majority()
        n = len(group.members)
        seeds = f"{len(group.used)}" + (f" of {n}" if len(group.used) < n else "")
        params = [escape(str(group.params.get(k))) for k in result.keys]
        majority = Text.assemble(marked(outcome), f" {count}/{n}")
        cells_ = [_mean_std(group.stat(m)) for m in study]
        table.add_row(f"#{i + 1}", *params, seeds, majority, *cells_)
    print_table(console, table)

    # Every final metric, a block of groups at a time: as many columns as the width holds.
    width = console.width if console.is_terminal else 200
    per = max(1, (width - 24) // 24)
    for start in range(0, len(result.groups) * bool(result.metrics), per):
        groups = result.groups[start : start + per]
        title = "every final metric (mean ± std)"
        if len(result.groups) > per:
            title += f", #{start + 1}–#{start + len(groups)}"
        table = Table(title=title, title_justify="left")
        table.add_column("metric", style="bold", no_wrap=True)
        for i in range(len(groups)):
            table.add_column(f"#{start + i + 1}", justify="right", no_wrap=True)
        for m in result.metrics:
            row = [_mean_std(g.stat(m)) for g in groups]
            if m == "min_eig":  # λ_min below a rank-deficient spectrum reads as what it is
                row = [_structural(g) or text for g, text in zip(groups, row, strict=True)]
            table.add_row(m, *row)
        print_table(console, table)
    for group in result.groups:
        for member in group.members:
            if member.status in ("diverged", "failed"):
                name = member.run.id if member.run else f"seed {member.seed}"
                print_lines(console, f"left out of the means: {name} ({member.status})")
    if result.out:
        print_figures(console, result.figures, result.out)
