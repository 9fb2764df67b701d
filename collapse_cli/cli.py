"""The ``collapse`` command: each command parses its options, makes one library call and hands
the result to one rendering function in display.py.

Heavy modules (torch, matplotlib) are imported inside the commands, so ``collapse --help``
answers at once.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from . import __version__
from .errors import CollapseError, ConfigError
from .streams import Trimmed

app = typer.Typer(
    help="Run, measure and compare representation-collapse experiments.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
# No blanks at the ends of lines in a file or a pipe (streams.py).
out = Console(file=Trimmed("stdout"), highlight=False)
err = Console(file=Trimmed("stderr"), stderr=True, highlight=False)

ConfigArg = Annotated[
    Path, typer.Argument(help="A YAML config, e.g. configs/infonce.yaml.", metavar="CONFIG")
]
OverridesArg = Annotated[
    list[str] | None,
    typer.Argument(
        help="Overrides key.path=value, e.g. train.steps=2000 optimizer.lr=0.01.",
        metavar="KEY=VALUE",
    ),
]
RunsDirOpt = Annotated[
    Path,
    typer.Option(
        "--runs-dir", envvar="COLLAPSE_RUNS_DIR", help="Where run folders live.", metavar="DIR"
    ),
]
RunArg = Annotated[
    str,
    typer.Argument(
        help="A run: its folder, a unique prefix of its folder name under --runs-dir, its run "
        "name when unique, or 'latest'.",
        metavar="RUN",
    ),
]
OutOpt = Annotated[
    Path | None, typer.Option("--out", help="Write the figures here instead.", metavar="DIR")
]
FormatOpt = Annotated[
    str, typer.Option("--format", help="Figure format: png, svg or pdf.", metavar="FORMAT")
]
DpiOpt = Annotated[
    int | None,
    typer.Option("--dpi", help="Resolution of png figures (default 100).", min=10, metavar="DPI"),
]
LabelOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--label",
        help="RUN=TEXT: name RUN so in titles and legends (repeatable).",
        metavar="RUN=TEXT",
    ),
]
ThreadsOpt = Annotated[
    int | None,
    typer.Option(
        min=1,
        help="torch's CPU threads (default 1, or as OMP_NUM_THREADS says): sets "
        "OMP/MKL_NUM_THREADS before torch loads, and train.threads.",
        metavar="N",
    ),
]


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
        Path | None,
        typer.Argument(help="A YAML config, e.g. configs/infonce.yaml.", metavar="CONFIG"),
    ] = None,
    overrides: OverridesArg = None,
    device: Annotated[
        str | None,
        typer.Option(help="auto, cpu, cuda or cuda:N (overrides the config).", metavar="DEVICE"),
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
    nproc: Annotated[
        int | None,
        typer.Option(
            "--nproc",
            min=1,
            help="Train on N processes of this machine, started by torchrun's launcher: one "
            "CUDA device each (nccl), or CPU processes (gloo). train.batch_size is the global "
            "batch, split over them.",
            metavar="N",
        ),
    ] = None,
    threads: ThreadsOpt = None,
) -> None:
    """Train the configured model, show the collapse metrics live, write a run folder.

    Exit codes: 0 completed (or stopped by train.stop_on), 2 bad config or input, 3 diverged
    (NaN/Inf), 130 interrupted.
    """
    from .threads import set_thread_env

    if threads or not (nproc and nproc > 1):  # --nproc shares the cores out itself
        set_thread_env(threads)  # before torch loads: OpenMP and MKL read it once (threads.py)
    # Under torchrun every rank runs this command (RANK set); rank 0 alone reports.
    rank = os.environ.get("RANK")
    if rank is None and not (nproc and nproc > 1):
        from .reading import drawer

        drawer.start()  # imports matplotlib on another core while torch loads and the run trains
    if not quiet and rank is None and err.is_terminal:  # torch takes a second or two to import
        err.print("loading torch…", style="dim", highlight=False)
    from .config import load_config
    from .display import make_reporter, print_ending, print_start, print_summary
    from .training import distributed, open_resume, resume_run, run_experiment

    command = " ".join(["collapse", *sys.argv[1:]])
    # What each rank runs under --nproc: this command without it.
    ranks_run = ["run", *[str(config)] * (config is not None), *(overrides or [])]
    ranks_run += ["--device", device] * bool(device) + ["--resume", resume] * bool(resume)
    ranks_run += ["--deterministic"] * deterministic + ["--runs-dir", str(runs_dir)]
    ranks_run += ["--quiet"] * quiet + ["--plain"] * plain
    overrides = list(overrides or [])
    overrides += [f"device={device}"] * bool(device) + ["train.deterministic=true"] * deterministic
    overrides += [f"train.threads={threads}"] * bool(threads)
    with _user_errors():
        if resume is not None:
            # With --resume the first positional argument is an override, not a config.
            overrides = [str(config)] * (config is not None) + overrides
            job = open_resume(resume, overrides, runs_dir=runs_dir)
            cfg, start = job.cfg, resume_run
        elif config is None:
            raise ConfigError("give a config (collapse run configs/infonce.yaml) or --resume RUN")
        else:
            job = cfg = load_config(_config_file(config), overrides)
            start = run_experiment
        if cfg.log.figures == "none":
            from .reading import drawer

            drawer.stop()
        if nproc is not None and nproc > 1:  # rank 0 of the processes reports the run
            distributed.check_launch(cfg, nproc)
            raise typer.Exit(distributed.launch(nproc, ranks_run))
        main = rank in (None, "0")
        if not quiet and main:
            print_start(err, job)
        mode, thresholds = "plain" if plain else "auto", cfg.log.verdict.model_dump()
        reporter = None if quiet or not main else make_reporter(out, mode, cfg.name, thresholds)
        try:
            path, summary = start(job, runs_dir=runs_dir, reporter=reporter, command=command)
        finally:
            if reporter is not None:
                reporter.stop()
    if not main:
        return
    print_summary(out, path, summary)
    code = print_ending(err, path, summary)
    if rank is None:  # every file of the run is closed; nothing is left to finalise
        _skip_teardown.add("run")
    if code:
        raise typer.Exit(code)


def _config_file(config: Path) -> Path:
    """A config path as given, or a clear error for a run folder given in its place."""
    from .rundir import CONFIG, is_run_dir

    if is_run_dir(config):
        raise ConfigError(
            f"{config}: is a run folder, not a config; to repeat the run: collapse run "
            f"{config / CONFIG}; to continue it: collapse run --resume {config}"
        )
    return config


@app.command()
def sweep(
    config: Annotated[
        Path | None,
        typer.Argument(
            help="A YAML config; a sweep: block in it adds its grid and seeds.", metavar="CONFIG"
        ),
    ] = None,
    overrides: OverridesArg = None,
    grid: Annotated[
        list[str] | None,
        typer.Option(
            "--grid",
            help="Sweep a config key over values, parsed as overrides are: "
            "optimizer.lr=1e-3,1e-2. Repeat it for the Cartesian product.",
            metavar="KEY=V1,V2,...",
        ),
    ] = None,
    seeds: Annotated[
        int | None,
        typer.Option(
            min=1, help="Run every point with K seeds: the config's seed + 0 … K−1.", metavar="K"
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1, help="Runs at once (default: the cores ÷ the threads per run).", metavar="K"
        ),
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="torch's CPU threads per run (default 1, or the cores ÷ --workers).",
            metavar="N",
        ),
    ] = None,
    executor: Annotated[
        str,
        typer.Option(
            help="pool: local processes. submitit: a SLURM job array where there is SLURM, "
            "else submitit's local executor (pip install 'collapse-cli[submitit]').",
            metavar="pool|submitit",
        ),
    ] = "pool",
    slurm: Annotated[
        list[str] | None,
        typer.Option(
            "--slurm",
            help="A parameter of submitit's SLURM executor: partition=gpu, time=120 (minutes), "
            "gpus_per_node=1, ... (repeatable).",
            metavar="KEY=VALUE",
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(help="The sweep folder's name (default: the config's name).", metavar="NAME"),
    ] = None,
    resume: Annotated[
        str | None,
        typer.Option(
            help="Run what the sweep SWEEP (its folder) has not finished: runs never started, "
            "failed or interrupted (from their checkpoint when they have one).",
            metavar="SWEEP",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check every point and list the runs; create nothing.")
    ] = False,
    runs_dir: RunsDirOpt = Path("runs"),
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print only the summary and the sweep folder.")
    ] = False,
    plain: Annotated[
        bool, typer.Option("--plain", help="Plain lines even in a terminal (no live display).")
    ] = False,
) -> None:
    """Run a grid of config values times seeds, each an ordinary run folder, grouped under
    RUNS_DIR/sweep-<time>-<name>/ with sweep.json as the index.

    Exit codes: 0 every run completed, 1 a run failed, 2 bad input (nothing is created), 3 a run
    diverged, 130 interrupted (--resume runs the rest).
    """
    from .display import make_sweep_reporter, print_sweep_plan, print_sweep_summary
    from .training.plan import check_sweep
    from .training.sweep import resume_sweep, run_sweep

    command = " ".join(["collapse", *sys.argv[1:]])
    how = {"workers": workers, "threads": threads, "executor": executor, "slurm": slurm or []}
    with _user_errors():
        if resume is not None:
            if config is not None or overrides or grid or seeds:
                raise ConfigError(
                    "--resume takes no config, overrides, --grid or --seeds: a sweep keeps its "
                    "own (in its sweep.json)"
                )
        elif config is None:
            raise ConfigError("give a config (collapse sweep CONFIG --grid ...) or --resume SWEEP")
        elif dry_run:
            print_sweep_plan(out, check_sweep(config, grid, seeds, overrides, name=name, **how))
            return
        reporter = None if quiet else make_sweep_reporter(out, "plain" if plain else "auto")
        try:
            if resume is not None:
                result = resume_sweep(
                    resume, runs_dir=runs_dir, reporter=reporter, command=command, **how
                )
            else:
                result = run_sweep(
                    config, grid, seeds, overrides, name=name, runs_dir=runs_dir,
                    reporter=reporter, command=command, **how,
                )  # fmt: skip
        finally:
            if reporter is not None:
                reporter.stop()
    code = print_sweep_summary(out, err, result)
    if code:
        raise typer.Exit(code)


@app.command()
def validate(config: ConfigArg, overrides: OverridesArg = None) -> None:
    """Check a config and its overrides without running it; print the resolved config."""
    from .display import print_valid
    from .training.build import check

    with _user_errors():
        text = check(_config_file(config), list(overrides or []))
    print_valid(out, err, text, config)


@app.command()
def components(
    kind: Annotated[
        str | None,
        typer.Argument(
            help="Only this kind: data, encoder, loss, optimizer or views.", metavar="KIND"
        ),
    ] = None,
) -> None:
    """List every dataset, encoder, loss and optimizer with its parameters and defaults, and
    the keys of the views block."""
    from .config import registries
    from .display import print_components

    regs = registries()
    with _user_errors():
        if kind is not None and kind not in [*regs, "views"]:
            kinds = ", ".join([*regs, "views"])
            raise ConfigError(f"{kind!r} is not a component kind; choose from {kinds}")
    print_components(out, regs, kind)


# --------------------------------------------------------------------------- reading runs
@app.command()
def plot(
    run: RunArg,
    fmt: FormatOpt = "png",
    dpi: DpiOpt = None,
    label: LabelOpt = None,
    out_dir: OutOpt = None,
    runs_dir: RunsDirOpt = Path("runs"),
) -> None:
    """Draw a run's figures into RUN/plots/ (or --out); a sweep folder: its study figure.

    Loss and its parts, variance, λ_min and rank, ranks vs their ceiling, std_l2 vs 1/√d and
    its collapse threshold, spectra, kNN accuracy vs chance, and an overview. For a sweep
    (runs/sweep-...): each final metric against each swept parameter, and the verdict map.
    """
    from .display import print_figures
    from .reading.figures import plot_named

    with _user_errors():
        paths = plot_named(run, runs_dir, out_dir, fmt, dpi=dpi, labels=label or [])
    print_figures(out, paths, paths[0].parent)


@app.command()
def compare(
    runs: Annotated[
        list[str],
        typer.Argument(
            help="Two or more runs (as for plot), or a sweep folder: runs that differ only in "
            "seed compare as mean ± std.",
            metavar="RUN",
        ),
    ],
    fmt: FormatOpt = "png",
    dpi: DpiOpt = None,
    label: LabelOpt = None,
    table: Annotated[
        str | None,
        typer.Option(
            "--table",
            help="Print the comparison table as markdown, latex or csv instead (for a paper "
            "or a notebook); the figures are still drawn.",
            metavar="FORMAT",
        ),
    ] = None,
    out_dir: OutOpt = None,
    runs_dir: RunsDirOpt = Path("runs"),
) -> None:
    """Compare runs: the config keys that differ, metrics side by side, overlaid curves.

    Step 0, final, min and max of every metric, Δ to the first run; curves in
    RUNS_DIR/compare-<time>/.
    """
    from .display import print_comparison, print_lines
    from .reading.compare import compare_named
    from .reading.export import check_table_format, comparison_table

    with _user_errors():
        check_table_format(table)
        result = compare_named(runs, runs_dir, out_dir, fmt, dpi=dpi, labels=label or [])
    if table:
        print_lines(out, comparison_table(result, table))
    else:
        print_comparison(out, result)


@app.command("list")
def list_(
    runs_dir: RunsDirOpt = Path("runs"),
    as_json: Annotated[bool, typer.Option("--json", help="Print the rows as JSON.")] = False,
) -> None:
    """List the runs, newest first, with their final variance, effective rank and verdict.

    Runs still going or that died are listed too, from the metrics they logged (no verdict).
    """
    from .display import print_runs
    from .reading.listing import run_table

    with _user_errors():
        rows = run_table(runs_dir)
    print_runs(out, runs_dir, rows, as_json)


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
        typer.Option("--out", help="Write inspect.json and spectrum.png here.", metavar="DIR"),
    ] = None,
    save: Annotated[
        bool, typer.Option("--save", help="Write them into <stem>-inspect/ next to FILE.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print inspect.json to stdout instead of the table.")
    ] = False,
) -> None:
    """Measure embeddings you already have: each metric with a reading, spectrum, verdict.

    Writes inspect.json and spectrum.png only when asked (--out or --save; docs/inspect.md).
    Exit code 2: unusable input.
    """
    from .display import print_inspected
    from .inspection import inspect_file

    with _user_errors():
        report, folder, replaced = inspect_file(file, labels, out_dir, save=save)
    print_inspected(out, err, file.name, report, folder, replaced, as_json)
    _skip_teardown.add("inspect")  # its files are closed; nothing is left to finalise


# Commands after which `main` ends the process without the interpreter's teardown.
_skip_teardown: set[str] = set()


def main() -> None:
    """The ``collapse`` command. After ``run`` (one process) and ``inspect``, the process ends
    without the interpreter's teardown: with torch loaded, finalising its thousands of
    modules and freeing what they hold takes a few tenths of a second, as long as the
    metrics of a 20,000 × 1,024 matrix or half of demo 1's training loop (docs/performance.md,
    h and j). Exit handlers still run and stdout and stderr are flushed."""
    try:
        app()
    except SystemExit as e:
        if not _skip_teardown or not isinstance(e.code, int | None):
            raise
        code = e.code or 0
    else:
        code = 0
    if _skip_teardown:
        import atexit

        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
