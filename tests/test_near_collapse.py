"""Starting near collapse (encoder init: near_collapse, eps): the first embeddings, the config
errors, the escape fields of summary.json, and a run that carries them with its forces."""

from __future__ import annotations

import json

import pytest
import torch

from collapse_cli.config import load_config
from collapse_cli.encoders import ENCODERS
from collapse_cli.errors import ConfigError
from collapse_cli.summary import build_summary, escape_step
from collapse_cli.training import run_experiment

from .conftest import CONFIGS


def built(name: str, seed: int = 0, **params):
    torch.manual_seed(seed)
    return ENCODERS.build(name, (8,), **params)


@pytest.mark.parametrize("name,extra", [("linear", {}), ("mlp", {"hidden": [16]})])
def test_eps_zero_maps_every_input_to_one_vector(name, extra):
    enc = built(name, out_dim=6, init="near_collapse", eps=0.0, **extra)
    x = torch.randn(50, 8, generator=torch.Generator().manual_seed(1))
    z = enc(x)
    assert torch.equal(z, z[:1].expand_as(z))  # exactly, not nearly
    assert z[0].abs().max() > 0.1  # a shared vector c, not the trivial 0


@pytest.mark.parametrize("name,extra", [("linear", {}), ("mlp", {"hidden": [16]})])
def test_eps_scales_the_default_layers_spread_around_a_shared_vector(name, extra):
    """z_i = c + ε·δ_i with δ_i the default encoder's output less its last bias: the default
    weights are drawn as in a default run (same seed), only the last layer is changed."""
    default = built(name, out_dim=6, **extra)
    eps = 1e-3
    near = built(name, out_dim=6, init="near_collapse", eps=eps, **extra)
    last = [m for m in default.modules() if isinstance(m, torch.nn.Linear)][-1]
    x = torch.randn(50, 8, generator=torch.Generator().manual_seed(1))
    delta = default(x) - last.bias  # (50, 6) the default layer's own spread
    z = near(x)
    c = z - eps * delta
    torch.testing.assert_close(c, c[:1].expand_as(c), atol=1e-6, rtol=0)
    torch.testing.assert_close(z.var(0), eps**2 * delta.var(0), rtol=1e-3, atol=0)


def test_near_collapse_is_seeded():
    a, b = (built("linear", init="near_collapse", eps=0.1) for _ in range(2))
    c = built("linear", seed=1, init="near_collapse", eps=0.1)
    assert torch.equal(a.bias, b.bias) and not torch.equal(a.bias, c.bias)


BASE = {
    "data": {"name": "gaussian", "n": 32, "dim": 8},
    "encoder": {"name": "linear", "out_dim": 4},
    "loss": {"name": "infonce"},
    "optimizer": {"name": "sgd"},
    "train": {"steps": 3},
}


@pytest.mark.parametrize(
    "overrides,expected",
    [
        (["encoder.init=near_collapse"], "encoder (linear): eps: init: near_collapse needs eps"),
        (["encoder.eps=0.1"], "eps: 0.1 is only used with init: near_collapse"),
        (["encoder.init=near_collapse", "encoder.eps=-1"], "encoder.eps: input should be greater"),
        (["encoder.init=nearly"], "encoder.init: input should be 'default' or 'near_collapse'"),
        (["encoder.init=near_collapse", "encoder.eps=0", "encoder.bias=false"], "needs bias"),
        (["encoder.name=cnn", "encoder.init=near_collapse"],
         "encoder.init: the cnn encoder cannot start near collapse (init: near_collapse is for "
         "linear, mlp)"),
    ],
)  # fmt: skip
def test_bad_near_collapse_keys_are_one_line_errors_naming_them(overrides, expected):
    from collapse_cli.training.build import build

    with pytest.raises(ConfigError) as e:
        build(load_config(BASE, overrides))
    assert expected in str(e.value) and "\n" not in str(e.value)


def test_escape_step_is_the_first_logged_step_past_ten_times_the_start():
    rows = [{"step": s, "variance": v} for s, v in [(0, 1.0), (10, 9.0), (20, 11.0), (30, 50.0)]]
    assert escape_step(rows) == 20
    assert escape_step(rows[:2]) is None  # never past 10 × 1.0
    # From exact collapse the start is the first spread round-off gives: 1e-13 at step 10.
    exact = [
        {"step": s, "variance": v} for s, v in [(0, 0.0), (10, 1e-13), (20, 5e-13), (30, 2e-12)]
    ]
    assert escape_step(exact) == 30
    assert escape_step([{"step": 0, "variance": 0.0}, {"step": 5, "variance": 0.0}]) is None


def test_summary_carries_the_escape_fields_only_for_runs_started_near_collapse():
    rows = [{"step": 0, "variance": 0.5}, {"step": 5, "variance": 6.0}]
    common = dict(run_id="x", name="x", status="completed", loss="infonce", steps=6,
                  steps_done=6, batch_size=8, dim=4)  # fmt: skip
    near = build_summary(rows, **common, eps=0.01)
    assert {k: near[k] for k in ("eps", "variance_start", "variance_final", "escape_step")} == {
        "eps": 0.01, "variance_start": 0.5, "variance_final": 6.0, "escape_step": 5}  # fmt: skip
    assert "escape_step" not in build_summary(rows, **common) and "eps" not in build_summary(
        rows, **common
    )


def test_a_run_started_near_collapse_escapes_and_logs_its_forces(tmp_path):
    """NT-Xent from ε = 1e-3 with Adam: the variance passes 10 × its start within 20 steps;
    summary.json says so, the forces are in every row and get their panel."""
    cfg = {**BASE, "views": {"noise": 0.1}, "optimizer": {"name": "adam", "lr": 0.01},
           "encoder": {"name": "linear", "out_dim": 4, "init": "near_collapse", "eps": 1e-3},
           "train": {"steps": 21}, "log": {"every": 5, "plots": False}}  # fmt: skip
    path, summary = run_experiment(cfg, runs_dir=tmp_path)
    assert summary["eps"] == 1e-3 and summary["escape_step"] is not None
    assert summary["variance_final"] > 10 * summary["variance_start"]
    rows = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]
    assert all(r["force_attraction"] == pytest.approx(1 / 0.5) for r in rows)  # 1/τ, unit vectors
    assert rows[0]["force_ratio"] == pytest.approx(1, abs=1e-3)  # near collapse: they balance
    from matplotlib.figure import Figure

    from collapse_cli.reading.panels import PANELS, drawn
    from collapse_cli.reading.run import load_run

    run = load_run(path)
    assert "forces" in drawn(run)
    fig = Figure()
    PANELS["forces"](fig.add_subplot(), run)
    top, strip = fig.axes
    assert len(top.lines) == 3 and len(strip.lines) == 2  # three norms; the ratio and 1


def test_the_article_configs_build_and_their_sweeps_plan(cli, tmp_path):
    """Every configs/article-*.yaml that the README's table runs is valid: the run configs build,
    the sweep configs plan every point (nothing is run)."""
    from collapse_cli.training.build import check

    files = sorted(CONFIGS.glob("article-*.yaml"))
    assert len(files) >= 5
    for path in files:
        if "sweep:" in path.read_text():
            result = cli("sweep", path, "--dry-run", "--runs-dir", tmp_path)
            assert result.exit_code == 0, result.output
        else:
            check(path)


def test_a_sweep_reads_escape_step_from_runs_started_near_collapse(tmp_path):
    """The study's final metrics carry summary.json's escape_step, and only when it is a step:
    a run that never escaped (null) and a run not started near collapse have none; a run
    without summary.json derives it from its metrics and config."""
    from collapse_cli.reading.run import load_run
    from collapse_cli.reading.sweep import final_metrics

    def folder(name, summary, config):
        path = tmp_path / name
        path.mkdir()
        (path / "meta.json").write_text(json.dumps({"id": name, "status": "completed"}))
        (path / "config.yaml").write_text(json.dumps(config))  # JSON is YAML
        rows = [{"step": 0, "variance": 1.0}, {"step": 5, "variance": 20.0}]
        (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        if summary is not None:
            (path / "summary.json").write_text(json.dumps(summary))
        return load_run(path)

    final = {"variance": 20.0}
    near = {"encoder": {"name": "linear", "init": "near_collapse", "eps": 0.1}}
    assert final_metrics(folder("a", {"final": final, "escape_step": 5}, near))["escape_step"] == 5
    assert "escape_step" not in final_metrics(
        folder("b", {"final": final, "escape_step": None}, near)
    )
    assert "escape_step" not in final_metrics(folder("c", {"final": final}, {}))
    assert final_metrics(folder("d", None, near))["escape_step"] == 5  # still running
