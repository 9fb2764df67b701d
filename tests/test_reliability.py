"""Bad input, signals, divergence, checkpoints and resume: nothing logged is ever lost."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collapse_cli import run_experiment
from collapse_cli.config import load_config
from collapse_cli.errors import CollapseError, ConfigError
from collapse_cli.rundir import read_jsonl
from collapse_cli.training import resume_run

from .conftest import CONFIGS, ROOT, InterruptAt

# --------------------------------------------------------------------------- bad input

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**6), 10**6), st.floats(allow_nan=True),
    st.text(max_size=12),
)  # fmt: skip
keys = st.sampled_from(
    ["name", "seed", "device", "data", "encoder", "loss", "optimizer", "train", "log", "views",
     "n", "dim", "out_dim", "lr", "steps", "every", "temperature", "hidden", "batch_size"]
) | st.text(max_size=8)  # fmt: skip
documents = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5),
    max_leaves=25,
)  # fmt: skip
override_text = st.from_regex(r"[a-z_.]{0,12}(=[^\n]{0,12})?", fullmatch=True)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=documents, overrides=st.lists(override_text, max_size=3))
def test_random_documents_and_overrides_only_raise_config_errors(tmp_path_factory, doc, overrides):
    path = tmp_path_factory.mktemp("h") / "c.yaml"
    path.write_text(yaml.safe_dump(doc))
    try:
        load_config(path, overrides)
    except ConfigError as e:
        assert str(e) and "\n" not in str(e)


@settings(max_examples=60, deadline=None)
@given(overrides=st.lists(override_text, max_size=4))
def test_random_overrides_of_a_good_config_only_raise_config_errors(overrides):
    try:
        load_config(CONFIGS / "infonce.yaml", overrides)
    except ConfigError as e:
        assert str(e) and "\n" not in str(e)


def test_an_unwritable_runs_folder_fails_before_training(tmp_path: Path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(CollapseError, match="cannot create the runs folder"):
        run_experiment(CONFIGS / "collapse.yaml", runs_dir=blocker / "runs")


def test_parallel_processes_get_distinct_folders(tmp_path: Path):
    """Eight processes, started together, each make two folders of the same name and second."""
    code = (
        "import sys; from collapse_cli.rundir import create_run_dir; "
        "print(create_run_dir(sys.argv[1], 'same')); print(create_run_dir(sys.argv[1], 'same'))"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(8)
    ]
    paths = [line for p in procs for line in p.communicate(timeout=60)[0].split()]
    assert len(paths) == 16 and len(set(paths)) == 16
    assert len(list(tmp_path.iterdir())) == 16


def test_resume_rejects_foreign_and_finished_folders(cli, tmp_path: Path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    result = cli("run", "--resume", foreign, "--runs-dir", tmp_path)
    assert result.exit_code == 2 and "not a run folder" in result.output
    path, _ = run_experiment(CONFIGS / "collapse.yaml", ["train.steps=3"], runs_dir=tmp_path)
    result = cli("run", "--resume", path, "--runs-dir", tmp_path)
    assert result.exit_code == 2 and "nothing to resume" in result.output
    result = cli("plot", foreign, "--runs-dir", tmp_path)
    assert result.exit_code == 2 and "Traceback" not in result.output


# --------------------------------------------------------------------------- signals


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_the_run_within_a_step_and_keeps_everything(tmp_path: Path, sig):
    proc = subprocess.Popen(
        [sys.executable, "-m", "collapse_cli", "run", str(CONFIGS / "collapse.yaml"),
         "train.steps=10000000", "log.every=20", "train.checkpoint_every=1000",
         "--runs-dir", str(tmp_path), "--plain"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.time() + 60
    metrics = None
    while time.time() < deadline:
        found = list(tmp_path.glob("*/metrics.jsonl"))
        if found and len(found[0].read_text().splitlines()) >= 3:
            metrics = found[0]
            break
        time.sleep(0.1)
    assert metrics is not None, "the run never logged"
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    run_dir = metrics.parent
    meta = json.loads((run_dir / "meta.json").read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert meta["status"] == "interrupted" == summary["status"]
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]  # every line whole
    assert summary["final"] == rows[-1]
    # stopped within one step of the signal: the checkpoint holds the last finished step
    assert rows[-1]["step"] < summary["steps_done"] <= rows[-1]["step"] + 20
    assert (run_dir / "checkpoint.pt").is_file()
    assert str(run_dir) in out


# --------------------------------------------------------------------------- divergence


def test_divergence_stops_the_run_with_the_last_good_metrics(cli, tmp_path: Path):
    result = cli(
        "run", CONFIGS / "infonce.yaml", "optimizer.name=sgd", "optimizer.lr=1e12",
        "train.steps=200", "log.every=1", "--runs-dir", tmp_path, "-q",
    )  # fmt: skip
    assert result.exit_code == 3, result.output
    assert "diverged" in result.output and "Traceback" not in result.output
    (run_dir,) = tmp_path.iterdir()
    text = (run_dir / "metrics.jsonl").read_text()
    assert "NaN" not in text and "Infinity" not in text
    rows = [json.loads(line) for line in text.splitlines()]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "diverged"
    assert json.loads((run_dir / "meta.json").read_text())["status"] == "diverged"
    assert summary["diverged_at"] == rows[-1]["step"]
    assert rows[-1]["loss"] is None or rows[-1]["variance"] is None
    assert summary["final"] == rows[-2]  # the last good metrics
    assert summary["steps_done"] < 200


# --------------------------------------------------------------------------- resume


def _numbers(path: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "time"} for r in read_jsonl(path / "metrics.jsonl")]


RESUMABLE = {
    "plain objective, mini-batches": (
        "collapse.yaml",
        ["encoder.name=mlp", "encoder.hidden=[32]", "train.batch_size=96", "train.steps=60",
         "log.every=7", "train.checkpoint_every=10", "optimizer.name=adamw"],
    ),
    # an EMA target with the cosine momentum schedule, random views, kNN on held-out data
    "byol": (
        "byol.yaml",
        ["train.steps=40", "log.every=7", "train.checkpoint_every=10",
         "loss.momentum_schedule=cosine", "encoder.hidden=[64]"],
    ),
    # a momentum encoder and a queue of keys (and its pointer)
    "moco": (
        "moco.yaml",
        ["train.steps=40", "log.every=7", "train.checkpoint_every=10", "encoder.hidden=[64]"],
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", RESUMABLE, ids=list(RESUMABLE))
def test_interrupted_and_resumed_equals_uninterrupted(tmp_path: Path, case: str):
    config, overrides = RESUMABLE[case]
    whole, whole_summary = run_experiment(CONFIGS / config, overrides, runs_dir=tmp_path / "a")
    cut, cut_summary = run_experiment(
        CONFIGS / config, overrides, runs_dir=tmp_path / "b", reporter=InterruptAt(23)
    )
    assert cut_summary["status"] == "interrupted" and cut_summary["steps_done"] == 23
    resumed, summary = resume_run(cut, runs_dir=tmp_path / "b")
    assert resumed == cut and summary["status"] == "completed"
    assert _numbers(resumed) == _numbers(whole)
    assert summary["final"]["loss"] == whole_summary["final"]["loss"]
    meta = json.loads((resumed / "meta.json").read_text())
    assert meta["status"] == "completed" and meta["resumed"][0]["from_step"] == 23


def test_a_completed_run_extended_on_resume_equals_a_longer_run(cli, tmp_path: Path):
    """train.steps=N on --resume: the same metrics as a run started with N steps (the row
    logged only because it was the old last step is dropped), config.yaml updated."""
    config, overrides = RESUMABLE["plain objective, mini-batches"]  # 60 steps, checkpoints /10
    longer, _ = run_experiment(CONFIGS / config, [*overrides, "train.steps=90"], runs_dir=tmp_path)
    short, _ = run_experiment(CONFIGS / config, overrides, runs_dir=tmp_path / "b")
    assert 59 in [r["step"] for r in read_jsonl(short / "metrics.jsonl")]  # 59 % 7 != 0
    runs = ("--runs-dir", tmp_path / "b")
    done = cli("run", "--resume", short.name, "train.steps=90", *runs, "-q")
    assert done.exit_code == 0, done.output
    assert _numbers(short) == _numbers(longer)
    assert yaml.safe_load((short / "config.yaml").read_text())["train"]["steps"] == 90
    meta = json.loads((short / "meta.json").read_text())
    assert meta["status"] == "completed" and meta["resumed"][-1]["steps"] == [60, 90]
    summary = json.loads((short / "summary.json").read_text())
    assert summary["steps"] == summary["steps_done"] == 90

    for args, message in [
        (["train.steps=90"], "has completed its 90 steps"),
        (["train.steps=80"], "has completed its 90 steps"),
        (["optimizer.lr=0.1"], "takes only train.steps=N"),
        (["train.steps=zero"], "train.steps"),
    ]:
        refused = cli("run", "--resume", short.name, *args, *runs, "-q")
        assert refused.exit_code == 2 and message in refused.output, refused.output
        assert "Traceback" not in refused.output
    assert _numbers(short) == _numbers(longer)  # nothing was touched


def test_resume_after_a_crash_drops_rows_past_the_checkpoint(tmp_path: Path):
    """A killed process leaves status 'running' and rows logged after its last checkpoint."""
    config, overrides = RESUMABLE["plain objective, mini-batches"]
    whole, _ = run_experiment(CONFIGS / config, overrides, runs_dir=tmp_path / "a")
    crashed, _ = run_experiment(CONFIGS / config, overrides, runs_dir=tmp_path / "b")
    meta = json.loads((crashed / "meta.json").read_text())
    (crashed / "meta.json").write_text(json.dumps(meta | {"status": "running"}))
    (crashed / "summary.json").unlink()
    with (crashed / "metrics.jsonl").open("a") as f:
        f.write('{"step": 70, "loss": 1')  # torn line of a dying process
    with pytest.raises(ConfigError, match="ends before the checkpoint, saved after 60 steps"):
        resume_run(crashed, ["train.steps=30"], runs_dir=tmp_path / "b")
    resume_run(crashed, runs_dir=tmp_path / "b")  # the checkpoint is at step 60 (the end)
    assert _numbers(crashed) == _numbers(whole)


def _listed_status(cli, runs: Path, run: Path) -> str:
    result = cli("list", "--runs-dir", runs)
    assert result.exit_code == 0, result.output
    (line,) = [line for line in result.output.splitlines() if run.name in line]
    return next(s for s in ("died", "running", "completed") if s in line)


def test_a_run_whose_process_is_gone_lists_as_died_and_one_alive_cannot_be_resumed(
    cli, tmp_path: Path
):
    """meta.json records the writing process; `list` tells a killed run from a running one and
    `--resume` refuses a run whose process is still alive."""
    config, overrides = RESUMABLE["plain objective, mini-batches"]
    path, _ = run_experiment(CONFIGS / config, overrides, runs_dir=tmp_path)
    meta = json.loads((path / "meta.json").read_text())
    assert (meta["pid"], meta["host"]) == (os.getpid(), socket.gethostname())
    (path / "summary.json").unlink()
    resume = ("run", "--resume", path.name, "--runs-dir", tmp_path, "-q")
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (path / "meta.json").write_text(json.dumps(meta | {"status": "running", "pid": child.pid}))
        assert _listed_status(cli, tmp_path, path) == "running"
        refused = cli(*resume)
        assert refused.exit_code == 2 and "still running" in refused.output, refused.output
        assert "Traceback" not in refused.output
    finally:
        child.kill()
        child.wait()
    assert _listed_status(cli, tmp_path, path) == "died"  # meta.json still says running
    assert json.loads((path / "meta.json").read_text())["status"] == "running"
    elsewhere = meta | {"status": "running", "pid": child.pid, "host": "another-machine"}
    (path / "meta.json").write_text(json.dumps(elsewhere))
    assert _listed_status(cli, tmp_path, path) == "running"  # cannot tell: not this host
    (path / "meta.json").write_text(json.dumps(meta | {"status": "running", "pid": child.pid}))
    resumed = cli(*resume)
    assert resumed.exit_code == 0, resumed.output
    assert json.loads((path / "meta.json").read_text())["status"] == "completed"


def test_checkpoints_load_with_weights_only(tmp_path: Path):
    import torch

    config, overrides = RESUMABLE["plain objective, mini-batches"]
    path, _ = run_experiment(CONFIGS / config, overrides, runs_dir=tmp_path)
    state = torch.load(path / "checkpoint.pt", weights_only=True)
    assert state["step"] == 60 and {"encoder", "objective", "optimizer", "rng"} <= set(state)


def test_same_config_and_seed_give_identical_metrics(tmp_path: Path):
    config, overrides = RESUMABLE["plain objective, mini-batches"]
    a, _ = run_experiment(CONFIGS / config, overrides, runs_dir=tmp_path)
    b, _ = run_experiment(CONFIGS / config, overrides, runs_dir=tmp_path)
    assert a != b and _numbers(a) == _numbers(b)


def test_deterministic_flag_is_recorded(cli, tmp_path: Path):
    result = cli(
        "run", CONFIGS / "collapse.yaml", "train.steps=3", "--deterministic",
        "--runs-dir", tmp_path, "-q",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (run_dir,) = tmp_path.iterdir()
    assert "deterministic: true" in (run_dir / "config.yaml").read_text()
    assert not __import__("torch").are_deterministic_algorithms_enabled()  # restored after
