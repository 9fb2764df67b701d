"""The run folder contract: files, their contents, naming, and the per-step path."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch
import yaml

from collapse_cli import run_experiment
from collapse_cli.catalogue import EMBEDDING_KEYS
from collapse_cli.errors import RunNotFoundError
from collapse_cli.rundir import RunWriter, create_run_dir, read_jsonl, resolve_run

from .conftest import CONFIGS

SHORT = ["train.steps=120", "log.every=50"]
# Every row of metrics.jsonl: step, time, loss, the embedding metrics of the catalogue that
# apply for N >= 2, and the gradient norm.
METRIC_KEYS = {"step", "time", "loss", *EMBEDDING_KEYS, "grad_norm"}


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    return run_experiment(CONFIGS / "infonce.yaml", SHORT, runs_dir=tmp_path_factory.mktemp("r"))


def test_run_folder_holds_every_file_of_the_contract(short_run):
    path, summary = short_run
    assert {p.name for p in path.iterdir()} >= {
        "config.yaml",
        "meta.json",
        "metrics.jsonl",
        "spectrum.jsonl",
        "summary.json",
    }
    assert path.parent.name == "r0" or path.parent.exists()
    assert path.name.endswith("-infonce") and path.name[:8].isdigit()

    config = yaml.safe_load((path / "config.yaml").read_text())
    assert config["train"]["steps"] == 120 and config["loss"]["temperature"] == 1.0

    meta = json.loads((path / "meta.json").read_text())
    assert meta["status"] == "completed" and meta["id"] == path.name
    assert meta["seed"] == 0 and meta["device"] == "cpu"
    assert meta["versions"]["torch"] == torch.__version__
    assert meta["started"] <= meta["ended"]
    assert "python" in meta["versions"] and "command" in meta

    rows = read_jsonl(path / "metrics.jsonl")
    assert [r["step"] for r in rows] == [0, 50, 100, 119]  # step 0 and the last step always
    assert all(set(r) >= METRIC_KEYS for r in rows)
    assert all(isinstance(r["rank"], int) for r in rows)
    assert "alignment" not in rows[0]  # one-view objective: a metric that does not apply

    spectra = read_jsonl(path / "spectrum.jsonl")
    assert [s["step"] for s in spectra] == [0, 50, 100, 119]
    for s, r in zip(spectra, rows, strict=True):
        eig = s["eigenvalues"]
        assert len(eig) == 128 and eig == sorted(eig, reverse=True) and min(eig) >= 0
        assert eig[0] == pytest.approx(r["max_eig"]) and eig[-1] == pytest.approx(r["min_eig"])
        # variance is the mean of the per-dimension variances = trace(C) / d
        assert sum(eig) / 128 == pytest.approx(r["variance"], rel=1e-9)

    assert summary == json.loads((path / "summary.json").read_text())
    assert summary["steps_done"] == 120 and summary["dim"] == 128
    assert summary["rank_ceiling"] == 128 and summary["initial_rank"] == 32
    assert summary["final"] == rows[-1]
    assert summary["min"]["loss"] == min(r["loss"] for r in rows)
    assert summary["max"]["effective_rank"] == max(r["effective_rank"] for r in rows)
    assert summary["verdict"] in ("complete collapse", "dimensional collapse", "healthy")


def test_runs_started_in_the_same_second_get_distinct_folders(tmp_path: Path):
    paths = {create_run_dir(tmp_path, "same") for _ in range(5)}
    assert len(paths) == 5 and all(p.is_dir() for p in paths)


def test_writer_never_emits_bare_nan_tokens(tmp_path: Path):
    w = RunWriter(tmp_path)
    w.append_metrics({"step": 0, "loss": math.nan, "variance": math.inf, "rank": 3})
    w.append_spectrum(0, [1.0, math.nan])
    w.close()
    text = (tmp_path / "metrics.jsonl").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"step": 0, "loss": None, "variance": None, "rank": 3}


def test_readers_tolerate_a_line_torn_mid_write(short_run):
    path, _ = short_run
    torn = path.parent / "torn.jsonl"
    torn.write_text((path / "metrics.jsonl").read_text() + '{"step": 200, "lo')
    assert [r["step"] for r in read_jsonl(torn)] == [0, 50, 100, 119]


def test_resolve_run_by_path_prefix_and_latest(short_run):
    path, _ = short_run
    assert resolve_run(path) == path
    assert resolve_run("latest", path.parent) == path
    assert resolve_run(path.name[:10], path.parent) == path
    with pytest.raises(RunNotFoundError, match="no such run"):
        resolve_run("nothing-like-it", path.parent)


def test_resolve_run_by_its_name(tmp_path: Path):
    for folder in ["20260101-000000-probe", "20260101-000100-probe-2", "20260102-000000-other"]:
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "meta.json").write_text("{}")
    assert resolve_run("other", tmp_path) == tmp_path / "20260102-000000-other"
    with pytest.raises(RunNotFoundError, match="ambiguous, 2 runs have that name"):
        resolve_run("probe", tmp_path)
    assert resolve_run("20260101-0001", tmp_path) == tmp_path / "20260101-000100-probe-2"
    with pytest.raises(RunNotFoundError, match="no such run"):
        resolve_run("prob", tmp_path)


def test_mini_batches_and_an_mlp_run(tmp_path: Path):
    path, summary = run_experiment(
        CONFIGS / "collapse.yaml",
        [
            "encoder.name=mlp",
            "encoder.hidden=[64]",
            "encoder.out_dim=16",
            "train.batch_size=100",
            "train.steps=12",
            "log.every=5",
        ],
        runs_dir=tmp_path,
    )
    rows = read_jsonl(path / "metrics.jsonl")
    assert [r["step"] for r in rows] == [0, 5, 10, 11]
    assert summary["batch_size"] == 100 and summary["rank_ceiling"] == 16
    assert rows[0]["rank"] == 16  # an MLP from 32 inputs to 16 outputs can use every dimension


class _SyncCounter:
    """Counts host read-backs (.item, .tolist, .cpu, float(), ...) made by collapse_cli code."""

    NAMES = ("item", "tolist", "cpu", "numpy", "__float__", "__int__", "__bool__")

    def __init__(self, monkeypatch):
        self.count = 0
        for name in self.NAMES:
            original = getattr(torch.Tensor, name)
            monkeypatch.setattr(torch.Tensor, name, self._wrap(original))

    def _wrap(self, original):
        def counted(tensor, *args, **kwargs):
            caller = sys._getframe(1).f_code.co_filename
            if "collapse_cli" in caller:
                self.count += 1
            return original(tensor, *args, **kwargs)

        return counted


def test_steps_that_are_not_logged_read_nothing_back(monkeypatch, tmp_path: Path):
    """Host read-backs happen on log steps only: 20 or 200 steps with the same two log steps
    (step 0 and the last) make the same number of them."""
    counter = _SyncCounter(monkeypatch)
    counts = []
    for steps in (20, 200):
        counter.count = 0
        run_experiment(
            CONFIGS / "infonce.yaml", [f"train.steps={steps}", "log.every=1000"], runs_dir=tmp_path
        )
        counts.append(counter.count)
    assert counts[0] == counts[1] > 0


def test_resolve_sweep_by_prefix_and_its_errors(tmp_path: Path):
    from collapse_cli.rundir.folders import SWEEP, resolve_sweep

    for folder in ["sweep-20260101-000000-a", "sweep-20260101-000100-b"]:
        (tmp_path / folder).mkdir()
        (tmp_path / folder / SWEEP).write_text("{}")
    (tmp_path / "sweep-20260101-000200-not-one").mkdir()  # no sweep.json: not a sweep
    assert resolve_sweep("sweep-20260101-0001", tmp_path) == tmp_path / "sweep-20260101-000100-b"
    with pytest.raises(RunNotFoundError, match="ambiguous, 2 sweeps match: sweep-20260101-000000"):
        resolve_sweep("sweep-2026", tmp_path)
    with pytest.raises(RunNotFoundError, match="no such sweep folder"):
        resolve_sweep("sweep-20260101-0002", tmp_path)
    with pytest.raises(RunNotFoundError, match="not a sweep folder"):
        resolve_sweep(tmp_path / "sweep-20260101-000200-not-one", tmp_path)
