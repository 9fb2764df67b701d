"""What a sweep shows: a live bar of the runs and a row per run that ended (plain lines
elsewhere), its closing lines, and the comparison of runs grouped by seed (mean ± std)."""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from .tables import print_figures, print_predictors
from .text import fmt, marked, print_error, print_lines, print_table

ENDED_STATES = ("completed", "stopped", "diverged", "failed")  # a run in these is done


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
        done = sum(c.get(s, 0) for s in ENDED_STATES)
        parts = [f"{done}/{self.total} done", f"{c.get('running', 0)} running"]
        shown = ("stopped", "failed", "diverged", "interrupted")
        parts += [f"{c[s]} {s}" for s in shown if c.get(s)]
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
        ended = sum(c.get(s, 0) for s in (*ENDED_STATES, "interrupted"))
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
    order = ("completed", "stopped", "diverged", "failed", "interrupted", "running", "pending")
    states = ", ".join(
        f"{c[s]} {'not started' if s == 'pending' else s}" for s in order if c.get(s)
    )
    console.print(f"[bold]{escape(index.get('id', ''))}[/]: {total} runs: {states}", soft_wrap=True)
    verdicts: dict[str, int] = {}
    for entry in index.get("runs", []):
        if entry.get("status") in ("completed", "stopped") and entry.get("verdict"):
            verdicts[entry["verdict"]] = verdicts.get(entry["verdict"], 0) + 1
    if verdicts:
        shown = [Text(f"{n} ") + marked(v) for v, n in verdicts.items()]
        console.print(Text("  verdicts: ") + Text(", ").join(shown), soft_wrap=True)
    for entry in index.get("runs", []):
        if entry.get("status") in ("stopped", "diverged", "failed", "interrupted"):
            where = f" ({entry['folder']})" if entry.get("folder") else ""
            why = entry.get("reason") or "no reason recorded"
            line = Text.assemble("  ", marked(entry["status"]), f" [{entry['index']}] ")
            line.append(f"{_point(entry)}: {why}{where}")
            console.print(line, soft_wrap=True)
    if "log.figures=none" in (index.get("overrides") or []):  # the sweep's default (plan.py)
        print_lines(console, f"  no figures per run (log.figures=none): collapse plot {RUN_HINT}")
    print_lines(console, str(result.path))
    if result.interrupted or c.get("interrupted"):
        print_lines(errors, f"interrupted; collapse sweep --resume {result.path} runs the rest")
        return 130
    bad = [f"{c[s]} {s}" for s in ("failed", "diverged") if c.get(s)]
    if bad:
        print_error(errors, f"{' and '.join(bad)} of {total} runs (listed above)")
        return 1 if c.get("failed") else 3
    return 0


RUN_HINT = "RUN draws a run's, collapse plot SWEEP the study figure"


def _mean_std(stat: tuple[float | None, float | None, int]) -> str:
    mean, std, _ = stat
    if mean is None:
        return "-"
    return fmt(mean) if std is None else f"{fmt(mean)} ± {fmt(std)}"


def print_seed_comparison(console: Console, result: Any) -> None:
    """``collapse compare`` of runs grouped by seed: one row per group with what sets it apart
    as columns, its seeds, majority verdict and the study's metrics as mean ± std; then every
    final metric for every group."""
    from ..reading.sweep import STUDY, TITLES

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
                row = [g.min_eig_text() or text for g, text in zip(groups, row, strict=True)]
            table.add_row(m, *row)
        print_table(console, table)
    for group in result.groups:
        for member in group.members:
            if member.status in ("diverged", "failed"):
                name = member.run.id if member.run else f"seed {member.seed}"
                print_lines(console, f"left out of the means: {name} ({member.status})")
    print_predictors(console, result.predictors)
    if result.out:
        print_figures(console, result.figures, result.out)
