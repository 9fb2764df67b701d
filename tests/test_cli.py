"""The ``collapse`` command end to end, as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import CONFIGS, ROOT, requires_cuda

SHORT = ["train.steps=60", "log.every=20"]


def collapse(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """``python -m collapse_cli ARGS`` in a subprocess, stdout not a terminal."""
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "collapse_cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_run_prints_plain_lines_and_ends_with_the_run_folder(tmp_path: Path):
    proc = collapse("run", str(CONFIGS / "infonce.yaml"), *SHORT, "--runs-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    steps = [line for line in lines if line.startswith("step ")]
    assert [s.split()[1] for s in steps] == ["0/60", "20/60", "40/60", "59/60"]
    assert "min_eig 0 (rank 32/128)" in steps[0] and "effective_rank" in steps[0]
    assert "\x1b" not in proc.stdout  # no control codes when stdout is not a terminal
    run_dir = Path(lines[-1])
    assert run_dir.parent == tmp_path and (run_dir / "summary.json").is_file()
    assert "verdict: healthy" in proc.stdout
    assert "structurally zero" in proc.stdout
    # Rich pads its grids and tables to their width; in a file or a pipe no line ends in blanks
    assert not [line for line in proc.stdout.splitlines() if line != line.rstrip()]
    listed = collapse("list", "--runs-dir", str(tmp_path)).stdout
    assert "completed" in listed and not [x for x in listed.splitlines() if x != x.rstrip()]


def test_trailing_blanks_stay_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a terminal the padding stays: a live display overwrites a longer line with it."""
    import io

    from collapse_cli.streams import Trimmed

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    for stream, kept in ((io.StringIO(), "a\nb\nc d"), (Terminal(), "a  \nb \t\nc d")):
        monkeypatch.setattr(sys, "stdout", stream)
        trimmed = Trimmed("stdout")
        # blanks may end one write and the line end start the next
        for text in ("a  \nb \t", "\n", "c ", "d "):
            trimmed.write(text)
        trimmed.flush()  # blanks that no line end followed are kept
        assert stream.getvalue() == kept + " "


def test_quiet_prints_only_the_summary(cli, runs_dir: Path):
    result = cli("run", CONFIGS / "collapse.yaml", *SHORT, "--runs-dir", runs_dir, "--quiet")
    assert result.exit_code == 0, result.output
    assert "step 0/" not in result.output
    assert "verdict:" in result.output
    assert result.output.strip().splitlines()[-1].startswith(str(runs_dir))


def test_device_option_and_overrides_reach_the_resolved_config(cli, runs_dir: Path):
    result = cli(
        "run",
        CONFIGS / "infonce.yaml",
        "train.steps=3",
        "optimizer.lr=0.01",
        "--device",
        "cpu",
        "--runs-dir",
        runs_dir,
        "-q",
    )
    assert result.exit_code == 0, result.output
    (run_dir,) = runs_dir.iterdir()
    text = (run_dir / "config.yaml").read_text()
    assert "device: cpu" in text and "lr: 0.01" in text and "steps: 3" in text


@pytest.mark.parametrize(
    "args, words",
    [
        (["loss.name=infonse"], ["'infonse' is not a loss", "choose from"]),
        (["train.steps=-2"], ["train.steps"]),
        (["oops"], ["expected key.path=value"]),
        (["train.batch_size=100000"], ["batch_size", "larger than the data"]),
    ],
)
def test_bad_config_exits_2_with_one_line_and_creates_nothing(cli, runs_dir, args, words):
    result = cli("run", CONFIGS / "infonce.yaml", *args, "--runs-dir", runs_dir)
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:")
    for w in words:
        assert w in result.output
    assert not runs_dir.exists() or not any(runs_dir.iterdir())


def test_missing_config_file(cli, runs_dir):
    result = cli("run", "configs/nope.yaml", "--runs-dir", runs_dir)
    assert result.exit_code == 2 and "no such file" in result.output


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="CUDA is present here")
def test_asking_for_cuda_without_one_is_a_clear_error(cli, runs_dir):
    result = cli("run", CONFIGS / "infonce.yaml", "--device", "cuda", "--runs-dir", runs_dir)
    assert result.exit_code == 2
    assert "sees no CUDA device" in result.output
    assert not runs_dir.exists()


@requires_cuda
@pytest.mark.cuda
def test_run_on_cuda(cli, runs_dir):
    result = cli(
        "run", CONFIGS / "infonce.yaml", *SHORT, "--device", "cuda", "--runs-dir", runs_dir
    )
    assert result.exit_code == 0, result.output
    (run_dir,) = runs_dir.iterdir()
    assert '"device": "cuda' in (run_dir / "meta.json").read_text()


def test_validate_prints_the_resolved_config(cli):
    result = cli("validate", CONFIGS / "infonce.yaml", "train.steps=2000")
    assert result.exit_code == 0
    assert "steps: 2000" in result.output and "temperature: 1.0" in result.output
    assert "is a valid config" in result.output
    bad = cli("validate", CONFIGS / "infonce.yaml", "optimizer.betas=[0.9, 1.5]")
    assert bad.exit_code == 2 and "optimizer" in bad.output and "beta" in bad.output


def test_components_lists_every_registered_component_with_defaults(cli):
    from collapse_cli.config import registries

    result = cli("components")
    assert result.exit_code == 0
    for reg in registries().values():
        for name in reg.names():
            assert name in result.output
    assert "temperature: float > 0 = 1.0" in result.output
    assert "lr: float > 0 = 0.001" in result.output
    assert cli("components", "nonsense").exit_code == 2


def test_help_and_version_do_not_import_torch():
    code = (
        "import sys; from typer.testing import CliRunner; from collapse_cli.cli import app; "
        "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0, r.output; "
        "assert 'run' in r.output; "
        "print(sorted(m for m in ('torch', 'matplotlib') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
    version = collapse("--version")
    assert version.returncode == 0 and version.stdout.startswith("collapse ")
