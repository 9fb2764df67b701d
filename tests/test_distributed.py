"""One run on two gloo ranks computes what one process computes: the loss and every gradient of
a step, and the whole metrics.jsonl of a run, for every objective whose loss crosses samples or
whose networks hold batch norm; a plain gather instead of the autograd-aware one, or per-rank
batch norm, gets the gradients wrong. Then the life of a distributed run: interrupted and
resumed on two ranks or one, a rank that fails or dies, and ``collapse run --nproc``.

The two ranks are spawned once (tests/distributed_ranks.py) and share one process group for
every job (a second pair, side by side, only to have its rank 1 killed); this process runs the
same jobs in one process and compares. SGD without momentum:
Adam would normalise a gradient's scale away and hide a factor of the world size.
"""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.multiprocessing as mp

from collapse_cli import run_experiment
from collapse_cli.errors import ConfigError
from collapse_cli.rundir import read_jsonl
from collapse_cli.training import distributed, lifecycle, resume_run

from . import distributed_ranks
from .conftest import CONFIGS, ROOT

RTOL = 1e-5


def doc(loss: dict[str, Any], **train: Any) -> dict[str, Any]:
    """A small labelled run: 128 training samples in 4 clusters, a batch-normed MLP, global
    batches of 32 (16 per rank), SGD without momentum, metrics every 2 of 20 steps."""
    return {
        "name": loss["name"],
        "device": "cpu",
        "data": {"name": "clusters", "n": 160, "dim": 8, "intrinsic_dim": 4, "classes": 4},
        "encoder": {"name": "mlp", "hidden": [16], "out_dim": 8, "batch_norm": True},
        "loss": loss,
        "optimizer": {"name": "sgd", "lr": 0.05},
        "train": {"steps": 20, "batch_size": 32, **train},
        "log": {"every": 2, "knn_k": 5},
    }


LOSSES = {
    "infonce_self": {"name": "infonce_self"},
    "infonce": {"name": "infonce"},
    "barlow_twins": {"name": "barlow_twins"},
    "vicreg": {"name": "vicreg"},
    "moco": {"name": "moco", "queue_size": 64, "momentum": 0.9},
    "byol": {"name": "byol", "predictor_hidden": 16},
    "simsiam": {"name": "simsiam"},
    "dino": {"name": "dino", "prototypes": 16, "head": [16, 8]},
}
GATHERING = ["infonce_self", "infonce", "barlow_twins", "vicreg"]  # their loss gathers z
PER_RANK = doc(LOSSES["byol"])
PER_RANK["encoder"] = {**PER_RANK["encoder"], "batch_norm": "per_rank"}
RESUMED = doc(LOSSES["moco"], checkpoint_every=4)
# train.stop_on with a projector (log.at's default adds encoder/...): a dimensional-collapse
# threshold of 0.99 × the step-0 rank holds from step 0 on, so the run stops at step 2.
STOPPED = doc(LOSSES["infonce"], stop_on={"verdict": "dimensional collapse", "patience": 1})
STOPPED["encoder"] = {**STOPPED["encoder"], "projector": [8]}
STOPPED["log"] = {**STOPPED["log"], "verdict": {"dimensional_fraction": 0.99}}

JOBS = (
    [{"name": f"step-{k}", "kind": "step", "doc": doc(v)} for k, v in LOSSES.items()]
    + [{"name": f"plain-{k}", "kind": "plain_step", "doc": doc(LOSSES[k])} for k in GATHERING]
    + [{"name": "per-rank-bn", "kind": "step", "doc": PER_RANK}]
    + [{"name": f"run-{k}", "kind": "run", "doc": doc(v)} for k, v in LOSSES.items()]
    + [{"name": "resumed", "kind": "interrupt_and_resume", "doc": RESUMED, "at": 9}]
    + [{"name": "run-stopped", "kind": "run", "doc": STOPPED}]
    # Last: the group is broken after it, and rank 0 notices when rank 1's process ends.
    + [{"name": "raises", "kind": "fail", "doc": doc(LOSSES["vicreg"]), "rank": 1, "after": 3,
        "how": "raise"}]
)  # fmt: skip
DIES = [{"name": "dies", "kind": "fail", "doc": doc(LOSSES["barlow_twins"]), "rank": 1,
         "after": 3, "how": "kill"}]  # fmt: skip


@pytest.fixture(autouse=True)
def no_figures(monkeypatch):
    """The runs of this module, here as in the ranks, skip their end-of-run figures."""
    monkeypatch.setattr(lifecycle, "_plot", distributed_ranks.no_figures)


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> Path:
    """The folder of what each rank of the two found, one file per job and rank."""
    folder = tmp_path_factory.mktemp("ranks")
    groups = {  # two groups side by side: the second one's rank 1 is killed
        (0, 0): mp.start_processes(
            distributed_ranks.main, args=(str(folder / "a"), JOBS), nprocs=2, join=False
        ),
        (0, -signal.SIGKILL): mp.start_processes(
            distributed_ranks.main, args=(str(folder / "b"), DIES), nprocs=2, join=False
        ),
    }
    for exits, group in groups.items():
        for process in group.processes:  # not group.join(): it ends rank 0 when rank 1 dies
            process.join(timeout=600)
        if tuple(p.exitcode for p in group.processes) != exits:
            group.join()  # raises with the traceback of the rank that failed
    return folder


def found(folder: Path, job: str, rank: int = 0) -> Any:
    return torch.load(folder / "a" / f"{job}-{rank}.pt", weights_only=False)


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    """‖a − b‖ / ‖b‖ (0 when both are 0)."""
    scale = float(b.norm())
    return float((a - b).norm()) / scale if scale else float(a.norm())


def worst_gradient(got: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> float:
    """The largest relative error of a parameter's gradient. A gradient that is zero in exact
    arithmetic (a bias in front of batch norm, which removes it) is round-off, ~1e-9 here: it
    must stay round-off of the whole gradient (1e-6 of its norm), or the error is infinite."""
    assert set(got) == set(expected)
    total = float(torch.cat([g.flatten() for g in expected.values()]).norm())
    worst = 0.0
    for name, grad in expected.items():
        if float(grad.norm()) <= 1e-6 * total:
            worst = max(worst, 0.0 if float(got[name].norm()) <= 1e-6 * total else math.inf)
        else:
            worst = max(worst, relative(got[name], grad))
    return worst


def numbers(path: Path) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "time"} for r in read_jsonl(path)]


def assert_same_rows(got: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    """Every row, every key, every value to RTOL; or to 1e-7 absolute, for a mean of cosines
    near 0 (mean_cosine, simsiam's loss), which cancels float32 terms of size 1 (its round-off
    is ~1e-8, ~1e-5 of the value)."""
    assert [r["step"] for r in got] == [r["step"] for r in expected]
    for g, e in zip(got, expected, strict=True):
        assert set(g) == set(e), g["step"]
        for key, value in e.items():
            assert g[key] == pytest.approx(value, rel=RTOL, abs=1e-7), (g["step"], key)


# --------------------------------------------------------------------------- the step
@pytest.mark.parametrize("loss", LOSSES)
def test_two_ranks_take_the_step_one_process_takes(ranks: Path, loss: str):
    one = distributed_ranks.one_step(doc(LOSSES[loss]))
    two = found(ranks, f"step-{loss}")
    assert two["loss"] == pytest.approx(one["loss"], rel=RTOL)
    assert worst_gradient(two["grads"], one["grads"]) <= RTOL
    other = found(ranks, f"step-{loss}", rank=1)
    assert other["loss"] == two["loss"]  # the logged loss: the same on every rank
    for name, grad in two["grads"].items():  # DDP's average is exactly the same on both
        assert torch.equal(other["grads"][name], grad), name


@pytest.mark.parametrize("loss", GATHERING)
def test_with_a_plain_gather_the_gradients_are_wrong(ranks: Path, loss: str):
    """The check has teeth: rows gathered without autograd send nothing back to their rank."""
    one = distributed_ranks.one_step(doc(LOSSES[loss]))
    plain = found(ranks, f"plain-{loss}")
    assert plain["loss"] == pytest.approx(one["loss"], rel=RTOL)  # the forward is right
    assert worst_gradient(plain["grads"], one["grads"]) > 100 * RTOL


def test_per_rank_batch_norm_is_not_the_global_batch_norm(ranks: Path):
    """encoder.batch_norm: per_rank keeps each rank's statistics, so two ranks no longer take
    one process's step (the default, synchronised, does: the byol case above)."""
    one = distributed_ranks.one_step(doc(LOSSES["byol"]))
    per_rank = found(ranks, "per-rank-bn")
    assert worst_gradient(per_rank["grads"], one["grads"]) > 100 * RTOL


# --------------------------------------------------------------------------- whole runs
@pytest.mark.parametrize("loss", LOSSES)
def test_two_ranks_log_the_metrics_one_process_logs(ranks: Path, loss: str, tmp_path: Path):
    path, summary = run_experiment(doc(LOSSES[loss]), runs_dir=tmp_path)
    two = found(ranks, f"run-{loss}")
    folder = Path(two["path"])
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # rank 0's folder alone
    assert_same_rows(numbers(folder / "metrics.jsonl"), numbers(path / "metrics.jsonl"))
    assert "knn_acc" in read_jsonl(folder / "metrics.jsonl")[0]
    meta = json.loads((folder / "meta.json").read_text())
    assert (meta["world_size"], meta["backend"], meta["status"]) == (2, "gloo", "completed")
    assert json.loads((path / "meta.json").read_text())["world_size"] == 1
    assert found(ranks, f"run-{loss}", rank=1)["summary"] == two["summary"]
    assert two["summary"]["batch_size"] == summary["batch_size"] == 32  # the global batch


def test_two_ranks_stop_where_one_process_stops(ranks: Path, tmp_path: Path):
    """train.stop_on: rank 0 judges, both ranks stop after the same step (else the second
    would wait on a collective forever), with the rows, encoder/ ones included, of one process."""
    path, summary = run_experiment(STOPPED, runs_dir=tmp_path)
    two = found(ranks, "run-stopped")
    assert summary["status"] == two["summary"]["status"] == "stopped"
    assert summary["stopped_at"] == two["summary"]["stopped_at"] == 2
    assert found(ranks, "run-stopped", rank=1)["summary"]["steps_done"] == 3
    rows = numbers(Path(two["path"]) / "metrics.jsonl")
    assert_same_rows(rows, numbers(path / "metrics.jsonl"))
    assert "encoder/effective_rank" in rows[0]


def test_an_interrupted_run_resumes_on_two_ranks_or_on_one(ranks: Path, tmp_path: Path):
    whole, _ = run_experiment(RESUMED, runs_dir=tmp_path)
    expected = numbers(whole / "metrics.jsonl")
    two = found(ranks, "resumed")
    assert two["interrupted"]["status"] == "interrupted"
    assert two["interrupted"]["steps_done"] == 9  # both stopped after the step of the signal
    assert two["resumed"]["status"] == "completed"
    assert_same_rows(numbers(Path(two["path"]) / "metrics.jsonl"), expected)
    (copy,) = (ranks / "a" / "resumed-copy").iterdir()
    _, summary = resume_run(copy, runs_dir=copy.parent)  # the same run, on one process
    assert summary["status"] == "completed"
    assert_same_rows(numbers(copy / "metrics.jsonl"), expected)
    meta = json.loads((copy / "meta.json").read_text())
    assert meta["resumed"][-1]["world_size"] == 1 and meta["world_size"] == 1


def failed(ranks: Path, job: str) -> tuple[dict[str, Any], list[int]]:
    """The meta.json of a job's run and the steps its metrics.jsonl holds."""
    (folder,) = (ranks / ("b" if job == "dies" else "a") / job).iterdir()
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["status"] == "failed"
    return meta, [r["step"] for r in read_jsonl(folder / "metrics.jsonl")]


def test_a_rank_that_raises_ends_the_run_as_failed_with_its_rank_and_error(ranks: Path):
    meta, steps = failed(ranks, "raises")
    assert meta["failed_rank"] == 1 and meta["error"] == "rank 1: RuntimeError: boom in step 3"
    for rank in (0, 1):  # what each rank's command prints
        assert "rank 1: RuntimeError: boom in step 3" in found(ranks, "raises", rank)["error"]
    assert steps == [0, 2]  # every line logged before it


def test_a_rank_killed_without_an_error_is_named_in_meta(ranks: Path):
    meta, steps = failed(ranks, "dies")
    assert meta["failed_rank"] == 1
    assert (
        meta["error"].startswith("rank 1: its process (")
        and "ended without an error" in meta["error"]
    )
    assert steps == [0, 2]


def test_the_collectives_timeout_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv(distributed.TIMEOUT_ENV, raising=False)
    assert distributed.timeout().total_seconds() == distributed.TIMEOUT_S
    monkeypatch.setenv(distributed.TIMEOUT_ENV, "2.5")
    assert distributed.timeout().total_seconds() == 2.5
    for bad in ("0", "-1", "soon"):
        monkeypatch.setenv(distributed.TIMEOUT_ENV, bad)
        with pytest.raises(ConfigError, match="COLLAPSE_DIST_TIMEOUT"):
            distributed.timeout()


# --------------------------------------------------------------------------- the CLI
def test_nproc_refuses_a_batch_that_does_not_split_before_starting_anything(cli, tmp_path):
    result = cli(
        "run", CONFIGS / "nt-xent.yaml", "train.batch_size=255", "--nproc", "2",
        "--device", "cpu", "--runs-dir", tmp_path,
    )  # fmt: skip
    assert result.exit_code == 2
    assert "train.batch_size: 255 does not split evenly over 2 ranks" in result.output
    assert "Traceback" not in result.output and not any(tmp_path.iterdir())
    result = cli("run", CONFIGS / "nt-xent.yaml", "device=cuda:1", "--nproc", "2")
    assert result.exit_code == 2 and "cuda:LOCAL_RANK" in result.output


def test_ctrl_c_of_nproc_leaves_one_interrupted_folder_with_every_logged_line(tmp_path: Path):
    """``collapse run --nproc 2`` starts the ranks through torch.distributed.run; Ctrl-C reaches
    the launcher, which passes it on to the ranks: they stop after the same step."""
    overrides = [f"{k}={v}" for k, v in {"train.steps": 100000, "log.every": 5}.items()]
    config = tmp_path / "run.yaml"
    config.write_text(json.dumps(doc(LOSSES["infonce"])))
    proc = subprocess.Popen(
        [sys.executable, "-m", "collapse_cli", "run", str(config), *overrides, "--nproc", "2",
         "--runs-dir", str(tmp_path / "runs"), "--plain"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline, metrics = time.time() + 120, None
    while time.time() < deadline and metrics is None:
        logged = list(tmp_path.glob("runs/*/metrics.jsonl"))
        if logged and len(logged[0].read_text().splitlines()) >= 3:
            metrics = logged[0]
        time.sleep(0.2)
    assert metrics is not None, "the run never logged"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in out + err
    (folder,) = (tmp_path / "runs").iterdir()
    meta = json.loads((folder / "meta.json").read_text())
    summary = json.loads((folder / "summary.json").read_text())
    assert meta["status"] == summary["status"] == "interrupted" and meta["world_size"] == 2
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]  # every line whole
    assert summary["final"] == rows[-1]
    assert str(folder) in out
