"""log.at: the metrics measured at the encoder, the projector or the predictor. The values are
checked against the same metrics computed directly on the sub-network's output (built again
from the run's seed), not against the taps' own output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from collapse_cli import run_experiment
from collapse_cli.config import load_config
from collapse_cli.errors import ConfigError
from collapse_cli.metrics import compute_metrics
from collapse_cli.reading.panels import drawn, measured_at
from collapse_cli.reading.run import load_run
from collapse_cli.training.build import build
from collapse_cli.training.taps import Taps, measured

from .conftest import CONFIGS

FAST = ["log.figures=none", "log.embeddings=0", "train.steps=1", "log.spectrum=false"]
PROJECTOR = "encoder.projector=[24, 16]"  # Linear(32, 128) then 128 → 24 → 16


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]


def test_the_default_measures_the_projector_and_the_encoder_before_it(tmp_path):
    """Demo 1 (one view, the unaugmented batch) with a projector: step 0's unprefixed metrics
    are those of the projector's output, encoder/ those of Linear(32, 128)'s output."""
    path, summary = run_experiment(CONFIGS / "collapse.yaml", [PROJECTOR, *FAST],
                                   runs_dir=tmp_path)  # fmt: skip
    row = _rows(path)[0]
    assert summary["measured_at"] == ["projector", "encoder"]
    parts = build(load_config(CONFIGS / "collapse.yaml", [PROJECTOR]))  # the same seeded init
    x = parts.data.x
    with torch.no_grad():
        backbone = parts.encoder[0](x)  # (512, 128)
        head = parts.encoder(x)  # (512, 16)
    assert row["variance"] == pytest.approx(float(head.double().var(0).mean()), rel=1e-6)
    assert row["encoder/variance"] == pytest.approx(float(backbone.double().var(0).mean()), 1e-6)
    assert row["encoder/rank"] == 32 and row["rank"] == 16  # rank of 32 inputs; 16 outputs
    direct, _ = compute_metrics(backbone)
    assert row["encoder/effective_rank"] == pytest.approx(direct["effective_rank"], rel=1e-9)


def test_the_first_place_of_log_at_is_the_unprefixed_one(tmp_path):
    path, summary = run_experiment(CONFIGS / "collapse.yaml", [PROJECTOR, "log.at=encoder",
                                   *FAST], runs_dir=tmp_path)  # fmt: skip
    row = _rows(path)[0]
    assert summary["measured_at"] == ["encoder"] and row["rank"] == 32
    assert not any("/" in k for k in row)  # nothing else measured


def test_without_a_projector_nothing_changes(tmp_path):
    path, summary = run_experiment(CONFIGS / "collapse.yaml", FAST, runs_dir=tmp_path)
    assert summary["measured_at"] == ["encoder"]
    assert not any("/" in k for k in _rows(path)[0])


def test_the_predictor_tap_holds_the_predictor_of_each_view():
    """byol's predictor on the two views, recorded by the taps, against predictor(encoder(v))."""
    cfg = load_config(CONFIGS / "collapse.yaml", ["loss.name=byol", "loss.predictor_hidden=8",
                      "log.at=[encoder, predictor]"])  # fmt: skip
    parts = build(cfg)
    taps = Taps(cfg, parts.encoder, parts.objective)
    g = torch.Generator().manual_seed(1)
    v1, v2 = (torch.randn(16, 32, generator=g) for _ in range(2))
    taps.armed = True
    out = parts.objective(parts.encoder, [v1, v2])
    taps.armed = False
    z, z_pos = taps.pair("predictor", out)
    with torch.no_grad():
        p = [parts.objective.predictor(parts.encoder(v)) for v in (v1, v2)]
    assert torch.allclose(z, p[0], atol=1e-6) and torch.allclose(z_pos, p[1], atol=1e-6)
    assert measured(cfg, parts.encoder, parts.objective) == ["encoder", "predictor"]
    parts.objective(parts.encoder, [v1, v2])  # not armed: nothing more kept
    assert len(taps.seen["predictor"]) == 2
    taps.remove()


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        (
            ["loss.name=infonce", "log.at=predictor"],
            ["log.at: predictor", "loss infonce", "it can measure encoder"],
        ),
        (["log.at=projector"], ["log.at: projector", "loss variance", "encoder.projector"]),
        (["log.at=[encoder, encoder]"], ["log.at", "named twice"]),
        (["log.at=head"], ["log.at", "'head'", "encoder, projector, predictor"]),
    ],
)
def test_a_place_the_run_does_not_have_is_a_one_line_config_error(overrides, words):
    with pytest.raises(ConfigError) as e:
        build(load_config(CONFIGS / "collapse.yaml", overrides))
    assert all(w in str(e.value) for w in words), str(e.value)
    assert "\n" not in str(e.value)


def test_the_rank_at_figure_reads_every_place(tmp_path):
    path, _ = run_experiment(CONFIGS / "collapse.yaml", [PROJECTOR, *FAST], runs_dir=tmp_path)
    run = load_run(path)
    assert measured_at(run) == [("projector", "effective_rank"),
                                ("encoder", "encoder/effective_rank")]  # fmt: skip
    assert "rank_at" in drawn(run)
    assert run.loss_parts == [] and "loss_parts" not in drawn(run)  # encoder/... is no loss part


def test_the_live_lines_show_the_effective_rank_of_each_further_place_only():
    from collapse_cli.display.live import live_keys

    row = {"step": 0, "time": 0.1, "loss": 1.0, "effective_rank": 9.0, "kl": 0.5,
           "encoder/effective_rank": 20.0, "encoder/variance": 0.1, "encoder/rank": 32}  # fmt: skip
    assert live_keys(row) == ["loss", "effective_rank", "kl", "encoder/effective_rank"]
