"""The ``collapse`` command: each command parses its options, makes one library call and hands
the result to one rendering function in display.py.

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
RunArg = Annotated[
    str,
    typer.Argument(
        help="A run: its folder, a unique prefix of its folder name under --runs-dir, its run "
        "name when unique, or 'latest'."
    ),
]
OutOpt = Annotated[Path | None, typer.Option("--out", help="Write the figures here instead.")]


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    """A project error becomes one line on stderr and its exit code; no traceback."""
    from .display import print_error

    try:
        yield
    except CollapseError as e:
        print_error(err, str(e))
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
    from .config import load_config
    from .display import make_reporter, print_ending, print_summary
    from .training import open_resume, resume_run, run_experiment

    command = " ".join(["collapse", *sys.argv[1:]])
    overrides = list(overrides or [])
    overrides += [f"device={device}"] * bool(device) + ["train.deterministic=true"] * deterministic
    with _user_errors():
        if resume is not None:
            # With --resume the first positional argument is an override, not a config.
            overrides = [str(config)] * (config is not None) + overrides
            job = open_resume(resume, overrides, runs_dir=runs_dir)
            cfg, start = job.cfg, resume_run
        elif config is None:
            raise ConfigError("give a config (collapse run configs/infonce.yaml) or --resume RUN")
        else:
            job = cfg = load_config(config, overrides)
            start = run_experiment
        mode, thresholds = "plain" if plain else "auto", cfg.log.verdict.model_dump()
        reporter = None if quiet else make_reporter(out, mode, cfg.name, thresholds)
        try:
            path, summary = start(job, runs_dir=runs_dir, reporter=reporter, command=command)
        finally:
            if reporter is not None:
                reporter.stop()
        print_summary(out, path, summary)
    code = print_ending(err, path, summary)
    if code:
        raise typer.Exit(code)


@app.command()
def validate(config: ConfigArg, overrides: OverridesArg = None) -> None:
    """Check a config and its overrides without running it; print the resolved config."""
    from .display import print_valid
    from .training.build import check

    with _user_errors():
        text = check(config, list(overrides or []))
    print_valid(out, text, config)


@app.command()
def components(
    kind: Annotated[
        str | None, typer.Argument(help="Only this kind: data, encoder, loss or optimizer.")
    ] = None,
) -> None:
    """List every dataset, encoder, loss and optimizer with its parameters and defaults."""
    from .config import registries
    from .display import print_components

    regs = registries()
    with _user_errors():
        if kind is not None and kind not in regs:
            raise ConfigError(f"{kind!r} is not a component kind; choose from {', '.join(regs)}")
    print_components(out, regs, kind)


# --------------------------------------------------------------------------- reading runs
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
    from .display import print_figures
    from .reading.figures import plot_named

    with _user_errors():
        paths = plot_named(run, runs_dir, out_dir, fmt)
    print_figures(out, paths, paths[0].parent)


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
    from .display import print_comparison
    from .reading.compare import compare_named

    with _user_errors():
        result = compare_named(runs, runs_dir, out_dir)
    print_comparison(out, result)


@app.command("list")
def list_(runs_dir: RunsDirOpt = Path("runs")) -> None:
    """List the runs, newest first, with their final variance, effective rank and verdict.

    Runs still going or that died are listed too, from the metrics they logged (no verdict).
    """
    from .display import print_runs
    from .reading.listing import run_table

    with _user_errors():
        rows = run_table(runs_dir)
    print_runs(out, runs_dir, rows)


# --------------------------------------------------------------------------- inspect
@app.command("inspect")
def inspect_(
    file: Annotated[
        Path,
        typer.Argument(
            help="An (N, d) matrix: .npy, .pt/.pth, .csv/.tsv, .safetensors, or a column of a "
            "Parquet or Arrow table (FILE:NAME picks a column or tensor).",
            metavar="FILE",
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
    from .display import print_inspected
    from .inspection import inspect_file

    with _user_errors():
        report, folder, replaced = inspect_file(file, labels, out_dir)
    print_inspected(out, err, file.name, report, folder, replaced, as_json)


def main() -> None:
    app()
