"""Shared test helpers: a temporary runs folder and the CLI runner."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    return tmp_path / "runs"


@pytest.fixture
def cli():
    """Invoke ``collapse ARGS...`` in-process; returns the click Result."""
    from collapse_cli.cli import app

    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, [str(a) for a in args])

    return invoke


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


class InterruptAt:
    """A reporter that presses Ctrl-C after a given step."""

    def __init__(self, step: int) -> None:
        self.step = step

    def start(self, steps: int) -> None: ...
    def log(self, row, dim) -> None: ...

    def advance(self, step: int) -> None:
        if step == self.step:
            raise KeyboardInterrupt
