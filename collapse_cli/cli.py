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
    config: ConfigArg,
    overrides: OverridesArg = None,
    device: Annotated[
        str | None, typer.Option(help="auto, cpu, cuda or cuda:N (overrides the config).")
    ] = None,
    runs_dir: RunsDirOpt = Path("runs"),
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print only the summary and the run folder.")
    ] = False,
    plain: Annotated[
        bool, typer.Option("--plain", help="Plain lines even in a terminal (no live display).")
    ] = False,
) -> None:
    """Train the configured model, show the collapse metrics live, write a run folder."""
    from .api import prepare, run_experiment
    from .report import make_reporter, print_summary

    overrides = list(overrides or []) + ([f"device={device}"] if device else [])
    with _user_errors():
        cfg, _ = prepare(config, overrides)
        mode = "quiet" if quiet else "plain" if plain else "auto"
        reporter = make_reporter(out, mode, f"{cfg.name}", cfg.log.verdict.model_dump())
        try:
            path, summary = run_experiment(
                config,
                overrides,
                runs_dir=runs_dir,
                reporter=reporter,
                command=" ".join(["collapse", *sys.argv[1:]]),
            )
        finally:
            reporter.stop()
        print_summary(out, path, summary)
    if summary.get("status") == "interrupted":
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


def main() -> None:
    app()
