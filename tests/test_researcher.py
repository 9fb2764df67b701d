"""What a researcher meets: results that were wrong, outputs for a paper, and the frictions a
new user hits first."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from collapse_cli import run_experiment
from collapse_cli.rundir import read_jsonl
from collapse_cli.training import resume_run

from .conftest import CONFIGS, ROOT, InterruptAt, write

TINY = ["train.steps=20", "log.every=10"]


def _collapse(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "collapse_cli", *map(str, args)],
        capture_output=True, text=True, cwd=ROOT, env=env, check=False,
    )  # fmt: skip


# --------------------------------------------------------------------------- wrong results
def test_a_run_without_spectra_gets_every_other_figure_and_readers_never_crash(cli, runs_dir):
    path, _ = run_experiment(CONFIGS / "collapse.yaml", [*TINY, "log.spectrum=false"],
                             runs_dir=runs_dir)  # fmt: skip
    names = {p.stem for p in (path / "plots").iterdir()}
    assert names == {"loss", "variance", "min_eig", "rank", "std_l2", "overview"}
    assert "plots_error" not in json.loads((path / "meta.json").read_text())
    other, _ = run_experiment(CONFIGS / "collapse.yaml", TINY, runs_dir=runs_dir)
    assert cli("plot", path).exit_code == 0
    done = cli("compare", path, other, "--runs-dir", runs_dir)
    assert done.exit_code == 0, done.output


def test_a_diverged_run_gets_no_verdict_and_says_why(cli, runs_dir):
    args = [*TINY, "optimizer.name=sgd", "optimizer.lr=1000"]
    result = cli("run", CONFIGS / "collapse.yaml", *args, "--runs-dir", runs_dir)
    assert result.exit_code == 3
    summary = json.loads(next(runs_dir.glob("*/summary.json")).read_text())
    assert summary["status"] == "diverged" and summary["verdict"] is None
    assert summary["verdict_reason"].startswith("the run diverged at step")
    assert "healthy" not in result.output and "not judged" in result.output
    listed = cli("list", "--runs-dir", runs_dir, "--json")
    assert json.loads(listed.stdout)[0]["verdict"] == "not judged"


def test_an_interrupted_run_is_not_judged_and_resumes_without_checkpoint_every(runs_dir):
    overrides = ["train.steps=40", "log.every=10"]  # no train.checkpoint_every
    whole, _ = run_experiment(CONFIGS / "collapse.yaml", overrides, runs_dir=runs_dir / "a")
    cut, summary = run_experiment(
        CONFIGS / "collapse.yaml", overrides, runs_dir=runs_dir / "b", reporter=InterruptAt(23)
    )
    assert summary["status"] == "interrupted" and summary["verdict"] is None
    assert "resume it to judge it" in summary["verdict_reason"]
    assert (cut / "checkpoint.pt").is_file()  # saved at the interrupt itself
    _, resumed = resume_run(cut, runs_dir=runs_dir / "b")
    assert resumed["status"] == "completed" and resumed["verdict"] is not None

    def numbers(p):
        rows = read_jsonl(p / "metrics.jsonl")
        return [{k: v for k, v in r.items() if k != "time"} for r in rows]

    assert numbers(cut) == numbers(whole)


def test_knn_at_step_0_describes_the_initial_encoder_whatever_the_learning_rate(tmp_path):
    from collapse_cli.config import load_config
    from collapse_cli.encoders import embed
    from collapse_cli.metrics import knn_accuracy
    from collapse_cli.training.build import build

    base = ["data.name=clusters", "data.n=400", "train.steps=3", "log.every=1",
            "encoder.name=mlp", "encoder.hidden=[16]", "encoder.out_dim=8"]  # fmt: skip
    first = []
    for lr in (1e-4, 1.0):
        _, summary = run_experiment(CONFIGS / "nt-xent.yaml", [*base, f"optimizer.lr={lr}"],
                                    runs_dir=tmp_path)  # fmt: skip
        first.append(read_jsonl(Path(tmp_path / summary["id"]) / "metrics.jsonl")[0]["knn_acc"])
    # The same number from the encoder as built, before any optimizer step:
    parts = build(load_config(CONFIGS / "nt-xent.yaml", base))
    data = parts.data
    expected = knn_accuracy(embed(parts.encoder, data.x), data.labels,
                            embed(parts.encoder, data.x_test), data.labels_test)  # fmt: skip
    assert first == [expected, expected]


def test_user_text_in_errors_is_never_read_as_markup(tmp_path):
    bad = write(tmp_path / "[red]x.yaml", "data: {name: gaussian}\n")
    done = _collapse("run", bad, "--runs-dir", tmp_path / "runs")
    assert done.returncode == 2 and "[red]x.yaml" in done.stderr
    from rich.console import Console

    from collapse_cli.display.text import print_error

    console = Console(record=True, width=200)
    print_error(console, "data: digits needs scikit-learn: pip install 'collapse-cli[digits]'")
    assert "pip install 'collapse-cli[digits]'" in console.export_text()


def test_run_folder_files_follow_the_umask(tmp_path):
    previous = os.umask(0o022)
    try:
        path, _ = run_experiment(CONFIGS / "collapse.yaml", TINY, runs_dir=tmp_path)
        z = tmp_path / "z.npy"
        np.save(z, np.random.default_rng(0).normal(size=(50, 4)))
        from collapse_cli.inspection import inspect_file

        inspect_file(z, out=tmp_path / "insp")
    finally:
        os.umask(previous)
    for f in [path / n for n in ("config.yaml", "meta.json", "summary.json", "metrics.jsonl")]:
        assert stat.S_IMODE(f.stat().st_mode) == 0o644, f.name
    assert stat.S_IMODE((tmp_path / "insp" / "inspect.json").stat().st_mode) == 0o644


def test_each_run_saves_its_final_embeddings_for_inspect(cli, tmp_path):
    path, summary = run_experiment(CONFIGS / "nt-xent.yaml",
                                   ["train.steps=2", "log.every=1", "log.embeddings=50"],
                                   runs_dir=tmp_path)  # fmt: skip
    z, y = np.load(path / "embeddings.npy"), np.load(path / "embedding_labels.npy")
    assert z.shape == (50, 32) and y.shape == (50,) and z.dtype == np.float32
    assert summary["embeddings"] == {
        "file": "embeddings.npy",
        "split": "held-out",
        "labels": "embedding_labels.npy",
        "rows": 50,
        "dim": 32,
    }
    done = cli("inspect", path / "embeddings.npy", "--labels", path / "embedding_labels.npy")
    assert done.exit_code == 0 and "knn_acc" in done.output


# --------------------------------------------------------------------------- outputs
def test_compare_exports_markdown_latex_and_csv_tables(cli, runs_dir):
    a, _ = run_experiment(CONFIGS / "collapse.yaml", TINY, runs_dir=runs_dir)
    b, _ = run_experiment(CONFIGS / "collapse.yaml", [*TINY, "optimizer.lr=0.01"],
                          runs_dir=runs_dir)  # fmt: skip
    md = cli("compare", a, b, "--table", "markdown").stdout.splitlines()
    assert md[0].startswith("| run | status | verdict | loss (step 0) | loss (final) |")
    assert md[1].startswith("| --- |") and md[2].startswith("| lr: 0.001 |")
    tex = cli("compare", a, b, "--table", "latex").stdout
    assert tex.startswith("\\begin{tabular}") and "lr: 0.01 & completed" in tex
    rows = cli("compare", a, b, "--table", "csv").stdout.splitlines()
    import csv

    table = list(csv.reader(rows))
    assert len(table) == 3 and table[0][:3] == ["run", "status", "verdict"]
    final = table[0].index("variance (final)")
    assert float(table[1][final]) == pytest.approx(
        json.loads((a / "summary.json").read_text())["final"]["variance"], rel=1e-3
    )
    bad = cli("compare", a, b, "--table", "xlsx")
    assert bad.exit_code == 2 and "markdown, latex, csv" in bad.output


def test_metrics_csv_and_tensorboard_on_request(tmp_path):
    path, _ = run_experiment(CONFIGS / "collapse.yaml",
                             [*TINY, "log.csv=true", "log.tensorboard=true"],
                             runs_dir=tmp_path)  # fmt: skip
    import csv

    rows = list(csv.DictReader((path / "metrics.csv").open()))
    jsonl = read_jsonl(path / "metrics.jsonl")
    assert [int(r["step"]) for r in rows] == [r["step"] for r in jsonl]
    assert float(rows[-1]["variance"]) == jsonl[-1]["variance"]
    events = list((path / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1 and events[0].stat().st_size > 0


def test_plot_and_compare_take_dpi_labels_and_formats(cli, runs_dir):
    a, _ = run_experiment(CONFIGS / "collapse.yaml", TINY, runs_dir=runs_dir)
    b, _ = run_experiment(CONFIGS / "collapse.yaml", [*TINY, "optimizer.lr=0.01"],
                          runs_dir=runs_dir)  # fmt: skip
    done = cli("plot", a, "--dpi", "50", "--out", runs_dir / "small")
    from PIL import Image

    with Image.open(runs_dir / "small" / "loss.png") as im:
        assert im.size == (320, 200)  # 6.4 × 4 in at 50 dpi
    assert done.exit_code == 0
    done = cli("compare", a, b, "--label", f"{a}=baseline", "--format", "pdf",
               "--out", runs_dir / "cmp")  # fmt: skip
    assert done.exit_code == 0, done.output
    assert (runs_dir / "cmp" / "overview.pdf").read_bytes().startswith(b"%PDF")
    assert "baseline" in done.output and "lr: 0.01" in done.output
    plot_cmp = cli("plot", runs_dir / "cmp")
    assert plot_cmp.exit_code == 2 and "comparison folder" in plot_cmp.output


# --------------------------------------------------------------------------- frictions
def test_validate_writes_yaml_to_stdout_and_its_message_to_stderr(tmp_path):
    done = _collapse("validate", CONFIGS / "collapse.yaml", "train.steps=7")
    assert done.returncode == 0 and "is a valid config" in done.stderr
    assert yaml.safe_load(done.stdout)["train"]["steps"] == 7
    (tmp_path / "r.yaml").write_text(done.stdout)
    assert _collapse("validate", tmp_path / "r.yaml").returncode == 0


def test_did_you_mean_ignores_case(cli, runs_dir):
    done = cli("run", CONFIGS / "collapse.yaml", "loss.name=InfoNCE", "--runs-dir", runs_dir)
    assert done.exit_code == 2 and "did you mean 'infonce'?" in done.output


def test_run_of_a_run_folder_points_to_its_config_and_to_resume(cli, runs_dir):
    path, _ = run_experiment(CONFIGS / "collapse.yaml", TINY, runs_dir=runs_dir)
    done = cli("run", path, "--runs-dir", runs_dir)
    assert done.exit_code == 2
    assert f"collapse run {path / 'config.yaml'}" in done.output
    assert f"--resume {path}" in done.output


def test_flags_show_no_value_placeholders_in_help(cli):
    text = cli("run", "--help").output
    assert "<bool>" not in text and "--quiet" in text
    assert "[CONFIG] [KEY=VALUE]..." in text  # CONFIG is optional with --resume
    validate = cli("validate", "--help").output
    assert "CONFIG} [KEY=VALUE]..." in validate  # click marks a required argument {CONFIG}


def test_components_views_lists_every_key_with_its_default(cli):
    from collapse_cli.views import ViewsConfig

    text = cli("components", "views").output
    for key, field in ViewsConfig.model_fields.items():
        assert key in text and field.description.split(";")[0][:20] in text


def test_a_partial_views_block_says_which_defaults_it_keeps(tmp_path):
    given = "views:\n  crop: [0.8, 1.0]\n  noise: 0.1\n  mask: 0.1\n"
    text = (CONFIGS / "nt-xent.yaml").read_text()
    assert given in text
    cfg = write(tmp_path / "v.yaml", text.replace(given, "views: {noise: 0.1}\n"))
    done = _collapse("run", cfg, "train.steps=2", "log.every=1", "--runs-dir", tmp_path / "r")
    assert done.returncode == 0, done.stderr
    assert "views: also on by default: mask=0.1, scale=[0.8, 1.2], crop=[0.8, 1.0]" in done.stderr


def test_dir_of_the_package_shows_the_api():
    import collapse_cli

    assert {"run_experiment", "resume_run", "load_run"} <= set(dir(collapse_cli))


# --------------------------------------------------------------------------- at 80 columns
def test_the_live_table_fits_80_columns_without_cutting_a_number():
    from rich.console import Console

    from collapse_cli.display.live import LiveReporter

    console = Console(width=80, record=True, force_terminal=True, color_system=None)
    live = LiveReporter(console, "nt-xent", {"complete_variance_ratio": 1e-3,
                        "complete_std_l2": 0.05, "dimensional_fraction": 0.25})  # fmt: skip
    rows = [
        {"step": s, "loss": 5.5281e-7 * (s + 1), "variance": 0.3 / (s + 1), "min_eig": 1.2e-9,
         "rank": 32, "effective_rank": 30.5 - s, "std_l2": 0.01, "knn_acc": 0.9,
         "grad_norm": 3.3e-5, "on_diagonal": 12.25, "off_diagonal": 0.0031}
        for s in range(0, 300, 50)
    ]  # fmt: skip
    for r in rows:
        live.log(r, 128)
    console.print(live._table())
    text = console.export_text()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert max(len(ln) for ln in lines) <= 80 and "…" not in text
    for header in ("variance", "eff. rank", "std·√d"):  # what decides the verdict stays
        assert header in text
    assert "0.3 " in text or "0.3│" in text  # the step-0 row is kept as the reference
    assert "5.528e-07" in text or "loss" not in text  # a number is whole or its column gone


def test_list_keeps_id_and_verdict_at_80_columns(runs_dir):
    from rich.console import Console

    from collapse_cli.display import print_runs
    from collapse_cli.reading.listing import run_table

    for seed in range(2):
        run_experiment(CONFIGS / "collapse.yaml", [*TINY, f"seed={seed}",
                       "name=a-rather-long-name-for-a-run"], runs_dir=runs_dir)  # fmt: skip
    console = Console(width=80, record=True, force_terminal=True, color_system=None)
    print_runs(console, runs_dir, run_table(runs_dir), as_json=False)
    text = console.export_text()
    assert "verdict" in text and "healthy" in text and "…" not in text
    assert max(len(ln) for ln in text.splitlines()) <= 80
    assert all(p.name in text for p in runs_dir.iterdir())


def test_interrupted_run_says_how_to_resume_it(runs_dir):
    from rich.console import Console

    from collapse_cli.display import print_ending

    path, summary = run_experiment(CONFIGS / "collapse.yaml", ["train.steps=40", "log.every=10"],
                                   runs_dir=runs_dir, reporter=InterruptAt(15))  # fmt: skip
    console = Console(width=100, record=True)
    assert print_ending(console, path, summary) == 130
    assert f"to continue it: collapse run --resume {path}" in console.export_text()
