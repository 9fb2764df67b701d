"""The closing lines of a run, and the tables of list, compare, components and inspect."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ..reading.compare import STATS, visible
from ..verdict import NOT_JUDGED
from .live import label, live_keys
from .text import (
    WIDE,
    Column,
    cell,
    fitted_table,
    fmt,
    marked,
    print_error,
    print_fields,
    print_lines,
    print_note,
    print_table,
    width_of,
)


# --------------------------------------------------------------------------- a run
def print_summary(console: Console, path: Any, summary: dict[str, Any]) -> None:
    """The closing lines of a run: verdict, final numbers, and the run folder's path last."""
    final = summary.get("final", {})
    dim = summary.get("dim", 0)
    status = summary.get("status", "?")
    speed = summary.get("steps_per_second") or 0
    head = Text.assemble(
        (str(summary.get("name")), "bold"),
        f": {status} after {summary.get('steps_done')}/{summary.get('steps')} steps "
        f"in {summary.get('wall_time_s', 0):.1f} s "
        f"({f'{speed:,.0f}' if speed >= 10 else f'{speed:.2g}'} steps/s)",  # slow runs: not 0
    )
    console.print(head, soft_wrap=True)
    fields: list[tuple[str, Text | str]] = []
    if final:
        verdict = summary.get("verdict") or NOT_JUDGED
        reason = summary.get("verdict_reason", "")
        fields.append(("verdict", Text.assemble(marked(verdict), f" ({reason})" * bool(reason))))
        keys = [k for k in live_keys(final) if k != "rank"]
        fields.append(("final", "  ".join(f"{label(k)} {cell(k, final, dim)}" for k in keys)))
        if "min_eig_note" in summary:
            fields.append(("note", summary["min_eig_note"]))
        if summary.get("dimensions"):
            fields.append(
                ("axes", dimensions_line(summary["dimensions"], dim))
            )  # no wider than "verdict"
    print_fields(console, fields)
    print_lines(console, str(path))


def print_start(console: Console, job: Any) -> None:
    """What a run says before it starts: the step a resume continues from, and the default
    augmentations a partial views block leaves on."""
    cfg = getattr(job, "cfg", job)
    if hasattr(job, "state"):  # a Resumable
        print_lines(console, f"resuming {job.path} from step {job.step} of {cfg.train.steps}")
    kept = cfg.views.kept_defaults()
    if kept:
        print_note(
            console,
            f"views: also on by default: {', '.join(kept)} (set them to 0, [1, 1] or null to "
            "turn them off; collapse components views)",
        )


def print_ending(console: Console, path: Any, summary: dict[str, Any]) -> int:
    """What stderr says when a run did not complete; returns the exit code (0 completed, 3
    diverged, 130 interrupted; 0 for a run stopped by train.stop_on)."""
    status = summary.get("status")
    if status == "diverged":
        print_error(console, f"run diverged: {summary['divergence']}")
        return 3
    if status == "stopped":  # train.stop_on: an ending the config asked for, exit code 0
        print_lines(console, f"stopped early: {summary.get('stop_reason')}")
        return 0
    if status == "interrupted":
        what = f"interrupted after {summary['steps_done']} steps; {path} holds what ran"
        print_lines(console, what, f"to continue it: collapse run --resume {path}")
        return 130
    return 0


def print_valid(console: Console, errors: Console, resolved_yaml: str, config: Any) -> None:
    """``collapse validate``: the resolved config on stdout, that it is valid on stderr."""
    print_lines(console, resolved_yaml.rstrip())
    errors.print(Text.assemble(("ok", "green"), f": {config} is a valid config"))


def print_figures(console: Console, paths: list[Any], folder: Any) -> None:
    names = ", ".join(p.name for p in paths)
    print_lines(console, f"{len(paths)} figures: {names}", str(folder))


# --------------------------------------------------------------------------- components
def print_components(console: Console, regs: dict[str, Any], kind: str | None) -> None:
    """Each registry (or only ``kind``'s) as a table: names, parameters with types and
    defaults, and descriptions."""
    from ..registry import type_text

    if kind in (None, "views"):
        _print_views(console, type_text)
    if kind == "views":
        return
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


def _print_views(console: Console, type_text: Any) -> None:
    """The keys of the views block, with types, defaults and what each does."""
    from ..views import ViewsConfig

    table = Table(title="views  ([dim]YAML: views.<key>[/])", title_justify="left")
    table.add_column("key", style="bold cyan", no_wrap=True)
    table.add_column("type = default")
    table.add_column("description")
    for key, f in ViewsConfig.model_fields.items():
        default = list(f.default) if isinstance(f.default, tuple) else f.default
        shown = f"{type_text(f.annotation)} = {default!r}"
        table.add_row(key, escape(shown), escape(f.description or ""))
    console.print(table)
    print_lines(
        console,
        "Two-view losses get noise, mask and scale on vectors, and the crop too on images, "
        "unless a views block turns them off; keys a views block leaves out keep these defaults.",
    )


# --------------------------------------------------------------------------- list
def print_runs(console: Console, runs_dir: Any, rows: list[dict[str, Any]], as_json: bool) -> None:
    """``collapse list``: one row per run, newest first; the id and the verdict always fit."""
    if as_json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    if not rows:
        print_lines(console, f"no runs in {runs_dir}")
        return
    steps = [f"{fmt(r['steps_done'])}/{fmt(r['steps'])}" for r in rows]
    columns = [
        Column("id", [Text(r["id"]) for r in rows], keep=0),  # what the user copies: never cut
        Column("status", [marked(r["status"]) for r in rows], keep=2),
        Column("objective", [Text(str(r["objective"] or "-")) for r in rows], keep=6),
        Column("steps", steps, keep=5, justify="right"),
        Column("variance", [fmt(r["variance"]) for r in rows], keep=4, justify="right"),
        Column("eff. rank", [fmt(r["effective_rank"]) for r in rows], keep=3, justify="right"),
        Column("verdict", [marked(r["verdict"]) for r in rows], keep=1),
    ]
    from rich import box

    title = escape(str(runs_dir))
    print_table(console, fitted_table(columns, width_of(console), title=title, box=box.SIMPLE_HEAD))


# --------------------------------------------------------------------------- compare
def _width(columns: list[Column]) -> int:
    return sum(c.width() + 3 for c in columns) + 1


def _metric_columns(result: Any, with_diffs: bool, runs: list[int]) -> list[Column]:
    metric = Column("metric", [Text(r.metric if r.stat == STATS[0] else "", style="bold")
                               for r in result.rows], keep=0)  # fmt: skip
    columns = [metric, Column("", [r.stat for r in result.rows], keep=0)]
    for i in runs:
        cells_ = []
        for row in result.rows:
            v, d, text = row.values[i], row.diffs[i], row.texts[i]
            shown = Text(text or fmt(v))
            if with_diffs and i and visible(d, row.values[0]) and not (text or row.texts[0]):
                shown.append(f" ({'+' if d >= 0 else ''}{fmt(d)})", style="dim")
            cells_.append(shown)
        columns.append(Column(f"#{i + 1}", cells_, keep=1, justify="right"))
    return columns


def print_comparison(console: Console, result: Any) -> None:
    """``collapse compare``: the runs, the config keys that differ, the metrics side by side.
    A table too wide for the terminal drops the differences, then shows the runs in groups."""
    if hasattr(result, "groups"):  # runs that differ only in seed: mean ± std per group
        from .sweep import print_seed_comparison

        return print_seed_comparison(console, result)
    width, n = width_of(console), len(result.runs)
    cols = [f"#{i + 1}" for i in range(n)]
    verdicts = [r.summary.get("verdict") if r.finished else None for r in result.runs]
    steps = [f"{r.summary.get('steps_done', '-')}/{r.summary.get('steps') or '-'}"
             for r in result.runs]  # fmt: skip
    columns = [
        Column("", cols, keep=0),
        Column("id", [Text(r.id) for r in result.runs], keep=1),
        Column("verdict", [marked(v or (NOT_JUDGED if r.finished else None))
                           for v, r in zip(verdicts, result.runs, strict=True)], keep=2),
        Column("status", [marked(r.status) for r in result.runs], keep=3),
        Column("steps", steps, keep=4, justify="right"),
        Column("name in legends", [Text(x) for x in result.labels], keep=5, wrap=True),
    ]  # fmt: skip
    print_table(console, fitted_table(columns, width, title="runs"))

    if result.differing:
        table = Table(title="config keys that differ", title_justify="left")
        for name in ["key", *cols]:
            table.add_column(name)
        for key, values in result.differing.items():
            table.add_row(escape(key), *(escape(str(v)) for v in values))
        print_table(console, table)
    else:
        console.print("[dim]the configs are identical[/]")

    every = list(range(n))
    diffs = _width(_metric_columns(result, True, every)) <= width  # else drop the Δs
    title = "metrics (Δ: difference to #1)" if diffs else "metrics"
    groups: list[list[int]] = [[]]  # runs side by side as far as the width allows
    used = _width(_metric_columns(result, diffs, []))
    for i, column in zip(every, _metric_columns(result, diffs, every)[2:], strict=True):
        if groups[-1] and used + column.width() + 3 > width:
            groups.append([])
            used = _width(_metric_columns(result, diffs, []))
        groups[-1].append(i)
        used += column.width() + 3
    for group in groups:
        table = fitted_table(_metric_columns(result, diffs, group), width, title=title)
        for r, row in enumerate(result.rows[:-1]):  # a rule under each metric's max
            table.rows[r].end_section = row.stat == "max"
        print_table(console, table)
    print_predictors(console, result.predictors)
    if result.out:
        print_figures(console, result.figures, result.out)


# --------------------------------------------------------------------------- inspect
def print_inspection(console: Console, name: str, report: Any) -> None:
    """``collapse inspect``: every metric with its value and reading, then the verdict."""
    (n, d), m = report.shape, report.metrics
    title = f"{escape(name)}: N = {n}, d = {d}, {report.dtype}"
    table = Table(title=title, title_justify="left")
    table.add_column("metric", style="bold", no_wrap=True)
    table.add_column("value", justify="right", no_wrap=True)
    table.add_column("reading")
    for key, value in m.items():
        shown = cell(key, m, d) if key in ("min_eig", "max_eig", "rank") else fmt(value)
        table.add_row(key, shown, escape(report.readings.get(key, "")))
    print_table(console, table)
    lines = [Text.assemble("verdict: ", marked(report.verdict), f" ({report.reason})")]
    if report.dimensions is not None:
        lines.insert(0, Text(f"dimensions: {dimensions_line(report.dimensions, d)}"))
    if not console.is_terminal:  # wrapped to the table's width, not to Rich's default 80
        wide = Console(file=console.file, width=WIDE, highlight=False)
        console = Console(file=console.file, width=wide.measure(table).maximum, highlight=False)
    for line in lines:
        console.print(line)


def dimensions_line(dims: dict[str, Any], d: int) -> str:
    """The dead axes and the dominant share (metrics.dimensions) in one sentence."""
    from ..interpretation import dims_text

    text = dims_text(dims, d)
    if dims.get("dominant_share") is not None and len(dims["dead"]) < d:
        text += f"; the dominant direction holds {dims['dominant_share']:.1%} of the variance"
    return text


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
    note = f" (replaced {' and '.join(replaced)})" if replaced else ""
    written = f"wrote inspect.json and spectrum.png{note} in" if folder else ""
    if as_json:
        print(json.dumps(report.to_json(), indent=2, ensure_ascii=False))
        if folder:
            print_lines(errors, written, str(folder))
        return
    print_inspection(console, name, report)
    if folder:
        print_lines(console, written, str(folder))


# --------------------------------------------------------------------------- predictors
def print_predictors(console: Console, predictors: Any) -> None:
    """``collapse compare``: Kendall's τ-b of each final metric against the final kNN and probe
    accuracy over the runs (reading/predicts.py), strongest first; a note when there are too
    few runs for it to mean anything."""
    if predictors is None:
        return
    from ..reading.predicts import MIN_RUNS, READING

    runs = predictors.runs
    if not predictors.enough:
        print_lines(
            console,
            f"which metric tracks accuracy: {runs} run{'s' * (runs != 1)} with a final accuracy; "
            f"a rank correlation needs at least {MIN_RUNS} to mean anything",
        )
        return
    table = Table(title=predictors.title, title_justify="left")
    table.add_column("metric", style="bold", no_wrap=True)
    for target in predictors.targets:
        table.add_column(predictors.header(target), justify="right", no_wrap=True)
    for row in predictors.rows:
        table.add_row(row.metric, *(predictors.text(row, t) for t in predictors.targets))
    print_lines(console, f"which metric tracks accuracy: {READING}")
    print_table(console, table)
