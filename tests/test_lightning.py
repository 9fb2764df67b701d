"""The Lightning callback: a real Trainer on the CPU writes a run folder that plot and compare
read; a wrong embeddings callable stops the fit with one line and no folder; under several
processes only rank 0 writes, after gathering."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from torch import nn

pl = pytest.importorskip("pytorch_lightning")

from collapse_cli.errors import ConfigError  # noqa: E402
from collapse_cli.lightning import CollapseMonitor  # noqa: E402
from collapse_cli.metrics import compute_metrics  # noqa: E402
from collapse_cli.rundir import read_jsonl  # noqa: E402


class TwoViews(pl.LightningModule):
    """A linear encoder trained with the alignment loss on two noisy views."""

    def __init__(self, lr: float = 0.05) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Linear(8, 6)

    def training_step(self, batch, batch_idx):
        (x,) = batch
        z1, z2 = self.net(x), self.net(x + 0.1 * torch.randn_like(x))
        loss = (nn.functional.normalize(z1) - nn.functional.normalize(z2)).pow(2).sum(1).mean()
        return {"loss": loss, "z": z1, "z_pos": z2}

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


def fit(module: pl.LightningModule, callback: CollapseMonitor, steps: int = 5) -> None:
    torch.manual_seed(0)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(64, 8)), 16)
    trainer = pl.Trainer(
        max_steps=steps, accelerator="cpu", devices=1, callbacks=[callback], logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(module, data)


def test_a_real_trainer_writes_a_run_folder_that_plot_and_compare_read(tmp_path, cli, monkeypatch):
    runs = tmp_path / "runs"
    first = CollapseMonitor(every_n_steps=2, runs_dir=runs)
    batches = []
    second = CollapseMonitor(
        every_n_steps=3,
        embeddings=lambda out, batch: batches.append(batch) or (out["z"], out["z_pos"]),
        runs_dir=runs,
        name="second",
    )
    with monkeypatch.context() as patch:  # the figures: drawn by `collapse plot` below
        patch.setattr("collapse_cli.reading.figures.plot_run", lambda path: [])
        fit(TwoViews(lr=0.05), first)
        fit(TwoViews(lr=0.5), second)

    rows = read_jsonl(first.path / "metrics.jsonl")
    assert [r["step"] for r in rows] == [0, 2, 4]  # every 2 optimizer steps, and the last
    assert all({"loss", "alignment", "grad_norm", "effective_rank"} <= set(r) for r in rows)
    assert [r["step"] for r in read_jsonl(second.path / "metrics.jsonl")] == [0, 3, 4]
    assert len(batches) == 3  # the callable got the batch of each logged step
    meta = json.loads((first.path / "meta.json").read_text())
    assert meta["status"] == "completed" and meta["versions"]["lightning"] == pl.__version__
    config = (first.path / "config.yaml").read_text()
    assert "lr: 0.05" in config and "max_steps: 5" in config
    summary = json.loads((first.path / "summary.json").read_text())
    assert summary["batch_size"] == 16 and summary["dim"] == 6 and summary["verdict"]
    assert first.path.name.endswith("-TwoViews")

    plotted = cli("plot", first.path.name, "--runs-dir", runs)
    assert plotted.exit_code == 0, plotted.output
    compared = cli("compare", first.path.name, second.path.name, "--runs-dir", runs)
    assert compared.exit_code == 0, compared.output
    assert "lr" in compared.output


class Shrinking(pl.LightningModule):
    """The article's demo 1 in Lightning: a linear encoder minimising its own variance."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Linear(8, 6)

    def training_step(self, batch, batch_idx):
        (x,) = batch
        z = self.net(x)
        return {"loss": z.var(0).mean(), "z": z}

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.5)


def test_stop_on_ends_the_fit_where_the_verdict_first_holds(tmp_path, monkeypatch):
    """With stop_on (patience 0) the fit ends after the first logged step whose variance is
    below 0.001 of step 0's (found by hand in the metrics of the same fit run to its end), and
    the run is marked stopped there; its rows are the full fit's up to that step."""
    monkeypatch.setattr("collapse_cli.reading.figures.plot_run", lambda path: [])
    full = CollapseMonitor(every_n_steps=2, runs_dir=tmp_path / "full")
    torch.manual_seed(1)  # the same encoder for both fits
    fit(Shrinking(), full, steps=40)
    rows = read_jsonl(full.path / "metrics.jsonl")
    expected = next(r["step"] for r in rows if r["variance"] < 1e-3 * rows[0]["variance"])
    assert 0 < expected < 38  # the rule fires well before the end

    rule = {"verdict": "complete collapse", "patience": 0}
    stopping = CollapseMonitor(every_n_steps=2, runs_dir=tmp_path / "stop", stop_on=rule)
    torch.manual_seed(1)
    fit(Shrinking(), stopping, steps=40)
    summary = json.loads((stopping.path / "summary.json").read_text())
    assert summary["status"] == "stopped" and summary["stopped_at"] == expected
    assert "variance fell" in summary["stop_reason"]

    def untimed(rs):
        return [{k: v for k, v in r.items() if k != "time"} for r in rs]

    kept = read_jsonl(stopping.path / "metrics.jsonl")  # the same fit, ended at `expected`
    assert untimed(kept) == untimed([r for r in rows if r["step"] <= expected])
    with pytest.raises(ConfigError, match=r"^CollapseMonitor: stop_on"):
        CollapseMonitor(stop_on={"verdict": "dead"})


@pytest.mark.parametrize(
    ("embeddings", "message"),
    [
        (lambda out: out["z"][0], r"returned a tensor of shape \(6,\); expected an \(N, d\)"),
        (lambda out: (out["z"], out["z"][:3]), r"returned a tuple of a tensor of shape \(16, 6\)"),
        (None, None),
    ],
)
def test_a_wrong_embeddings_callable_stops_the_fit_with_one_line(tmp_path, embeddings, message):
    class NoZ(TwoViews):
        def training_step(self, batch, batch_idx):
            return super().training_step(batch, batch_idx)["loss"]

    module = TwoViews() if embeddings else NoZ()
    callback = CollapseMonitor(every_n_steps=1, embeddings=embeddings, runs_dir=tmp_path / "runs")
    message = (
        message or r"training_step returned a dict with keys \['loss'\]; return a dict with 'z'"
    )
    with pytest.raises(ConfigError, match=message) as caught:
        fit(module, callback, steps=2)
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "runs").exists()


def test_several_ranks_gather_first_and_only_rank_0_writes(tmp_path, monkeypatch):
    """The callback's multi-process path without processes: two stand-in trainers, ranks 0 and
    1 of a world of 2, whose all_gather stacks both ranks' tensors as Lightning's does."""
    monkeypatch.setattr("collapse_cli.reading.figures.plot_run", lambda path: [])
    g = torch.Generator().manual_seed(0)
    local = [torch.randn(8, 4, generator=g) for _ in range(2)]
    losses = [torch.tensor(1.0), torch.tensor(3.0)]
    gathered = []

    def all_gather(t):
        gathered.append(t.shape)
        pick = local if t.ndim == 2 else losses
        return torch.stack(pick)  # (world, *shape)

    module = SimpleNamespace(all_gather=all_gather, hparams={"lr": 1}, parameters=lambda: [])
    callbacks = []
    for rank in (0, 1):
        trainer = SimpleNamespace(
            is_global_zero=rank == 0, world_size=2, global_step=1, max_steps=1, max_epochs=-1,
            accumulate_grad_batches=1, estimated_stepping_batches=1,
        )  # fmt: skip
        cb = CollapseMonitor(every_n_steps=1, runs_dir=tmp_path / "runs")
        cb.on_train_start(trainer, module)
        cb.on_train_batch_end(trainer, module, {"loss": losses[rank], "z": local[rank]}, None, 0)
        cb.on_train_end(trainer, module)
        callbacks.append(cb)
    assert gathered == [(8, 4), (), (8, 4), ()]  # every rank takes part in each collective
    assert callbacks[1].path is None
    (path,) = (tmp_path / "runs").iterdir()
    (row,) = read_jsonl(path / "metrics.jsonl")
    values, _ = compute_metrics(torch.cat(local))
    assert {k: row[k] for k in values} == values and row["loss"] == 2.0
