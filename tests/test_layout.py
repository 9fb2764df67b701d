"""The shape of the package: the read side stands without torch or the write side, and every
reader takes its metric lists from the one catalogue."""

from __future__ import annotations

import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import torch

import collapse_cli
from collapse_cli import catalogue, metrics, run_experiment

from .conftest import CONFIGS, ROOT
from .synthetic import write_sweep

# The read side and what it may import: the folder contract and the modules of the catalogue.
READ_SIDE = ["reading", "rundir", "catalogue", "summary", "verdict", "yamlfile", "errors"]


def _modules(package: str) -> list[str]:
    path = Path(collapse_cli.__file__).parent / package
    if not path.is_dir():
        return [f"collapse_cli.{package}"]
    found = pkgutil.walk_packages([str(path)], prefix=f"collapse_cli.{package}.")
    return [f"collapse_cli.{package}", *(m.name for m in found)]


def test_the_read_side_runs_plot_compare_and_list_without_torch_or_the_write_side(tmp_path):
    """Runs, and a sweep folder: list, plot and compare load neither torch nor the write side."""
    runs = tmp_path / "runs"
    for seed in (0, 1):
        run_experiment(
            CONFIGS / "collapse.yaml", ["train.steps=30", "log.every=10", f"seed={seed}"],
            runs_dir=runs,
        )  # fmt: skip
    # A sweep folder, written by hand: plot and compare read it without torch too.
    final = {"loss": 1.0, "variance": 0.5, "effective_rank": 10.0, "std_l2": 0.25}
    points = [
        {"params": {"optimizer.lr": lr}, "seed": seed, "final": final}
        for lr in (0.001, 0.01)
        for seed in (0, 1)
    ]
    sweep = write_sweep(tmp_path, {"optimizer.lr": [0.001, 0.01]}, points, [0, 1])
    modules = [m for package in READ_SIDE for m in _modules(package)]
    code = f"""
import importlib, sys
for name in {modules!r}:
    importlib.import_module(name)
from typer.testing import CliRunner
from collapse_cli.cli import app
runner = CliRunner()
for args in (["list"], ["plot", "latest"], ["compare", *sorted(p for p in
        __import__("os").listdir({str(runs)!r}) if not p.startswith("compare"))]):
    result = runner.invoke(app, [*args, "--runs-dir", {str(runs)!r}])
    assert result.exit_code == 0, (args, result.output)
for args in (["plot", {str(sweep)!r}], ["compare", {str(sweep)!r}]):
    result = runner.invoke(app, args)
    assert result.exit_code == 0, (args, result.output)
loaded = sorted(m for m in sys.modules if m == "torch" or m.startswith("collapse_cli.training"))
print(loaded)
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout
    assert len(list((runs).glob("compare-*/*.png"))) > 1  # compare drew its overlays
    assert len(list(runs.glob("*-collapse/plots/*.png"))) > 1
    assert (sweep / "plots" / "study.png").is_file() and list(sweep.glob("compare-*/*.png"))


def test_the_catalogue_names_exactly_the_metrics_the_code_computes():
    computed = set(metrics.ON_DEVICE) | set(metrics.FROM_SPECTRUM)
    logged_by_the_loop = {"grad_norm", "knn_acc", "recall_at_1", "lidar", "probe_acc"}
    # and by the InfoNCE objectives' forces at log steps
    logged_by_the_loop |= set(
        metrics.contrastive_forces(torch.eye(2), torch.eye(2), torch.arange(2), 1.0)
    )
    assert computed | logged_by_the_loop == {m.key for m in catalogue.METRICS}


def test_compute_metrics_gives_the_catalogues_keys_in_its_order():
    z = torch.randn(200, 16, generator=torch.Generator().manual_seed(0))
    values, _ = metrics.compute_metrics(z)
    expected = [k for k in catalogue.ORDER if k in {*catalogue.EMBEDDING_KEYS, "alpha_req"}]
    assert list(values) == expected  # rank 16 >= 10: alpha_req applies
    with_pairs, _ = metrics.compute_metrics(z, z + 0.01)
    assert set(with_pairs) - set(values) == {"alignment"}
    low_rank, _ = metrics.compute_metrics(torch.randn(200, 4) @ torch.randn(4, 16))
    assert list(low_rank) == catalogue.EMBEDDING_KEYS  # rank 4 < 10: no alpha_req


def test_docs_metrics_md_describes_every_key_of_the_catalogue():
    text = (ROOT / "docs" / "metrics.md").read_text()
    described = set(re.findall(r"^\| `([a-z_0-9]+)`(?:, `([a-z_0-9]+)`)?", text, re.M))
    keys = {k for pair in described for k in pair if k}
    missing = [m.key for m in catalogue.METRICS if m.key not in keys]
    assert not missing, f"docs/metrics.md has no row for {missing}"


def test_every_catalogue_entry_says_what_collapse_and_health_look_like_or_why_not():
    for m in catalogue.METRICS:
        assert m.title and m.axis, m.key
        # max_eig, norm_mean: scale-dependent, no collapsed or healthy value of their own
        if m.key not in ("max_eig", "norm_mean"):
            assert m.collapsed, f"{m.key}: no collapsed value"
