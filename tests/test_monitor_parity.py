"""What `collapse run` has and a user's own loop gets through Monitor too: ``stop_on`` (the
loop learns when to break; the run ends stopped) and ``log(at=...)`` (further places, prefixed).
The expected stop steps come from the verdict's rule applied by hand to the rows of the same
loop run without the rule; the prefixed values from compute_metrics and hand-built matrices."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from collapse_cli import Monitor, load_run
from collapse_cli.config import load_config
from collapse_cli.errors import ConfigError
from collapse_cli.metrics import compute_metrics
from collapse_cli.reading.panels import drawn, measured_at
from collapse_cli.rundir import read_jsonl

from .conftest import CONFIGS
from .test_monitor import rank_script, two_ranks

RULE = {"verdict": "complete collapse", "patience": 1}


@pytest.fixture
def no_figures(monkeypatch):
    """Runs end without drawing their figures (what these tests do not look at)."""
    monkeypatch.setattr("collapse_cli.reading.figures.plot_run", lambda path: [])


def _collapsing(monitor: Monitor, steps: int = 200) -> list[bool]:
    """The README's demo 1 (minimise the variance) with an encoder and a head, logged every
    10 steps with the encoder's output at ``encoder``; breaks when ``should_stop``. Returns
    ``should_stop`` after each logged step."""
    torch.manual_seed(0)
    encoder, head = nn.Sequential(nn.Linear(8, 16), nn.ReLU()), nn.Linear(16, 4)
    optimizer = torch.optim.Adam([*encoder.parameters(), *head.parameters()], lr=1e-2)
    x = torch.randn(64, 8)
    said = []
    for step in range(steps):
        h = encoder(x)  # (64, 16)
        z = head(h)  # (64, 4): what the loss is computed on
        loss = z.var(0).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if monitor.log(step, z, loss=loss, at={"encoder": h}) is not None:
            said.append(monitor.should_stop)
        if monitor.should_stop:
            break
    return said


def _collapsed(row: dict, first: dict, dim: int) -> bool:
    """Complete collapse by hand (the README's verdict): the variance at most 1e-3 of step 0's,
    or std_l2·√d below 0.05."""
    return row["variance"] <= 1e-3 * first["variance"] or row["std_l2"] * math.sqrt(dim) < 0.05


def _without_time(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "time"} for r in rows]


# --------------------------------------------------------------------------- stop_on
def test_a_collapsing_loop_is_told_to_stop_one_log_step_after_its_verdict_holds(tmp_path):
    with Monitor(tmp_path / "plain", name="plain", every=10, place="projector") as plain:
        assert not any(_collapsing(plain))
    rows = read_jsonl(plain.path / "metrics.jsonl")
    held = [_collapsed(r, rows[0], 4) for r in rows]
    # patience 1: the first logged step at which it holds for the second time in a row
    at = next(i for i in range(1, len(held)) if held[i - 1] and held[i])
    first, expected = rows[at - 1]["step"], rows[at]["step"]
    assert 0 < first < expected < 190  # room to stop before the loop ends
    assert plain.summary["status"] == "completed" and "stop_reason" not in plain.summary

    with Monitor(tmp_path / "ruled", name="ruled", every=10, place="projector",
                 stop_on=RULE) as monitor:  # fmt: skip
        said = _collapsing(monitor)
    assert said == [False] * at + [True]  # True first after the logged step `expected`
    assert monitor.stop_reason.startswith("complete collapse: variance fell to ")
    assert f"held from step {first} and 1 log step after; stopped at step {expected}" in (
        monitor.stop_reason
    )
    summary = json.loads((monitor.path / "summary.json").read_text())
    assert summary == monitor.summary
    assert summary["status"] == "stopped" and summary["verdict"] == "complete collapse"
    assert summary["stopped_at"] == expected and summary["steps_done"] == expected + 1
    assert summary["stop_reason"] == monitor.stop_reason
    assert json.loads((monitor.path / "meta.json").read_text())["status"] == "stopped"
    kept = read_jsonl(monitor.path / "metrics.jsonl")
    assert _without_time(kept) == _without_time(rows[: at + 1])  # the same loop, cut short
    run = load_run(monitor.path)  # the readers: a stopped run with two places
    assert run.status == "stopped"
    assert measured_at(run) == [("projector", "effective_rank"),
                                ("encoder", "encoder/effective_rank")]  # fmt: skip
    assert "rank_at" in drawn(run) and (monitor.path / "plots" / "rank_at.png").is_file()


def _cloud(scale: float) -> torch.Tensor:
    return scale * torch.randn(32, 4, generator=torch.Generator().manual_seed(3))


HEALTHY, DEAD = _cloud(1.0), _cloud(1e-3)  # variance ratio 1e-6: complete collapse


@pytest.mark.parametrize(
    ("sequence", "patience", "said", "status"),
    [
        # a recovery starts the count again; two dead rows in a row stop it
        ([HEALTHY, DEAD, HEALTHY, DEAD, DEAD], 1, [False] * 4 + [True], "stopped"),
        # patience 0: the first dead row
        ([HEALTHY, HEALTHY, DEAD], 0, [False, False, True], "stopped"),
        # a loop that logs on past should_stop is judged on: recovered, it completes
        ([HEALTHY, DEAD, DEAD, HEALTHY], 1, [False, False, True, False], "completed"),
    ],
)
def test_should_stop_follows_the_rule_on_embeddings_of_known_verdicts(
    tmp_path, no_figures, sequence, patience, said, status
):
    rule = {"verdict": "complete collapse", "patience": patience}
    with Monitor(tmp_path, stop_on=rule) as monitor:
        answers = []
        for step, z in enumerate(sequence):
            monitor.log(step, z)
            answers.append(monitor.should_stop)
    assert answers == said
    assert monitor.summary["status"] == status
    last = len(sequence) - 1
    if status == "stopped":
        assert monitor.summary["stopped_at"] == last
        assert monitor.summary["stop_reason"].endswith(f"stopped at step {last})")
    else:
        assert "stopped_at" not in monitor.summary and "stop_reason" not in monitor.summary


def test_without_stop_on_a_dead_run_is_never_told_to_stop(tmp_path, no_figures):
    with Monitor(tmp_path) as monitor:
        for step, z in enumerate([HEALTHY, DEAD, DEAD, DEAD]):
            monitor.log(step, z)
            assert monitor.should_stop is False and monitor.stop_reason is None
    assert monitor.summary["status"] == "completed"
    assert monitor.summary["verdict"] == "complete collapse"


def test_a_run_that_diverges_after_the_rule_fired_ends_diverged(tmp_path, no_figures):
    with Monitor(tmp_path, stop_on={"verdict": "complete collapse"}) as monitor:
        monitor.log(0, HEALTHY)
        monitor.log(1, DEAD)
        assert monitor.should_stop
        monitor.log(2, torch.full((32, 4), float("nan")))
    assert monitor.summary["status"] == "diverged" and "stop_reason" not in monitor.summary


# --------------------------------------------------------------------------- at=
def test_at_measures_each_place_like_z_under_its_prefix(tmp_path, no_figures):
    g = torch.Generator().manual_seed(5)
    z = torch.randn(40, 4, generator=g)
    a, b = (torch.randn(shape, generator=g, dtype=torch.float64) for shape in ((40, 3), (3, 12)))
    h = a @ b  # (40, 12) of rank 3
    p = torch.randn(40, 6, generator=g)
    with Monitor(tmp_path, place="projector") as monitor:
        row = monitor.log(0, z, at={"encoder": h})
        monitor.log(1, z, at={"encoder": 2 * h, "predictor": p})
    direct, _ = compute_metrics(z)
    assert {k: row[k] for k in direct} == direct  # the unprefixed metrics stay z's
    at_encoder, _ = compute_metrics(h)
    assert {k.removeprefix("encoder/"): v for k, v in row.items() if "/" in k} == at_encoder
    # and by a second formula: h's variance and its rank of 3
    assert row["encoder/variance"] == pytest.approx(float(h.double().var(0).mean()), rel=1e-9)
    assert row["encoder/rank"] == 3 == np.linalg.matrix_rank(h.numpy())
    second = read_jsonl(monitor.path / "metrics.jsonl")[1]
    assert second["encoder/variance"] == pytest.approx(4 * row["encoder/variance"], rel=1e-9)
    assert second["predictor/rank"] == 6
    assert monitor.summary["measured_at"] == ["projector", "encoder", "predictor"]
    run = load_run(monitor.path)
    assert [label for label, _ in measured_at(run)] == ["projector", "encoder", "predictor"]
    assert "rank_at" in drawn(run) and run.loss_parts == []


def test_one_place_is_z_alone_and_draws_no_rank_at(tmp_path, no_figures):
    with Monitor(tmp_path) as monitor:
        row = monitor.log(0, HEALTHY)
    assert not any("/" in k for k in row)
    assert monitor.summary["measured_at"] == ["encoder"]  # what a run without a projector says
    assert "rank_at" not in drawn(load_run(monitor.path))


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("stop_on", "override"),
    [
        ({"verdict": "dead"}, "{verdict: dead}"),
        ({"verdict": "healthy"}, "{verdict: healthy}"),
        (
            {"verdict": "complete collapse", "patience": -1},
            "{verdict: complete collapse, patience: -1}",
        ),
        ({"patience": 2}, "{patience: 2}"),
        ({"verdict": "complete collapse", "after": 2}, "{verdict: complete collapse, after: 2}"),
        ("complete collapse", "complete collapse"),
    ],
)
def test_a_bad_stop_on_is_the_config_error_of_train_stop_on(tmp_path, stop_on, override):
    with pytest.raises(ConfigError) as caught:
        Monitor(tmp_path, stop_on=stop_on)
    message = str(caught.value)
    assert message.startswith("Monitor: stop_on") and "\n" not in message
    with pytest.raises(ConfigError) as config:
        load_config(CONFIGS / "collapse.yaml", [f"train.stop_on={override}"])
    # the config's words for train.stop_on (where it lists the allowed keys, Monitor does too)
    assert message.removeprefix("Monitor: ").startswith(str(config.value).split(": train.")[1])


@pytest.mark.parametrize(
    ("at", "place", "words"),
    [
        ([HEALTHY], "encoder", "at must be a dict {place: (N, d) tensor}, got list"),
        ({"": HEALTHY}, "encoder", "at: a place's name must be a non-empty string, got ''"),
        ({3: HEALTHY}, "encoder", "at: a place's name must be a non-empty string, got 3"),
        ({"enc/oder": HEALTHY}, "encoder", "'enc/oder': a place's name may not contain '/'"),
        ({"encoder": HEALTHY}, "encoder", "at: encoder is z's own place (Monitor(place="),
        ({"head": HEALTHY}, "head", "at: head is z's own place"),
        ({"encoder": "h"}, "projector", "at: encoder must be a tensor, got str"),
        ({"encoder": torch.randn(32)}, "projector", "of z's N = 32 rows, got shape (32,)"),
        ({"encoder": torch.randn(31, 4)}, "projector", "got shape (31, 4) at step 0"),
    ],
)
def test_a_bad_place_is_a_one_line_error_and_nothing_is_written(tmp_path, at, place, words):
    with pytest.raises(ConfigError) as caught, Monitor(tmp_path / "runs", place=place) as m:
        m.log(0, HEALTHY, at=at)
    assert words in str(caught.value) and str(caught.value).startswith("Monitor.log: ")
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("place", ["", "a/b", 3])
def test_a_bad_name_for_z_s_place_is_refused_at_once(tmp_path, place):
    with pytest.raises(ConfigError, match=r"^Monitor: place: ") as caught:
        Monitor(tmp_path, place=place)
    assert "\n" not in str(caught.value)


def test_a_place_whose_dimension_changes_is_refused(tmp_path, no_figures):
    with Monitor(tmp_path, place="projector") as monitor:
        monitor.log(0, HEALTHY, at={"encoder": torch.randn(32, 8)})
        with pytest.raises(ConfigError, match="at: encoder has d = 9 at step 1, but d = 8"):
            monitor.log(1, HEALTHY, at={"encoder": torch.randn(32, 9)})
    assert len(read_jsonl(monitor.path / "metrics.jsonl")) == 1


# --------------------------------------------------------------------------- ranks
WORKER = rank_script(
    """
    g = torch.Generator().manual_seed(0)
    z, h = torch.randn(16, 4, generator=g), torch.randn(16, 6, generator=g)
    mine = slice(8 * rank, 8 * (rank + 1))
    said = []
    rule = {"verdict": "complete collapse", "patience": 1}
    with Monitor(runs, name="ddp", place="projector", stop_on=rule) as monitor:
        for step, scale in enumerate([1.0, 1e-3, 1.0, 1e-3, 1e-3]):
            monitor.log(step, scale * z[mine], at={"encoder": h[mine]})
            said.append(monitor.should_stop)
    return said, monitor.stop_reason
    """,
    """
    said, reason = work(1, int(sys.argv[1]), sys.argv[2])
    print(f"{said} {reason is None}")
    """,
)


def test_under_torch_distributed_every_rank_is_told_to_stop_at_the_same_step(tmp_path):
    """Two ranks: rank 1 in a child process, rank 0 here; rank 0 alone judges and writes."""
    runs = tmp_path / "runs"
    (said, reason), out = two_ranks(WORKER, runs)
    expected = [False, False, False, False, True]  # dead at steps 1, 3 and 4: two in a row at 4
    assert said == expected and out.strip() == f"{expected} True"  # rank 1: the same, no reason
    assert "stopped at step 4" in reason  # rank 0's; rank 1 has none
    (path,) = runs.iterdir()
    summary = json.loads((path / "summary.json").read_text())
    assert summary["status"] == "stopped" and summary["measured_at"] == ["projector", "encoder"]
    g = torch.Generator().manual_seed(0)
    _, h = torch.randn(16, 4, generator=g), torch.randn(16, 6, generator=g)
    at_encoder, _ = compute_metrics(h)  # both ranks' rows, in rank order
    row = read_jsonl(path / "metrics.jsonl")[0]
    assert {k.removeprefix("encoder/"): v for k, v in row.items() if "/" in k} == at_encoder
