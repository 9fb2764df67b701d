"""Jing et al. 2022's toy (configs/jing-linear.yaml): the views.noise_features option that makes
its block-diagonal augmentation, its errors, and the dimensional collapse it produces, checked
with numpy on the run's embeddings rather than with the project's metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from collapse_cli import run_experiment
from collapse_cli.views import ViewsConfig, augment
from collapse_cli.yamlfile import read_yaml

from .conftest import CONFIGS, write

OFF = {"mask": 0.0, "scale": (1.0, 1.0), "crop": None}
FAST = ["train.steps=600", "optimizer.lr=0.03", "log.every=600", "log.figures=none"]
FAST += ["log.spectrum=false"]


# ------------------------------------------------------------------ the option
def test_noise_features_noises_only_the_last_k_features():
    x = torch.randn(4096, 16)
    g = torch.Generator().manual_seed(0)
    v = augment(x, ViewsConfig(noise=2.0, noise_features=8, **OFF), g)
    assert torch.equal(v[:, :8], x[:, :8])  # the first 8 untouched, bit for bit
    added = (v - x)[:, 8:].double()
    # the noise on the last 8: std 2 in each (4,096 draws: within ±5 % of 2)
    assert torch.allclose(added.std(0), torch.full((8,), 2.0, dtype=torch.float64), rtol=0.05)


def test_noise_features_null_is_the_noise_on_every_feature():
    x = torch.zeros(8, 16)
    a = augment(x, ViewsConfig(noise=1.0, **OFF), torch.Generator().manual_seed(3))
    b = augment(
        x, ViewsConfig(noise=1.0, noise_features=16, **OFF), torch.Generator().manual_seed(3)
    )
    assert torch.equal(a, b) and bool((a != 0).all())


def test_noise_features_must_fit_the_data(cli, tmp_path):
    base = [CONFIGS / "jing-linear.yaml", "train.steps=1"]
    for override, words in [
        ("views.noise_features=17", "views.noise_features: 17 is more than the data's 16"),
        ("views.noise_features=0", "views.noise_features"),
        ("views.noise_features=two", "views.noise_features"),
    ]:
        result = cli("validate", *base, override)
        assert result.exit_code == 2, result.output
        assert words in result.output and "Traceback" not in result.output
    images = tmp_path / "images.npy"
    np.save(images, np.random.default_rng(0).random((32, 1, 4, 4)).astype(np.float32))
    config = write(
        tmp_path / "images.yaml",
        f"data: {{name: file, path: {images}}}\nviews: {{noise_features: 8}}\n"
        "encoder: {name: linear, out_dim: 16}\nloss: {name: infonce}\noptimizer: {name: sgd}\n",
    )
    result = cli("validate", config)
    assert result.exit_code == 2, result.output
    assert "views.noise_features: applies to feature vectors" in result.output


def test_components_lists_noise_features(cli):
    result = cli("components", "views")
    assert result.exit_code == 0 and "noise_features" in result.output


# ------------------------------------------------------------------ the config files
def test_the_sweep_file_is_the_run_file_with_a_sweep_block():
    run = read_yaml(CONFIGS / "jing-linear.yaml")
    sweep = read_yaml(CONFIGS / "jing-linear-sweep.yaml")
    assert sweep.pop("sweep")["grid"] == {"views.noise": [0.0, 0.5, 1.0, 1.25, 1.5, 2.0, 3.0]}
    assert sweep.pop("name") == "jing-linear-sweep" and run.pop("name") == "jing-linear"
    assert sweep == run


# ------------------------------------------------------------------ the result
def _centred_eigenvalues(path) -> np.ndarray:
    """Eigenvalues (descending) of the covariance of the run's saved embeddings, in numpy."""
    z = np.load(path / "embeddings.npy").astype(np.float64)
    return np.linalg.eigvalsh(np.cov(z.T))[::-1]


@pytest.mark.parametrize(("noise", "collapsed"), [(3.0, 8), (0.0, 0)])
def test_strong_augmentation_collapses_the_noisy_dimensions(runs_dir, noise, collapsed):
    # The config at 3 × its learning rate for 600 of its 10,000 steps, to take a second or two:
    # noise 3 (k = 9) has then put the 8 noisy directions below 1e-6 of λ₁ (the config itself
    # does by step 2,000); without noise all 16 directions end within a factor 10 of λ₁.
    folder, _ = run_experiment(
        CONFIGS / "jing-linear.yaml",
        [f"views.noise={noise}", *FAST],
        runs_dir=runs_dir,
    )
    eig = _centred_eigenvalues(folder)
    assert int((eig < 1e-6 * eig[0]).sum()) == collapsed
    assert int((eig > 0.1 * eig[0]).sum()) == 16 - collapsed
