"""Sweeps: the grid times the seeds as run folders, validation before anything is created, a
diverging point among completed ones, Ctrl-C and --resume, the executors, threads, and what
compare, plot and load_sweep make of a sweep (against means and deviations worked out by hand).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import signal
import sys
from pathlib import Path

import pytest
import torch
import yaml

from collapse_cli import load_sweep, run_sweep
from collapse_cli.reading.run import load_run
from collapse_cli.reading.study import axis_kind, is_logarithmic, mean_curve, study_figure
from collapse_cli.reading.sweep import open_sweep, run_key, sweep_groups
from collapse_cli.threads import share
from collapse_cli.training.executors import Task
from collapse_cli.training.grid import grid_of_values, split_values
from collapse_cli.training.plan import plan_sweep
from collapse_cli.training.slurm import SweepJob
from collapse_cli.training.sweep import resume_sweep

from .conftest import CONFIGS, write
from .synthetic import write_run, write_sweep

TINY = ["train.steps=20", "log.every=10", "log.figures=none"]


def _index(path: Path) -> dict:
    return json.loads((path / "sweep.json").read_text())


def _folders(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if (p / "meta.json").is_file())


# --------------------------------------------------------------------------- a real sweep
@pytest.fixture(scope="module")
def diverging_sweep(tmp_path_factory):
    """2 learning rates × 2 data sizes × 2 seeds of demo 1 with SGD: lr 1000 diverges."""
    from typer.testing import CliRunner

    from collapse_cli.cli import app

    runs = tmp_path_factory.mktemp("runs")
    args = ["sweep", str(CONFIGS / "collapse.yaml"), "optimizer.name=sgd", *TINY,
            "--grid", "optimizer.lr=0.001,1000", "--grid", "data.n=64,128", "--seeds", "2",
            "--workers", "2", "--runs-dir", str(runs)]  # fmt: skip
    result = CliRunner().invoke(app, args)
    (path,) = runs.glob("sweep-*-collapse")
    return result, path


def test_a_sweep_is_the_product_of_its_grids_times_its_seeds(diverging_sweep):
    _, path = diverging_sweep
    found = []
    for folder in _folders(path):
        c = yaml.safe_load((folder / "config.yaml").read_text())
        found.append((c["optimizer"]["lr"], c["data"]["n"], c["seed"]))
    expected = {(lr, n, seed) for lr in (0.001, 1000.0) for n in (64, 128) for seed in (0, 1)}
    assert len(found) == 8 and set(found) == expected
    index = _index(path)
    assert index["grid"] == {"optimizer.lr": [0.001, 1000.0], "data.n": [64, 128]}
    assert index["seeds"] == [0, 1] and len(index["runs"]) == 8
    for entry in index["runs"]:  # the index names each run's folder, and that folder is the run
        c = yaml.safe_load((path / entry["folder"] / "config.yaml").read_text())
        params = {"optimizer.lr": c["optimizer"]["lr"], "data.n": c["data"]["n"]}
        assert entry["params"] == params and entry["seed"] == c["seed"]
        assert c["train"]["steps"] == 20 and c["optimizer"]["name"] == "sgd"


def test_a_diverging_point_is_reported_while_the_rest_complete(diverging_sweep):
    result, path = diverging_sweep
    assert result.exit_code == 3, result.output
    by_status: dict[str, list[dict]] = {}
    for entry in _index(path)["runs"]:
        by_status.setdefault(entry["status"], []).append(entry)
    assert {e["params"]["optimizer.lr"] for e in by_status["diverged"]} == {1000.0}
    assert len(by_status["diverged"]) == 4 and len(by_status["completed"]) == 4
    assert all(e["verdict"] and e["effective_rank"] > 1 for e in by_status["completed"])
    for e in by_status["diverged"]:
        assert "NaN or infinite" in e["reason"]
        line = f"diverged [{e['index']}] optimizer.lr=1000.0 data.n={e['params']['data.n']}"
        assert line in result.output and e["folder"] in result.output
    assert "4 diverged of 8 runs" in result.output
    assert result.stdout.rstrip().endswith(path.name)


def test_each_worker_gets_its_share_of_the_cores(diverging_sweep):
    _, path = diverging_sweep
    workers, threads = share(8, 2, None)
    index = _index(path)
    assert index["executor"] == {"name": "pool", "workers": workers, "threads": threads}
    assert {e["threads"] for e in index["runs"]} == {threads}  # torch's count in the worker
    assert share(8, None, None, available=2) == (2, 1)  # default: one thread per run
    assert share(8, 2, None, available=16) == (2, 8)
    assert share(8, None, 4, available=16) == (4, 4)
    assert share(3, None, None, available=16) == (3, 1)  # never more workers than runs


# --------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "grid, words",
    [
        (["optimizer.lr=0.1,abc"], ["optimizer.lr=abc", "valid number"]),
        (["optimizer.lr"], ["expected key.path=v1,v2"]),
        (["loss.temperatur=0.1,0.5"], ["loss.temperatur", "unknown key"]),
        (["optimizer.lr=0.1,,0.2"], ["empty value"]),
        (["optimizer.lr=1e-3,0.001"], ["same run"]),
        (["train.batch_size=64,100000"], ["train.batch_size=100000", "larger than the data"]),
        (["seed=1,2"], ["--seeds"]),
    ],
)
def test_a_bad_grid_is_one_line_and_creates_nothing(cli, runs_dir, grid, words):
    args = [a for g in grid for a in ("--grid", g)]
    result = cli("sweep", CONFIGS / "collapse.yaml", *TINY, *args, "--runs-dir", runs_dir)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in result.output
    assert all(w in lines[0] for w in words), lines[0]
    assert not runs_dir.exists()


def test_a_sweep_block_in_the_yaml_works_as_grid_options(cli, tmp_path):
    text = (CONFIGS / "collapse.yaml").read_text()
    block = (
        "sweep:\n  grid:\n    optimizer.lr: [1.0e-3, 1.0e-2]\n    data.n: [64, 128]\n  seeds: 2\n"
    )
    config = write(tmp_path / "grid.yaml", text + block)
    from_yaml = plan_sweep(config)
    from_options = plan_sweep(
        CONFIGS / "collapse.yaml", ["optimizer.lr=1e-3,1e-2", "data.n=64,128"], 2
    )
    assert (
        from_yaml.grid == from_options.grid == {"optimizer.lr": [0.001, 0.01], "data.n": [64, 128]}
    )
    assert [(p["params"], p["seed"]) for p in from_yaml.points] == [
        (p["params"], p["seed"]) for p in from_options.points
    ]
    assert "sweep" not in from_yaml.config  # the runs' configs never carry it
    # --grid replaces the block's values of a key; collapse run refuses the file clearly
    assert plan_sweep(config, ["data.n=32"]).grid["data.n"] == [32]
    result = cli("run", config, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 2 and "collapse sweep" in result.output
    assert not (tmp_path / "runs").exists()


def test_grid_values_split_at_top_level_commas_only():
    assert split_values("0.05, 0.1,0.5") == ["0.05", "0.1", "0.5"]
    assert split_values("[64, 64],[128],{a: 1, b: 2}") == ["[64, 64]", "[128]", "{a: 1, b: 2}"]
    assert split_values("'a,b',c") == ["'a,b'", "c"]
    assert grid_of_values({"loss.name": ["a", "b,c"], "data.n": [64]}) == {
        "loss.name": ["a", "b,c"],
        "data.n": ["64"],
    }  # values given in Python are never split


# --------------------------------------------------------------------------- stop and resume
class _InterruptOnce:
    """A sweep reporter that sends this process SIGINT, as a Ctrl-C would, once a run has
    completed and another is inside its training loop (running, with a checkpoint saved)."""

    def __init__(self, runs_dir: Path) -> None:
        self.runs_dir, self.sent = runs_dir, False

    def start(self, index, todo):
        self.index = index

    def update(self, entry):
        done = any(e["status"] == "completed" for e in self.index["runs"])
        going = [
            p.parent
            for p in self.runs_dir.glob("sweep-*/*/checkpoint.pt")
            if json.loads((p.parent / "meta.json").read_text())["status"] == "running"
        ]
        if not self.sent and done and going:
            self.sent = True
            os.kill(os.getpid(), signal.SIGINT)

    def stop(self): ...


def test_an_interrupted_sweep_resumes_without_rerunning_finished_runs(tmp_path):
    reporter = _InterruptOnce(tmp_path)
    # One worker: the 20-step run completes, the 300-step one is stopped inside its loop (it
    # saves a checkpoint every 10 steps), the 30-step one never starts.
    overrides = ["log.every=100", "train.checkpoint_every=10", "log.figures=none"]
    first = run_sweep(CONFIGS / "collapse.yaml", ["train.steps=20,300,30"], overrides=overrides,
                      runs_dir=tmp_path, workers=1, reporter=reporter)  # fmt: skip
    assert first.interrupted and reporter.sent
    statuses = [e["status"] for e in first.index["runs"]]
    assert statuses == ["completed", "interrupted", "pending"], statuses
    assert _index(first.path)["status"] == "interrupted"
    done = first.path / first.index["runs"][0]["folder"]
    stopped = first.path / first.index["runs"][1]["folder"]
    names = ("metrics.jsonl", "meta.json", "summary.json")
    before = {name: (done / name).read_bytes() for name in names}

    second = resume_sweep(first.path, workers=1)
    assert second.started == 2 and not second.interrupted
    assert [e["status"] for e in second.index["runs"]] == ["completed"] * 3
    assert {name: (done / name).read_bytes() for name in names} == before  # not run again
    assert second.index["runs"][1]["folder"] == stopped.name  # continued in its own folder
    meta = json.loads((stopped / "meta.json").read_text())
    assert meta["status"] == "completed" and meta["resumed"][0]["from_step"] > 0
    assert [r["step"] for r in load_run(stopped).metrics] == [0, 100, 200, 299]
    assert len(_folders(first.path)) == 3
    assert _index(first.path)["resumed"][0]["runs"] == 2


def test_a_requeued_job_continues_its_run_from_the_checkpoint(tmp_path):
    """What SLURM's requeue of a preempted job runs: the same task, which finds the folder its
    first attempt left and continues it through resume_run."""
    from collapse_cli import run_experiment
    from collapse_cli.config import load_config

    class Preempt:  # stops the run as a signal would, after the step in progress (step 20)
        def start(self, steps): ...
        def advance(self, step): ...
        def log(self, row, dim):
            if row["step"] == 20:
                os.kill(os.getpid(), signal.SIGTERM)

    doc = yaml.safe_load((CONFIGS / "collapse.yaml").read_text())
    overrides = ["train.steps=60", "log.every=10", "train.checkpoint_every=5", "log.figures=none",
                 "optimizer.lr=0.01", "seed=0"]  # fmt: skip
    sweep = tmp_path / "sweep-x"
    path, summary = run_experiment(load_config(doc, overrides), runs_dir=sweep, reporter=Preempt())
    assert summary["status"] == "interrupted"
    task = Task(0, str(sweep), doc, overrides, ["optimizer.lr"], run_key([0.01], 0), 1, "test")
    job = SweepJob()
    requeued = job.checkpoint(task)
    assert requeued.function is job and requeued.args == (task,)
    outcome = requeued.function(*requeued.args)
    assert outcome["status"] == "completed" and outcome["folder"] == path.name
    assert json.loads((path / "meta.json").read_text())["resumed"][0]["from_step"] == 21
    assert [r["step"] for r in load_run(path).metrics] == [0, 10, 20, 30, 40, 50, 59]


def test_a_requeued_job_whose_run_had_ended_reports_it_without_running_it_again(tmp_path):
    """A job requeued after its run ended (completed here; stopped and diverged alike) finds
    the folder, leaves every file of it as it was, starts no second run and reports the
    outcome the first attempt would have reported."""
    from collapse_cli.training.executors import run_task

    doc = yaml.safe_load((CONFIGS / "collapse.yaml").read_text())
    overrides = ["train.steps=30", "log.every=10", "log.figures=none", "optimizer.lr=0.01",
                 "seed=0"]  # fmt: skip
    sweep = tmp_path / "sweep-x"
    task = Task(0, str(sweep), doc, overrides, ["optimizer.lr"], run_key([0.01], 0), 1, "test")
    first = run_task(task)  # the first attempt
    assert first["status"] == "completed"
    (path,) = _folders(sweep)
    before = {p.name: p.read_bytes() for p in path.iterdir() if p.is_file()}
    outcome = SweepJob()(task)  # the requeued attempt
    ran = {k: v for k, v in first.items() if k != "threads"}  # torch's threads: none now
    assert outcome == ran
    assert _folders(sweep) == [path]  # no second run
    assert {p.name: p.read_bytes() for p in path.iterdir() if p.is_file()} == before


def test_submitit_local_executor_runs_a_sweep_end_to_end(tmp_path):
    pytest.importorskip("submitit", reason="submitit is not installed (the submitit extra)")
    result = run_sweep(CONFIGS / "collapse.yaml", {"optimizer.lr": [1e-3, 1e-2]}, overrides=TINY,
                       runs_dir=tmp_path, executor="submitit", workers=2)  # fmt: skip
    index = _index(result.path)
    assert index["executor"]["name"] == "submitit" and index["executor"]["cluster"] == "local"
    assert [e["status"] for e in index["runs"]] == ["completed", "completed"]
    lrs = {
        yaml.safe_load((f / "config.yaml").read_text())["optimizer"]["lr"]
        for f in _folders(result.path)
    }
    assert lrs == {0.001, 0.01}
    assert (result.path / "submitit").is_dir()  # submitit's pickles and logs stay beside


# --------------------------------------------------------------------------- threads
def test_a_run_starts_with_one_thread_unless_told_otherwise(monkeypatch):
    from collapse_cli.threads import set_thread_env, thread_env

    assert thread_env(2) == {"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    set_thread_env(None)  # collapse run without --threads
    assert os.environ["OMP_NUM_THREADS"] == os.environ["MKL_NUM_THREADS"] == "1"
    monkeypatch.setenv("OMP_NUM_THREADS", "7")  # the user's own setting stays
    set_thread_env(None)
    assert os.environ["OMP_NUM_THREADS"] == "7"
    set_thread_env(3)  # --threads 3
    assert os.environ["OMP_NUM_THREADS"] == os.environ["MKL_NUM_THREADS"] == "3"


def test_run_threads_sets_torchs_threads_for_the_run_and_records_them(cli, runs_dir):
    seen = []

    class Watch:
        def start(self, steps): ...
        def advance(self, step): ...
        def log(self, row, dim):
            seen.append(torch.get_num_threads())

    from collapse_cli import run_experiment

    before = torch.get_num_threads()
    run_experiment(CONFIGS / "collapse.yaml", [*TINY, "train.threads=1"],
                             runs_dir=runs_dir, reporter=Watch())  # fmt: skip
    assert set(seen) == {1} and torch.get_num_threads() == before
    result = cli(
        "run", CONFIGS / "collapse.yaml", *TINY, "--threads", "1", "-q", "--runs-dir", runs_dir
    )
    assert result.exit_code == 0, result.output
    folder = Path(result.output.strip().splitlines()[-1])
    assert yaml.safe_load((folder / "config.yaml").read_text())["train"]["threads"] == 1


# --------------------------------------------------------------------------- aggregation
BASE = {0.001: 10.0, 0.01: 20.0, 0.1: 30.0}  # effective rank by learning rate, + 1 for d = 16


@pytest.fixture
def study(tmp_path):
    """3 learning rates × 2 widths × 3 seeds. Effective ranks base, base + 2, base + 4 (mean
    base + 2, standard deviation 2); variance 2 at step 0 and (1 + seed) / 2 at the end (ratios
    1/4, 1/2, 3/4: mean 1/2, deviation 1/4). lr 0.1, d 16, seed 2 diverged; lr 0.1, d 8 has
    two complete collapses of three."""
    runs = []
    for lr in BASE:
        for d in (8, 16):
            for seed in (0, 1, 2):
                final = {"loss": 1.0, "variance": (1 + seed) / 2, "std_l2": 0.25,
                         "effective_rank": BASE[lr] + (d == 16) + 2 * seed}  # fmt: skip
                r = {"params": {"optimizer.lr": lr, "encoder.out_dim": d}, "seed": seed,
                     "final": final, "first": final | {"variance": 2.0}}  # fmt: skip
                if lr == 0.1 and d == 16 and seed == 2:
                    r |= {"status": "diverged", "verdict": None}
                if lr == 0.1 and d == 8 and seed < 2:
                    r["verdict"] = "complete collapse"
                runs.append(r)
    grid = {"optimizer.lr": list(BASE), "encoder.out_dim": [8, 16]}
    return write_sweep(tmp_path, grid, runs, [0, 1, 2])


def test_means_and_deviations_over_seeds_are_the_hand_computed_ones(study, monkeypatch):
    groups = {tuple(g.params.values()): g for g in sweep_groups(open_sweep(study))}
    assert len(groups) == 6
    for (lr, d), g in groups.items():
        if (lr, d) == (0.1, 16):  # the diverged seed is left out: ranks 31 and 33
            assert g.stat("effective_rank") == (32.0, pytest.approx(math.sqrt(2)), 2)
            assert g.majority() == ("healthy", 2)
            continue
        assert g.stat("effective_rank") == (BASE[lr] + (d == 16) + 2, 2.0, 3)
        mean, std, n = g.stat("variance_ratio")
        assert (mean, std, n) == (pytest.approx(0.5), pytest.approx(0.25), 3)
        assert g.stat("std_l2_sqrt_d") == (1.0, 0.0, 3)  # 0.25 · √16
    assert groups[(0.1, 8)].majority() == ("complete collapse", 2)
    rows = load_sweep(study, frame=False)
    assert len(rows) == 18
    assert [r["variance_ratio"] for r in rows[:3]] == [0.25, 0.5, 0.75]
    assert rows[-1]["status"] == "diverged" and "NaN" in rows[-1]["reason"]
    monkeypatch.setitem(sys.modules, "pandas", None)  # as if it were not installed
    assert load_sweep(study) == rows
    monkeypatch.undo()
    if importlib.util.find_spec("pandas"):
        frame = load_sweep(study)
        assert frame.groupby(["optimizer.lr", "encoder.out_dim"]).size().tolist() == [3] * 6


def test_compare_of_a_sweep_shows_mean_and_std_per_grid_point(cli, study):
    result = cli("compare", study)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    row = next(line for line in lines if "#1 " in line and "0.001" in line)
    assert "12 ± 2" in row and "healthy 3/3" in row and "0.5 ± 0.25" in row
    assert any("32 ± 1.414" in line and "2 of 3" in line for line in lines)
    assert "left out of the means: 20260101-000017-syn (diverged)" in result.output
    out = Path(lines[-1])
    assert out.parent == study and (out / "effective_rank.png").is_file()
    table = cli("compare", study, "--table", "markdown", "--out", study / "figs").output
    assert (
        "| optimizer.lr | encoder.out_dim | seeds | majority | effective_rank (mean ± std) |"
        in table
    )
    assert "| 0.001 | 8 | 3/3 | healthy 3/3 | 12 ± 2 | 1 ± 0 | 0.5 ± 0.25 |" in table


def test_compare_of_runs_that_differ_only_in_seed_aggregates_them(cli, tmp_path):
    folders = []
    for seed, rank in ((0, 10.0), (1, 12.0), (2, 14.0)):
        config = {"name": "same", "seed": seed, "loss": {"name": "variance"}}
        final = {"loss": 1.0, "variance": 1.0, "effective_rank": rank, "std_l2": 0.25}
        folders.append(write_run(tmp_path / f"2026010{seed}-000000-same", config, final))
    result = cli("compare", *folders, "--out", tmp_path / "figs")
    assert result.exit_code == 0, result.output
    assert "3 runs, 3 seeds" in result.output and "12 ± 2" in result.output
    assert (tmp_path / "figs" / "overview.png").is_file()


def test_mean_curves_and_bands_are_the_mean_and_std_at_each_step(tmp_path):
    runs = []
    for seed, (a, b) in enumerate([(1.0, 3.0), (3.0, 7.0)]):
        config = {"name": "c", "seed": seed}
        runs.append(
            load_run(write_run(tmp_path / f"r{seed}", config, {"loss": b}, first={"loss": a}))
        )
    steps, mean, std = mean_curve(runs, "loss")
    assert steps.tolist() == [0, 10] and mean.tolist() == [2.0, 5.0]
    assert std == pytest.approx([math.sqrt(2), math.sqrt(8)])


def test_the_study_figure_draws_each_metric_against_each_parameter(cli, study):
    fig = study_figure(open_sweep(study))
    by_label = {(ax.get_xlabel(), ax.get_ylabel()): ax for ax in fig.axes}
    lr_rank = by_label[("optimizer.lr", "effective rank")]
    assert lr_rank.get_xscale() == "log"  # 0.001, 0.01, 0.1
    assert by_label[("encoder.out_dim", "effective rank")].get_xscale() == "linear"  # 8, 16
    lines = {c.get_label(): c.lines[0] for c in lr_rank.containers}  # errorbar containers
    assert lines["8"].get_ydata().tolist() == [12.0, 22.0, 32.0]  # one line per width, means
    assert lines["16"].get_ydata().tolist() == [13.0, 23.0, 32.0]
    assert ("optimizer.lr", "variance final / step 0") in by_label
    (vmap,) = [ax for ax in fig.axes if ax.get_title() == "Majority verdict over seeds"]
    texts = {t.get_text() for t in vmap.texts}
    assert "complete\n2/3" in texts and "healthy\n2/3" in texts and "healthy\n3/3" in texts
    result = cli("plot", study)
    assert result.exit_code == 0, result.output
    assert (study / "plots" / "study.png").is_file()


def test_a_grid_is_drawn_on_a_log_axis_when_its_values_are_spaced_evenly_in_log():
    assert is_logarithmic([0.05, 0.1, 0.5]) and is_logarithmic([1e-3, 1e-2])
    assert is_logarithmic([1, 2, 4, 8, 16])
    assert not is_logarithmic([100, 200, 300]) and not is_logarithmic([64, 128])
    assert not is_logarithmic([0, 0.5, 1]) and not is_logarithmic(["adam", "sgd"])
    assert [axis_kind(v) for v in ([1e-4, 1e-3], [0, 0.5, 1], [0, 1, 25], ["adam", "sgd"])] == [
        "log", "linear", "category", "category"
    ]  # fmt: skip
