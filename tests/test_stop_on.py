"""train.stop_on: a run ends a number of log steps after its verdict first holds, with status
stopped and its reason; off by default; validated; resumes refused; sweeps leave stopped runs
alone on --resume. The expected stop steps are worked out from the rules of the verdict applied
by hand to the rows of a run without the rule."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from collapse_cli import run_experiment
from collapse_cli.config import load_config
from collapse_cli.errors import ConfigError
from collapse_cli.reading.listing import run_table
from collapse_cli.reading.sweep import open_sweep, sweep_groups
from collapse_cli.training import resume_run
from collapse_cli.training.stopping import StopOn
from collapse_cli.training.sweep import resume_sweep
from collapse_cli.verdict import COMPLETE, DEFAULT_THRESHOLDS, DIMENSIONAL

from .conftest import CONFIGS, InterruptAt

FAST = ["log.figures=none", "log.embeddings=0", "log.spectrum=false"]
RULE = "train.stop_on={verdict: complete collapse, patience: 2}"


def _row(step: int, variance: float, std_l2: float = 0.2, er: float = 10.0) -> dict:
    return {"step": step, "variance": variance, "std_l2": std_l2, "effective_rank": er, "rank": 16}


def _feed(rule: StopOn, rows: list[dict], dim: int = 16) -> list[str | None]:
    return [rule.see(r, dim) for r in rows]


# --------------------------------------------------------------------------- the rule
def test_the_rule_stops_after_patience_more_log_steps_and_a_recovery_starts_again():
    # variance ratios 1, 0.5, 1e-4 (collapsed), 1 (recovered), then collapsed from step 40 on:
    # with patience 1 it needs two collapsed rows in a row, the first pair being 40 and 50.
    rows = [_row(0, 1.0), _row(10, 0.5), _row(20, 1e-4), _row(30, 1.0)]
    rows += [_row(40, 1e-4), _row(50, 1e-4), _row(60, 1e-4)]
    said = _feed(StopOn(COMPLETE, 1, DEFAULT_THRESHOLDS), rows)
    assert [s is not None for s in said] == [False] * 5 + [True, True]
    assert "held from step 40" in said[5] and "stopped at step 50" in said[5]
    # patience 0 stops at the first row where it holds
    said = _feed(StopOn(COMPLETE, 0, DEFAULT_THRESHOLDS), rows)
    assert [s is not None for s in said].index(True) == 2


def test_stopping_on_dimensional_collapse_stops_on_complete_collapse_too():
    # std_l2·√16 = 0.04 < 0.05: complete collapse by the std rule; the effective rank (10 of
    # 16) is above a quarter of the step-0 rank, so it is not dimensional collapse.
    rows = [_row(0, 1.0), _row(10, 0.9, std_l2=0.01)]
    assert _feed(StopOn(DIMENSIONAL, 0, DEFAULT_THRESHOLDS), rows)[1] is not None
    # and the other way round: dimensional collapse (rank 3 < 16/4) does not stop a rule on
    # complete collapse
    rows = [_row(0, 1.0), _row(10, 0.9, er=3.0)]
    assert _feed(StopOn(COMPLETE, 0, DEFAULT_THRESHOLDS), rows)[1] is None
    assert _feed(StopOn(DIMENSIONAL, 0, DEFAULT_THRESHOLDS), rows)[1] is not None


def test_a_resumed_rule_counts_on_from_the_rows_kept():
    rows = [_row(0, 1.0), _row(10, 1e-4), _row(20, 1e-4), _row(30, 1e-4)]
    fresh = _feed(StopOn(COMPLETE, 2, DEFAULT_THRESHOLDS), rows)
    resumed = StopOn(COMPLETE, 2, DEFAULT_THRESHOLDS, prior=rows[:2])
    assert _feed(resumed, rows[2:]) == fresh[2:] and fresh[3] is not None


@pytest.mark.parametrize(
    ("override", "words"),
    [
        ("train.stop_on={verdict: dead}", ["train.stop_on.verdict", "complete collapse or"]),
        ("train.stop_on={verdict: healthy}", ["train.stop_on.verdict", "dimensional collapse"]),
        ("train.stop_on={verdict: complete collapse, patience: -1}", ["train.stop_on.patience"]),
        ("train.stop_on={patience: 2}", ["train.stop_on.verdict", "missing"]),
    ],
)
def test_a_bad_rule_is_a_one_line_config_error(override, words):
    with pytest.raises(ConfigError) as e:
        load_config(CONFIGS / "collapse.yaml", [override])
    assert all(w in str(e.value) for w in words) and "\n" not in str(e.value)


def test_off_by_default():
    assert load_config(CONFIGS / "collapse.yaml").train.stop_on is None


# --------------------------------------------------------------------------- a run
def _first_collapsed(rows: list[dict], dim: int) -> int:
    """The first logged step at which the verdict's complete-collapse rules hold, by hand."""
    v0 = rows[0]["variance"]
    for r in rows:
        if r["variance"] <= 1e-3 * v0 or r["std_l2"] * math.sqrt(dim) < 0.05:
            return r["step"]
    raise AssertionError("never collapsed")


@pytest.fixture(scope="module")
def plain_rows(tmp_path_factory):
    """Demo 1 for 600 steps without the rule: where it collapses."""
    runs = tmp_path_factory.mktemp("plain")
    path, summary = run_experiment(CONFIGS / "collapse.yaml", ["train.steps=600", *FAST],
                                   runs_dir=runs)  # fmt: skip
    rows = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]
    return rows, summary["dim"]


def test_a_run_stops_patience_log_steps_after_collapse(tmp_path: Path, plain_rows):
    rows, dim = plain_rows
    first = _first_collapsed(rows, dim)
    assert first < 450  # the rule has room to act before the end
    path, summary = run_experiment(
        CONFIGS / "collapse.yaml", ["train.steps=600", *FAST, RULE], runs_dir=tmp_path
    )
    assert summary["status"] == "stopped" == json.loads((path / "meta.json").read_text())["status"]
    assert summary["stopped_at"] == first + 2 * 50  # two more log steps of 50
    assert summary["steps_done"] == summary["stopped_at"] + 1
    assert summary["verdict"] == COMPLETE and f"from step {first}" in summary["stop_reason"]
    kept = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]
    assert kept == [r | {"time": k["time"]} for r, k in zip(rows, kept, strict=False)]
    (listed,) = run_table(tmp_path)
    assert (listed["status"], listed["verdict"]) == ("stopped", COMPLETE)
    assert listed["steps_done"] == summary["steps_done"]
    # over: --resume refuses, and says how to train it on regardless
    with pytest.raises(ConfigError, match=r"train\.stop_on=null"):
        resume_run(path)


def test_an_interrupted_run_resumed_stops_where_an_uninterrupted_one_does(tmp_path, plain_rows):
    rows, dim = plain_rows
    first = _first_collapsed(rows, dim)
    args = ["train.steps=600", *FAST, RULE, "train.checkpoint_every=10"]
    path, summary = run_experiment(CONFIGS / "collapse.yaml", args, runs_dir=tmp_path,
                                   reporter=InterruptAt(first + 10))  # fmt: skip
    assert summary["status"] == "interrupted"
    _, summary = resume_run(path)
    assert summary["status"] == "stopped" and summary["stopped_at"] == first + 100


# --------------------------------------------------------------------------- a sweep
class _InProcess:
    """An executor that runs each task in this process, one after another: the sweep's logic
    without spawning a worker that imports torch again (the pool itself has its own tests)."""

    slots = 1

    def __init__(self, *args, **kwargs) -> None:
        self.outcomes: dict[int, dict] = {}

    def describe(self) -> dict:
        return {"name": "pool", "workers": 1, "threads": 1}

    def submit(self, tasks):
        from collapse_cli.training.executors import run_task

        for t in tasks:
            self.outcomes[t.index] = run_task(t)
        return [t.index for t in tasks]

    def wait(self, handles, timeout):
        return [(h, self.outcomes[h]) for h in list(handles)]

    def interrupt(self, handles, times) -> None: ...
    def close(self) -> None: ...


def test_a_sweep_stops_dead_runs_and_resume_leaves_them_alone(cli, tmp_path: Path, monkeypatch):
    monkeypatch.setattr("collapse_cli.training.sweep.make_executor", _InProcess)
    runs = tmp_path / "runs"
    result = cli("sweep", CONFIGS / "collapse.yaml", "train.steps=600", *FAST, RULE,
                 "--grid", "optimizer.lr=0.001,0.0001", "--workers", "1", "--threads", "1",
                 "--runs-dir", runs)  # fmt: skip
    assert result.exit_code == 0, result.output
    (sweep,) = runs.glob("sweep-*")
    index = json.loads((sweep / "sweep.json").read_text())
    # lr 1e-3 collapses within 600 steps, lr 1e-4 ten times slower does not
    assert [e["status"] for e in index["runs"]] == ["stopped", "completed"]
    assert index["runs"][0]["verdict"] == COMPLETE and "train.stop_on" in index["runs"][0]["reason"]
    assert "1 completed, 1 stopped" in result.output
    again = resume_sweep(sweep)
    assert again.started == 0
    # the stopped run's last metrics count in its point's means, its verdict in the majority
    stopped, _ = sweep_groups(open_sweep(sweep))
    assert len(stopped.used) == 1 and stopped.majority() == (COMPLETE, 1)
