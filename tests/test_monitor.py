"""The Monitor of a user's own loop: the README's two lines in a plain loop, the same metrics and
folder as a run, the ends of a run (completed, interrupted, failed, diverged), bad input, and
several processes under torch.distributed."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from collapse_cli import Monitor, load_run, run_experiment
from collapse_cli.errors import ConfigError
from collapse_cli.inspection import inspect_embeddings
from collapse_cli.metrics import compute_metrics
from collapse_cli.rundir import read_jsonl

from .conftest import CONFIGS, ROOT


@pytest.fixture
def no_figures(monkeypatch):
    """Runs end without drawing their figures (what this test does not look at)."""
    monkeypatch.setattr("collapse_cli.reading.figures.plot_run", lambda path: [])


def readme_block(heading: str) -> str:
    """The first python block of a README section, as it is printed there."""
    text = (ROOT / "README.md").read_text()
    section = text.split(f"\n## {heading}\n", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.fixture
def one_thread():
    """Tiny models run faster on one thread, and far faster on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_the_readme_lines_run_pasted_into_a_plain_pytorch_loop(
    tmp_path, monkeypatch, cli, one_thread
):
    code = readme_block("Your own training loop")
    added = [ln for ln in code.splitlines() if "# line" in ln]
    assert len(added) == 2 and "Monitor(" in added[0] and "monitor.log(" in added[1]
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    exec(compile(code, "README.md", "exec"), {})
    (path,) = (tmp_path / "runs").iterdir()
    assert path.name.endswith("-my-model")
    assert {"config.yaml", "meta.json", "metrics.jsonl", "spectrum.jsonl", "summary.json"} <= {
        p.name for p in path.iterdir()
    }
    assert yaml.safe_load((path / "config.yaml").read_text()) == {"lr": 1e-3}
    rows = read_jsonl(path / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(0, 500, 50))
    assert all({"loss", "variance", "effective_rank", "grad_norm"} <= set(r) for r in rows)
    summary = json.loads((path / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["verdict"]
    assert summary["batch_size"] == 512 and summary["dim"] == 16
    assert (path / "plots" / "overview.png").is_file()
    listed = cli("list", "--runs-dir", tmp_path / "runs")
    assert listed.exit_code == 0 and path.name in listed.output


def test_a_logged_row_is_what_compute_metrics_and_inspect_give(tmp_path, no_figures):
    g = torch.Generator().manual_seed(1)
    model = torch.nn.Linear(6, 5)
    x, labels = torch.randn(40, 6, generator=g), torch.arange(40) % 3
    z = model(x)
    loss = z.pow(2).mean()
    loss.backward()
    z_pos = z.detach() + 0.1 * torch.randn(40, 5, generator=g)
    with Monitor(tmp_path, name="one", config={"k": 1}) as monitor:
        row = monitor.log(
            7, z, z_pos, loss=loss, labels=labels, parameters=model.parameters(), lr=0.5
        )
    values, eigs = compute_metrics(z.detach(), z_pos)
    assert {k: row[k] for k in values} == values  # every metric, exactly
    assert row["loss"] == loss.item() and row["lr"] == 0.5
    grads = torch.cat([p.grad.flatten() for p in model.parameters()])
    assert row["grad_norm"] == pytest.approx(float(grads.norm()), rel=1e-6)
    assert row["knn_acc"] == inspect_embeddings(z.detach(), labels).metrics["knn_acc"]
    (line,) = read_jsonl(monitor.path / "spectrum.jsonl")
    assert line == {"step": 7, "eigenvalues": eigs.tolist()}
    by_numpy = np.linalg.eigvalsh(np.cov(z.detach().double().numpy(), rowvar=False))[::-1]
    assert np.allclose(line["eigenvalues"], by_numpy, rtol=1e-9, atol=1e-15)
    assert monitor.summary["steps_done"] == 8 and "knn_chance" in monitor.summary


def test_the_loss_the_gradient_norm_and_extra_tensors_add_no_read_back(
    tmp_path, monkeypatch, no_figures
):
    """They travel with the metrics in compute_metrics's one copy: a log step with all of them
    reads back from tensors exactly as often as one with the embeddings alone."""
    from .test_run_folder import _SyncCounter

    model = torch.nn.Linear(6, 5)
    z = model(torch.randn(40, 6))
    z.pow(2).mean().backward()
    counts = []
    with Monitor(tmp_path) as monitor:
        monitor.log(0, z)  # the folder is made here: not counted
        counter = _SyncCounter(monkeypatch)
        monitor.log(1, z)
        counts.append(counter.count)
        loss, lr, t = z.pow(2).mean(), torch.tensor(0.1), torch.tensor(3.0)
        monitor.log(2, z, loss=loss, parameters=model.parameters(), lr=lr, temperature=t)
        counts.append(counter.count - counts[0])
    assert counts[0] == counts[1] > 0


def test_a_monitor_folder_reads_like_a_run_folder(tmp_path, cli, one_thread, monkeypatch):
    runs = tmp_path / "runs"
    with monkeypatch.context() as patch:  # the README's example draws them (plot_run)
        patch.setattr("collapse_cli.reading.figures.plot_run", lambda path: [])
        _two_monitor_runs_and_a_run(runs)
    run = load_run(next(runs.glob("*-lr0.01")))
    assert run.batch_size == 64 and run.dim == 4 and run.rank_ceiling == 4
    assert run.status == "completed" and run.steps == [0, 1, 2, 3]
    names = [p.name for p in runs.iterdir()]
    compared = cli("compare", *names, "--runs-dir", runs)
    assert compared.exit_code == 0, compared.output
    assert "optim.lr" in compared.output
    listed = cli("list", "--runs-dir", runs)
    assert listed.exit_code == 0 and all(name in listed.output for name in names)


def _two_monitor_runs_and_a_run(runs: Path) -> None:
    for lr in (0.1, 0.01):
        torch.manual_seed(0)
        model = torch.nn.Linear(8, 4)
        opt = torch.optim.SGD(model.parameters(), lr=lr)
        x = torch.randn(64, 8)
        with Monitor(runs, name=f"lr{lr}", config={"optim": {"lr": lr}, "log": "w&b"}) as m:
            for step in range(4):
                z = model(x)
                loss = z.var(0).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                m.log(step, z, loss=loss)
    run_experiment(CONFIGS / "collapse.yaml", ["train.steps=5", "log.every=2"], runs_dir=runs)


def _loop(monitor: Monitor, fail_at: int | None = None, error: BaseException | None = None):
    for step in range(6):
        if step == fail_at:
            raise error
        monitor.log(step, torch.randn(16, 3), loss=float(step))


@pytest.mark.parametrize(
    ("error", "status"),
    [(KeyboardInterrupt(), "interrupted"), (RuntimeError("CUDA out of memory"), "failed")],
)
def test_an_exception_ends_the_run_interrupted_or_failed_and_goes_on(
    tmp_path, no_figures, error, status
):
    monitor = Monitor(tmp_path, name="x", every=2)
    with pytest.raises(type(error)), monitor:
        _loop(monitor, fail_at=5, error=error)
    meta = json.loads((monitor.path / "meta.json").read_text())
    assert meta["status"] == status and meta["ended"]
    if status == "failed":
        assert meta["error"] == "RuntimeError: CUDA out of memory"
    summary = json.loads((monitor.path / "summary.json").read_text())
    assert summary["status"] == status and summary["steps_done"] == 5
    assert [r["step"] for r in read_jsonl(monitor.path / "metrics.jsonl")] == [0, 2, 4]


def test_a_non_finite_step_marks_the_run_diverged_and_keeps_the_last_good_metrics(
    tmp_path, no_figures
):
    with Monitor(tmp_path) as monitor:
        monitor.log(0, torch.randn(8, 3), loss=1.0)
        monitor.log(1, torch.randn(8, 3), loss=float("nan"))
        monitor.log(2, torch.full((8, 3), float("inf")))
    s = monitor.summary
    assert s["status"] == "diverged" and s["diverged_at"] == 1 and s["final"]["step"] == 0
    rows = read_jsonl(monitor.path / "metrics.jsonl")
    assert rows[1]["loss"] is None and rows[2]["variance"] is None  # null, never NaN tokens


@pytest.mark.parametrize(
    ("z", "message"),
    [
        (torch.randn(8), r"z must be an \(N, d\) matrix with N >= 2 rows, got shape \(8,\)"),
        (torch.randn(1, 4), r"got shape \(1, 4\) at step 0"),
        ("embeddings", r"z must be a tensor, got str"),
    ],
)
def test_bad_embeddings_are_one_line_errors_and_nothing_is_written(tmp_path, z, message):
    with pytest.raises(ConfigError, match=message) as caught, Monitor(tmp_path / "runs") as m:
        m.log(0, z)
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "runs").exists()


def test_a_changing_dimension_or_a_reserved_name_is_refused(tmp_path, no_figures):
    with Monitor(tmp_path) as monitor:
        monitor.log(0, torch.randn(8, 4))
        with pytest.raises(ConfigError, match="d = 5 at step 1, but d = 4 before"):
            monitor.log(1, torch.randn(8, 5))
        with pytest.raises(ConfigError, match="z_pos must have z's shape"):
            monitor.log(1, torch.randn(8, 4), torch.randn(7, 4))
        with pytest.raises(ConfigError, match="rank is a name the run logs itself"):
            monitor.log(1, torch.randn(8, 4), rank=3)
    assert len(read_jsonl(monitor.path / "metrics.jsonl")) == 1


def test_every_skips_steps_and_config_becomes_plain_yaml(tmp_path, no_figures):
    import argparse

    ns = argparse.Namespace(lr=torch.tensor(0.5), out=Path("/x"), sizes=(1, 2))
    with Monitor(tmp_path, config=ns, every=3) as monitor:
        skipped = [monitor.log(s, torch.randn(4, 2)) is None for s in range(7)]
    assert skipped == [False, True, True, False, True, True, False]
    assert yaml.safe_load((monitor.path / "config.yaml").read_text()) == {
        "lr": 0.5,
        "out": "/x",
        "sizes": [1, 2],
    }
    with pytest.raises(ConfigError, match="config must be a dict"):
        Monitor(tmp_path, config=[1, 2])
    with pytest.raises(ConfigError, match="thresholds: complete_std_l2: Input should be less"):
        Monitor(tmp_path, thresholds={"complete_std_l2": 2})
    with pytest.raises(ConfigError, match="thresholds: knn: Extra inputs are not permitted"):
        Monitor(tmp_path, thresholds={"knn": 0.5})


def test_a_block_that_logs_nothing_leaves_nothing(tmp_path):
    with Monitor(tmp_path / "runs") as monitor:
        pass
    assert monitor.path is None and not (tmp_path / "runs").exists()


RANK = """
import sys
from datetime import timedelta

import torch
import torch.distributed as dist


def work(rank, port, runs):
    address = f"tcp://127.0.0.1:{{port}}"
    dist.init_process_group("gloo", init_method=address, rank=rank, world_size=2,
                            timeout=timedelta(seconds=120))
    try:
        from collapse_cli import Monitor

{body}
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
{main}
"""


def rank_script(body: str, main: str) -> str:
    """A script for `two_ranks`: ``work(rank, port, runs)`` joins two gloo ranks and runs
    ``body`` (Monitor imported); as a script, rank 1 runs ``main``."""
    return RANK.format(
        body=textwrap.indent(textwrap.dedent(body).strip("\n"), " " * 8),
        main=textwrap.indent(textwrap.dedent(main).strip("\n"), " " * 4),
    )


WORKER = rank_script(
    """
    z = torch.randn(16, 4, generator=torch.Generator().manual_seed(0))
    with Monitor(runs, name="ddp") as monitor:
        return [
            monitor.log(step, z[8 * rank : 8 * (rank + 1)] * (step + 1), loss=float(rank))
            for step in range(2)
        ]
    """,
    "assert work(1, int(sys.argv[1]), sys.argv[2]) == [None, None]",
)


def two_ranks(worker: str, runs: Path) -> tuple[Any, str]:
    """``work(rank, port, runs)`` of ``worker`` on two gloo ranks: rank 1 in a child process
    (``worker`` run as a script), rank 0 here. Returns rank 0's answer and rank 1's output."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = runs.parent / "rank1.py"
    script.write_text(worker)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, str(script), str(port), str(runs)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        namespace: dict = {}
        exec(compile(worker, "rank0", "exec"), namespace)
        answer = namespace["work"](0, port, runs)
        out, err = child.communicate(timeout=300)
    finally:
        child.kill()
    assert child.returncode == 0, err[-3000:]
    return answer, out


def test_under_torch_distributed_only_rank_0_writes_every_ranks_embeddings(tmp_path):
    """Two ranks: rank 1 in a child process, rank 0 here."""
    runs = tmp_path / "runs"
    rows, _ = two_ranks(WORKER, runs)
    (path,) = runs.iterdir()  # one folder: rank 1 wrote nothing
    assert read_jsonl(path / "metrics.jsonl") == rows
    z = torch.randn(16, 4, generator=torch.Generator().manual_seed(0))
    for step, row in enumerate(rows):
        values, _ = compute_metrics(z * (step + 1))  # both ranks' rows, in rank order
        assert {k: row[k] for k in values} == values
        assert row["loss"] == 0.5  # the mean of the ranks' losses
    assert json.loads((path / "summary.json").read_text())["batch_size"] == 16
