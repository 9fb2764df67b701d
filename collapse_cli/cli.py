"""The ``collapse`` command: each command parses its options and calls one library function.

Heavy modules (torch, matplotlib) are imported inside the commands, so ``collapse --help``
answers at once.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from . import __version__
from .errors import CollapseError, ConfigError

app = typer.Typer(
    help="Run, measure and compare representation-collapse experiments.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

ConfigArg = Annotated[Path, typer.Argument(help="A YAML config, e.g. configs/infonce.yaml.")]
OverridesArg = Annotated[
    list[str] | None,
    typer.Argument(help="Overrides key.path=value, e.g. train.steps=2000 optimizer.lr=0.01."),
]
RunsDirOpt = Annotated[
    Path,
    typer.Option("--runs-dir", envvar="COLLAPSE_RUNS_DIR", help="Where run folders live."),
]


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    """A project error becomes one line on stderr and its exit code; no traceback."""
    try:
        yield
    except CollapseError as e:
        err.print(f"[bold red]error:[/] {e}", soft_wrap=True, markup=True, highlight=False)
        raise typer.Exit(e.exit_code) from None


def _version(value: bool) -> None:
    if value:
        out.print(f"collapse {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """Run, measure and compare representation-collapse experiments."""


@app.command()
def run(
    config: Annotated[
        Path | None, typer.Argument(help="A YAML config, e.g. configs/infonce.yaml.")
    ] = None,
    overrides: OverridesArg = None,
    device: Annotated[
        str | None, typer.Option(help="auto, cpu, cuda or cuda:N (overrides the config).")
    ] = None,
    resume: Annotated[
        str | None,
        typer.Option(
            help="Continue RUN (as for plot: a path, a folder prefix, a run name, or 'latest') "
            "from its last checkpoint, in the same folder. The one override it takes, "
            "train.steps=N, changes the run's length: a completed run can be extended.",
            metavar="RUN",
        ),
    ] = None,
    deterministic: Annotated[
        bool, typer.Option("--deterministic", help="Use torch's deterministic algorithms.")
    ] = False,
    runs_dir: RunsDirOpt = Path("runs"),
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print only the summary and the run folder.")
    ] = False,
    plain: Annotated[
        bool, typer.Option("--plain", help="Plain lines even in a terminal (no live display).")
    ] = False,
) -> None:
    """Train the configured model, show the collapse metrics live, write a run folder.

    Exit codes: 0 completed, 2 bad config or input, 3 diverged (NaN/Inf), 130 interrupted.
    """
    from .api import prepare, resume_run, run_experiment
    from .config import load_config
    from .report import make_reporter, print_summary
    from .runs import CONFIG, resolve_run

    command = " ".join(["collapse", *sys.argv[1:]])
    overrides = list(overrides or [])
    overrides += [f"device={device}"] * bool(device) + ["train.deterministic=true"] * deterministic
    with _user_errors():
        if resume is not None:
            # With --resume the first positional argument is an override, not a config.
            overrides = [str(config)] * (config is not None) + overrides
            cfg = load_config(resolve_run(resume, runs_dir) / CONFIG, overrides)
        elif config is None:
            raise ConfigError("give a config (collapse run configs/infonce.yaml) or --resume RUN")
        else:
            cfg, _ = prepare(config, overrides)
        mode = "plain" if plain else "auto"
        thresholds = cfg.log.verdict.model_dump()
        reporter = None if quiet else make_reporter(out, mode, f"{cfg.name}", thresholds)
        try:
            if resume is not None:
                path, summary = resume_run(
                    resume, overrides, runs_dir=runs_dir, reporter=reporter, command=command
                )
            else:
                path, summary = run_experiment(
                    config, overrides, runs_dir=runs_dir, reporter=reporter, command=command
                )
        finally:
            if reporter is not None:
                reporter.stop()
        print_summary(out, path, summary)
    status = summary.get("status")
    if status == "diverged":
        err.print(f"[bold red]error:[/] run diverged: {summary['divergence']}", soft_wrap=True)
        raise typer.Exit(3)
    if status == "interrupted":
        err.print(f"interrupted after {summary['steps_done']} steps; {path} holds what ran")
        raise typer.Exit(130)


@app.command()
def validate(config: ConfigArg, overrides: OverridesArg = None) -> None:
    """Check a config and its overrides without running it; print the resolved config."""
    from .api import prepare
    from .config import dump_yaml, resolved
    from .train import build, resolve_device

    with _user_errors():
        cfg, label = prepare(config, list(overrides or []))
        resolve_device(cfg.device)
        build(cfg, label, materialize=False)
    out.print(dump_yaml(resolved(cfg)).rstrip(), markup=False)
    out.print(f"[green]ok[/]: {config} is a valid config")


@app.command()
def components(
    kind: Annotated[
        str | None, typer.Argument(help="Only this kind: data, encoder, loss or optimizer.")
    ] = None,
) -> None:
    """List every dataset, encoder, loss and optimizer with its parameters and defaults."""
    from .config import registries
    from .registry import type_text

    regs = registries()
    with _user_errors():
        if kind is not None and kind not in regs:
            raise ConfigError(f"{kind!r} is not a component kind; choose from {', '.join(regs)}")
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
        out.print(table)


# --------------------------------------------------------------------------- reading runs

RunArg = Annotated[
    str,
    typer.Argument(
        help="A run: its folder, a unique prefix of its folder name under --runs-dir, its run "
        "name when unique, or 'latest'."
    ),
]
OutOpt = Annotated[Path | None, typer.Option("--out", help="Write the figures here instead.")]


def _print_table(table: Table) -> None:
    """Print a table; piped output (files, CI logs) keeps its rows whole instead of wrapping
    them at Rich's default 80 columns, which no terminal imposes there."""
    (out if out.is_terminal else Console(width=200, highlight=False)).print(table)


def _marked(value: str | None) -> Text:
    """A status or verdict in the colour a reader scans for ("-" when there is none)."""
    from .verdict import COMPLETE, DIMENSIONAL, HEALTHY

    styles = {COMPLETE: "red", DIMENSIONAL: "yellow", HEALTHY: "green", "running": "cyan"}
    styles |= {"interrupted": "yellow", "diverged": "red", "failed": "red", "died": "red"}
    return Text(value or "-", style=styles.get(value or "", ""))


@app.command()
def plot(
    run: RunArg,
    fmt: Annotated[str, typer.Option("--format", help="png, svg or pdf.")] = "png",
    out_dir: OutOpt = None,
    runs_dir: RunsDirOpt = Path("runs"),
) -> None:
    """Draw a run's figures into RUN/plots/ (or --out).

    Loss, variance, λ_min and rank, ranks vs their ceiling, std_l2 vs 1/√d, spectra, overview.
    """
    from .plots import plot_run
    from .runs import resolve_run

    with _user_errors():
        paths = plot_run(resolve_run(run, runs_dir), out_dir, fmt)
        if not paths:
            raise CollapseError(f"{run}: no metrics logged yet, nothing to plot")
    names = ", ".join(p.name for p in paths)
    out.print(f"{len(paths)} figures: {names}", soft_wrap=True, markup=False)
    out.print(str(paths[0].parent), soft_wrap=True, markup=False)


@app.command()
def compare(
    runs: Annotated[
        list[str], typer.Argument(help="Two or more runs (as for plot).", metavar="RUN")
    ],
    out_dir: OutOpt = None,
    runs_dir: RunsDirOpt = Path("runs"),
) -> None:
    """Compare runs: the config keys that differ, metrics side by side, overlaid curves.

    Final, min and max of every metric, Δ to the first run; curves in RUNS_DIR/compare-<time>/.
    """
    from .compare import compare_runs
    from .report import fmt
    from .runs import resolve_run

    with _user_errors():
        result = compare_runs([resolve_run(r, runs_dir) for r in runs], out_dir)
    cols = [f"#{i + 1}" for i in range(len(result.runs))]

    table = Table(title="runs", title_justify="left")
    for name in ["", "name in legends", "id", "status", "steps", "verdict"]:
        table.add_column(name, no_wrap=name in ("", "id"))
    for col, label, r in zip(cols, result.labels, result.runs, strict=True):
        s = r.summary
        verdict = s.get("verdict") if r.finished else None
        table.add_row(
            col,
            escape(label),
            r.id,
            _marked(r.status),
            f"{s.get('steps_done', '-')}/{s.get('steps') or '-'}",
            _marked(verdict),
        )
    _print_table(table)

    if result.differing:
        table = Table(title="config keys that differ", title_justify="left")
        for name in ["key", *cols]:
            table.add_column(name)
        for key, values in result.differing.items():
            table.add_row(key, *(escape(str(v)) for v in values))
        _print_table(table)
    else:
        out.print("[dim]the configs are identical[/]")

    table = Table(title="metrics (Δ: difference to #1)", title_justify="left")
    table.add_column("metric", style="bold")
    table.add_column("")
    for col in cols:
        table.add_column(col, justify="right", no_wrap=True)
    for row in result.rows:
        cells = []
        for i, (v, d, text) in enumerate(zip(row.values, row.diffs, row.texts, strict=True)):
            cell = text or fmt(v)
            if i and d is not None and not (text or row.texts[0]):
                cell += f" [dim]({'+' if d >= 0 else ''}{fmt(d)})[/]"
            cells.append(cell)
        first = row.stat == "final"
        table.add_row(row.metric if first else "", row.stat, *cells, end_section=row.stat == "max")
    _print_table(table)
    if result.out:
        names = ", ".join(p.name for p in result.figures)
        out.print(f"{len(result.figures)} figures: {names}", soft_wrap=True, markup=False)
        out.print(str(result.out), soft_wrap=True, markup=False)


@app.command("list")
def list_(runs_dir: RunsDirOpt = Path("runs")) -> None:
    """List the runs, newest first, with their final variance, effective rank and verdict.

    Runs still going or that died are listed too, from the metrics they logged (no verdict).
    """
    from rich import box

    from .report import fmt
    from .rundata import run_table

    with _user_errors():
        rows = run_table(runs_dir)
    if not rows:
        out.print(f"no runs in {escape(str(runs_dir))}")
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
            r["id"],
            _marked(r["status"]),
            escape(str(r["objective"] or "-")),
            f"{fmt(r['steps_done'])}/{fmt(r['steps'])}",
            fmt(r["variance"]),
            fmt(r["effective_rank"]),
            _marked(r["verdict"]),
        )
    _print_table(table)


# --------------------------------------------------------------------------- inspect


@app.command("inspect")
def inspect_(
    file: Annotated[
        Path,
        typer.Argument(
            help="An (N, d) matrix: .npy, .pt/.pth, .csv/.tsv or .safetensors.", metavar="FILE"
        ),
    ],
    labels: Annotated[
        Path | None,
        typer.Option(help="One class label per row (same formats): adds knn_acc.", metavar="FILE"),
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Output folder (default: <stem>-inspect/ next to FILE)."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print inspect.json to stdout instead of the table.")
    ] = False,
) -> None:
    """Measure embeddings you already have: each metric with a reading, spectrum, verdict.

    Writes inspect.json and spectrum.png (docs/inspect.md). Exit code 2: unusable input.
    """
    import json

    from .embeddings import inspect_file
    from .report import fmt
    from .verdict import min_eig_text

    with _user_errors():
        report, folder, replaced = inspect_file(file, labels, out_dir)
    note = f" (replaced {' and '.join(replaced)})" if replaced else ""
    if as_json:
        typer.echo(json.dumps(report.to_json(), indent=2, ensure_ascii=False))
        err.print(f"wrote inspect.json and spectrum.png{note} in", soft_wrap=True)
        err.print(str(folder), soft_wrap=True, markup=False)
        return
    (n, d), m = report.shape, report.metrics
    title = f"{escape(file.name)}: N = {n}, d = {d}, {report.dtype}"
    table = Table(title=title, title_justify="left")
    table.add_column("metric", style="bold", no_wrap=True)
    table.add_column("value", justify="right", no_wrap=True)
    table.add_column("reading")
    for key, value in m.items():
        shown = {"min_eig": min_eig_text(value, m["rank"], d), "rank": f"{value}/{d}"}
        table.add_row(key, shown.get(key, fmt(value)), escape(report.readings.get(key, "")))
    _print_table(table)
    out.print(Text.assemble("verdict: ", _marked(report.verdict), f" ({report.reason})"))
    out.print(f"wrote inspect.json and spectrum.png{note} in", soft_wrap=True)
    out.print(str(folder), soft_wrap=True, markup=False)


def main() -> None:
    app()
