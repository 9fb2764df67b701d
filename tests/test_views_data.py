"""Views (seeded, off the global RNG, the right shapes), datasets and their held-out split, file
loading and its errors, and the encoders that read image shapes."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from collapse_cli.data import DATASETS, File
from collapse_cli.encoders import ENCODERS, embed, output_dim
from collapse_cli.errors import ConfigError
from collapse_cli.views import ViewMaker, ViewsConfig, augment


# ---------------------------------------------------------------------------- views
@pytest.mark.parametrize("shape", [(16, 10), (16, 1, 8, 8)])
def test_views_are_seeded_shaped_and_leave_the_global_rng_alone(shape):
    x = torch.rand(*shape)
    state = torch.get_rng_state()
    a = ViewMaker(ViewsConfig(), 2, seed=0)(x)
    b = ViewMaker(ViewsConfig(), 2, seed=0)(x)
    c = ViewMaker(ViewsConfig(), 2, seed=1)(x)
    assert torch.equal(torch.get_rng_state(), state)
    assert len(a) == 2 and all(v.shape == x.shape for v in a)
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    assert not torch.equal(a[0], a[1]) and not torch.equal(a[0], c[0])
    assert torch.equal(
        ViewMaker(ViewsConfig(seed=5), 2, seed=0)(x)[0],
        ViewMaker(ViewsConfig(seed=5), 2, seed=9)(x)[0],
    )


def test_one_view_losses_get_the_raw_batch_unless_asked():
    x = torch.rand(8, 4)
    assert ViewMaker(ViewsConfig(), 1, seed=0)(x)[0] is x
    (v,) = ViewMaker(ViewsConfig(count=1), 1, seed=0)(x)
    assert v.shape == x.shape and not torch.equal(v, x)


def test_view_count_must_fit_the_loss():
    with pytest.raises(ValueError, match="compares 2 views"):
        ViewMaker(ViewsConfig(count=1), 2, seed=0, loss="byol")
    with pytest.raises(ValueError, match="takes one view"):
        ViewMaker(ViewsConfig(count=3), 1, seed=0, loss="variance")


def test_each_augmentation_does_what_it_says():
    g = torch.Generator().manual_seed(0)
    off = {"noise": 0.0, "mask": 0.0, "scale": (1.0, 1.0), "crop": None}
    img = torch.rand(4, 1, 8, 8)
    assert torch.equal(augment(img, ViewsConfig(**off), g), img)  # everything off: identity
    flipped = augment(img, ViewsConfig(**off, flip=1.0), g)
    assert torch.allclose(flipped, img.flip(-1), atol=1e-6)
    cut = augment(torch.ones(64, 1, 8, 8), ViewsConfig(**off, cutout=0.25), g)
    zeros = (cut == 0).sum(dim=(1, 2, 3))
    assert zeros.max() == 4 and zeros.min() >= 1  # one 2x2 square, maybe cut by the border
    masked = augment(torch.ones(200, 50), ViewsConfig(**{**off, "mask": 0.3}), g)
    assert set(masked.unique().tolist()) == {0.0, 1.0}
    assert float((masked == 0).double().mean()) == pytest.approx(0.3, abs=0.02)
    scaled = augment(torch.ones(100, 3), ViewsConfig(**{**off, "scale": (0.5, 2.0)}), g)
    assert torch.all(scaled == scaled[:, :1]) and 0.5 <= scaled.min() <= scaled.max() <= 2.0
    shifted = augment(img, ViewsConfig(**off, shift=1), g)
    for i in range(4):  # each image moved by a whole pixel (or not), zeros shifted in
        candidates = [_shift(img[i], dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
        assert any(torch.allclose(shifted[i], c, atol=1e-5) for c in candidates)
    cropped = augment(img, ViewsConfig(**{**off, "crop": (0.5, 0.5)}), g)
    assert cropped.shape == img.shape and not torch.allclose(cropped, img)


def _shift(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    out = torch.zeros_like(x)
    h, w = x.shape[-2:]
    ys, xs = slice(max(dy, 0), h + min(dy, 0)), slice(max(dx, 0), w + min(dx, 0))
    yd, xd = slice(max(-dy, 0), h + min(-dy, 0)), slice(max(-dx, 0), w + min(-dx, 0))
    out[..., yd, xd] = x[..., ys, xs]
    return out


def test_bad_views_blocks_name_the_key():
    from collapse_cli.config import load_config

    base = {
        "data": {"name": "gaussian"},
        "encoder": {"name": "linear"},
        "loss": {"name": "variance"},
        "optimizer": {"name": "adam"},
    }
    for bad, words in [
        ({"crop": [0.5, 1.5]}, "views.crop"),
        ({"mask": 1.0}, "views.mask"),
        ({"count": 0}, "views.count"),
        ({"jitter": 1}, "views.jitter: unknown key"),
    ]:
        with pytest.raises(ConfigError, match=words):
            load_config({**base, "views": bad})


# ---------------------------------------------------------------------------- datasets
def test_clusters_are_seeded_labelled_split_and_off_the_global_rng():
    state = torch.get_rng_state()
    ds = DATASETS.build("clusters", n=500, dim=12, intrinsic_dim=3, classes=5)
    a, b = ds.materialize(), ds.materialize()
    assert torch.equal(torch.get_rng_state(), state)
    assert ds.n == 400 and ds.shape == (12,) and ds.image_shape is None
    assert a.x.shape == (400, 12) and a.x_test.shape == (100, 12)
    assert torch.equal(a.x, b.x) and torch.equal(a.labels_test, b.labels_test)
    labels = torch.cat([a.labels, a.labels_test])
    assert torch.bincount(labels).tolist() == [100] * 5
    # noise 0: the samples span the intrinsic dimension only
    sv = torch.linalg.svdvals(torch.cat([a.x, a.x_test]))
    assert int((sv > 1e-4 * sv[0]).sum()) == 3
    other = DATASETS.build("clusters", n=500, dim=12, intrinsic_dim=3, classes=5, seed=1)
    assert not torch.equal(other.materialize().x, a.x)
    with pytest.raises(ValueError, match="intrinsic_dim"):
        DATASETS.build("clusters", dim=4, intrinsic_dim=8)


def test_digits_are_labelled_images():
    pytest.importorskip("sklearn")
    ds = DATASETS.build("digits")
    data = ds.materialize()
    assert ds.shape == (1, 8, 8) and ds.dim == 64 and ds.n == 1438
    assert data.x.shape == (1438, 1, 8, 8) and data.x_test.shape == (359, 1, 8, 8)
    assert float(data.x.min()) >= 0 and float(data.x.max()) <= 1
    assert sorted(torch.cat([data.labels, data.labels_test]).unique().tolist()) == list(range(10))


def test_digits_without_scikit_learn_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ConfigError, match=r"pip install 'collapse-cli\[digits\]'"):
        DATASETS.build("digits")


def test_file_formats_load_with_labels(tmp_path: Path):
    x = np.arange(40, dtype=np.float32).reshape(10, 4)
    y = np.array(["cat", "dog"] * 5)
    np.save(tmp_path / "x.npy", x)
    torch.save(torch.from_numpy(x), tmp_path / "x.pt")
    (tmp_path / "x.csv").write_text("a,b,c,d\n" + "\n".join(",".join(map(str, r)) for r in x))
    (tmp_path / "y.csv").write_text("label\n" + "\n".join(y))
    np.save(tmp_path / "y.npy", (y == "dog").astype(np.int64))
    for name in ("x.npy", "x.pt", "x.csv"):
        ds = File(str(tmp_path / name), labels=str(tmp_path / "y.csv"))
        data = ds.materialize()
        assert ds.n == 8 and ds.shape == (4,)
        assert torch.equal(torch.cat([data.x, data.x_test]).sort(0).values, torch.from_numpy(x))
        assert set(data.labels.tolist()) <= {0, 1}
    unlabelled = File(str(tmp_path / "x.npy"))
    assert unlabelled.n == 10 and unlabelled.materialize().labels is None
    images = File(str(tmp_path / "x.npy"), labels=str(tmp_path / "y.npy"), image_shape=[1, 2, 2])
    assert images.shape == (1, 2, 2) and images.materialize().x.shape == (8, 1, 2, 2)
    np.save(tmp_path / "hw.npy", np.zeros((6, 3, 3), dtype=np.float32))
    assert File(str(tmp_path / "hw.npy")).shape == (1, 3, 3)


def test_bad_files_are_clear_errors(tmp_path: Path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}, None], dtype=object))
    np.save(tmp_path / "x.npy", np.zeros((6, 2), dtype=np.float32))
    np.save(tmp_path / "nan.npy", np.array([[np.nan, 1.0]] * 3))
    np.save(tmp_path / "y5.npy", np.zeros(5, dtype=np.int64))
    torch.save({"x": torch.zeros(3), "y": torch.zeros(3)}, tmp_path / "dict.pt")
    (tmp_path / "x.txt").write_text("1,2\n")
    (tmp_path / "ragged.csv").write_text("1,2\n3\n")
    x = str(tmp_path / "x.npy")
    cases = [
        ({"path": str(tmp_path / "obj.npy")}, "pickled Python objects"),
        ({"path": str(tmp_path / "missing.npy")}, "no such file"),
        ({"path": str(tmp_path / "x.txt")}, "unknown file type"),
        ({"path": str(tmp_path / "dict.pt")}, "holds 2 tensors"),
        ({"path": str(tmp_path / "ragged.csv")}, "line 2 has 1 value"),
        ({"path": str(tmp_path / "nan.npy")}, "NaN"),
        ({"path": x, "labels": str(tmp_path / "y5.npy")}, r"expected \(6,\)"),
        ({"path": x, "test_fraction": 0.2}, "needs labels"),
        ({"path": x, "image_shape": [1, 3, 3]}, "image_shape"),
    ]
    for params, words in cases:
        with pytest.raises((ValueError, ConfigError), match=words):
            File(**params)


def test_a_pickled_npy_is_a_config_error_in_a_run(tmp_path: Path):
    from collapse_cli.config import load_config
    from collapse_cli.training.build import build

    np.save(tmp_path / "obj.npy", np.array([object()], dtype=object))
    cfg = load_config(
        {
            "data": {"name": "file", "path": str(tmp_path / "obj.npy")},
            "encoder": {"name": "linear"},
            "loss": {"name": "variance"},
            "optimizer": {"name": "adam"},
        }
    )
    with pytest.raises(ConfigError, match=r"data \(file\): path .*pickled Python objects"):
        build(cfg)


# ---------------------------------------------------------------------------- encoders
def test_encoders_read_the_data_shape():
    torch.manual_seed(0)
    cnn = ENCODERS.build("cnn", (1, 8, 8), channels=[4, 8], out_dim=10, projector=[16, 6])
    assert output_dim(cnn, (1, 8, 8)) == 6
    assert ENCODERS.build("mlp", (1, 8, 8), hidden=[5], out_dim=3)(
        torch.rand(2, 1, 8, 8)
    ).shape == (2, 3)
    assert isinstance(ENCODERS.build("linear", (32,)), nn.Linear)  # the article's module
    with pytest.raises(ValueError, match="cnn needs image data"):
        ENCODERS.build("cnn", (32,))


def test_output_dim_and_embed_leave_the_encoder_as_they_found_it():
    enc = ENCODERS.build("mlp", (4,), hidden=[8], out_dim=3, batch_norm=True)
    x = torch.rand(10, 4)
    state, rng = {k: v.clone() for k, v in enc.state_dict().items()}, torch.get_rng_state()
    assert output_dim(enc, (4,)) == 3
    z = embed(enc, x, chunk=3)
    assert z.shape == (10, 3) and not z.requires_grad and enc.training
    assert all(torch.equal(v, enc.state_dict()[k]) for k, v in state.items())
    assert torch.equal(torch.get_rng_state(), rng)


def test_runs_on_labelled_data_log_knn_accuracy(tmp_path: Path):
    from collapse_cli import run_experiment

    cfg = {
        "data": {"name": "clusters", "n": 300, "dim": 8, "classes": 3},
        "encoder": {"name": "linear", "out_dim": 8},
        "loss": {"name": "infonce"},
        "optimizer": {"name": "adam"},
        "train": {"steps": 3},
        "log": {"every": 1},
    }
    _, summary = run_experiment(cfg, runs_dir=tmp_path)
    assert 0.9 < summary["final"]["knn_acc"] <= 1.0  # well separated clusters
    assert "alignment" in summary["final"]
    _, plain = run_experiment(cfg, ["data={name: gaussian, n: 64, dim: 8}"], runs_dir=tmp_path)
    assert "knn_acc" not in plain["final"]
    # log.knn_k as large as the train set: every train row votes, so the accuracy is the share
    # of the held-out rows in the train set's majority class, whatever the embeddings.
    from collapse_cli.data import DATASETS

    data = DATASETS.build("clusters", n=300, dim=8, classes=3).materialize()
    assert data.labels_test is not None
    majority = torch.bincount(data.labels).argmax()
    share = float((data.labels_test == majority).double().mean())
    _, everyone = run_experiment(cfg, ["log.knn_k=100000"], runs_dir=tmp_path)
    assert everyone["final"]["knn_acc"] == pytest.approx(share) and share < 0.5
    # summary.json's chance level: the share of the largest held-out class.
    counts = Counter(data.labels_test.tolist())
    assert summary["knn_chance"] == max(counts.values()) / len(data.labels_test)
    assert "knn_chance" not in plain
