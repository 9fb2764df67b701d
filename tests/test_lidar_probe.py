"""LiDAR (log.lidar) and the linear probe (log.probe): each against an independent computation
or a hand-built case with a known answer, reptrix's convention beside the paper's, and the
training streams left where they were."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from collapse_cli import run_experiment
from collapse_cli.config import load_config
from collapse_cli.data import Data
from collapse_cli.errors import ConfigError
from collapse_cli.metrics import LIDAR_DELTA, LIDAR_EPS, lidar, linear_probe_accuracy
from collapse_cli.training.probes import Probes, check_probes

from .conftest import CONFIGS


def exp_entropy(p: list[float]) -> float:
    return math.exp(-sum(x * math.log(x) for x in p if x > 0))


def star_views(means: np.ndarray, spreads: np.ndarray) -> np.ndarray:
    """(n, 2d, d): the views of sample i are μ_i ± b_k e_k, k = 1 … d, so that its views average
    to μ_i exactly and Σ_j (z_ij − μ_i)(z_ij − μ_i)ᵀ = 2 diag(b²)."""
    steps = np.concatenate([np.diag(spreads), -np.diag(spreads)])  # (2d, d)
    return means[:, None, :] + steps[None]


# ---------------------------------------------------------------------------- LiDAR
def test_lidar_of_a_hand_built_case_is_its_closed_form() -> None:
    """n = 4 means ±a₁e₁, ±a₂e₂ (grand mean 0) in d = 3, q = 6 views μ_i ± b_k e_k: Σ_b =
    diag(2a₁²/3, 2a₂²/3, 0) (n − 1 = 3), Σ_w = diag(2b_k²/5) + δI (n(q − 1) = 20, 4 · 2b² / 20),
    so the LDA eigenvalues are (2a_k²/3)/(2b_k²/5 + δ) and 0, p_k = λ_k/Σλ + ε."""
    a, b = np.array([3.0, 1.0]), np.array([0.5, 2.0, 1.0])
    means = np.array([[a[0], 0, 0], [-a[0], 0, 0], [0, a[1], 0], [0, -a[1], 0]])
    z = torch.from_numpy(star_views(means, b))
    lam = [(2 * a[k] ** 2 / 3) / (2 * b[k] ** 2 / 5 + LIDAR_DELTA) for k in range(2)] + [0.0]
    expected = exp_entropy([x / sum(lam) + LIDAR_EPS for x in lam])
    assert lidar(z) == pytest.approx(expected, rel=1e-12)
    # Whitening is what LiDAR adds: the same means with spreads proportional to them (b₁/a₁ =
    # b₂/a₂) are two equally discriminable directions, exactly 2 (up to ε) with δ = 0, where
    # the means alone (a 9 : 1 spread of Σ_b) would read far fewer.
    z = torch.from_numpy(star_views(means, np.array([1.5, 0.5, 1.0])))
    assert lidar(z, delta=0.0) == pytest.approx(exp_entropy([0.5 + LIDAR_EPS] * 2 + [LIDAR_EPS]))
    assert lidar(z, delta=0.0) == pytest.approx(2.0, abs=1e-5)


def numpy_lidar(z: np.ndarray, delta: float = LIDAR_DELTA, eps: float = LIDAR_EPS) -> float:
    """The paper's formula literally: Σ_w^{-1/2} from an eigendecomposition of Σ_w + δI."""
    n, q, d = z.shape
    mu = z.mean(1)
    sb = (mu - mu.mean(0)).T @ (mu - mu.mean(0)) / (n - 1)
    dev = (z - mu[:, None]).reshape(-1, d)
    w, v = np.linalg.eigh(dev.T @ dev / (n * (q - 1)) + delta * np.eye(d))
    root = v @ np.diag(w**-0.5) @ v.T
    lam = np.clip(np.linalg.eigvalsh(root @ sb @ root), 0, None)
    p = lam / lam.sum() + eps
    return float(np.exp(-(p * np.log(p)).sum()))


@pytest.mark.parametrize("shape", [(60, 5, 12), (9, 4, 20)])  # n > d and n < d (the n×n Gram)
def test_lidar_matches_an_independent_numpy_computation(shape: tuple[int, int, int]) -> None:
    g = np.random.default_rng(1)
    z = g.standard_normal(shape) @ g.standard_normal((shape[2], shape[2]))  # correlated
    assert lidar(torch.from_numpy(z)) == pytest.approx(numpy_lidar(z), rel=1e-9)
    f32 = torch.from_numpy(z).float()  # float32 views are measured in float64
    assert lidar(f32) == pytest.approx(numpy_lidar(f32.double().numpy()), rel=1e-9)


def reptrix_style(z: np.ndarray, delta: float = 1e-6, eps: float = 1e-7) -> float:
    """reptrix's definition, restated: Σ_obj = Σ_i (μ_i − μ)(μ_i − μ)ᵀ (no 1/(n−1)), Σ_augs =
    (1/n) Σ_i Σ_j (z_ij − μ_i)(…)ᵀ + δI, M = Σ_augs^{-1/2} Σ_obj Σ_augs^{-1/2}, and as its
    spectrum the PCA explained-variance ratios of the d rows of M (its columns centred)."""
    n, d = z.shape[0], z.shape[2]
    mu = z.mean(1)
    obj = (mu - mu.mean(0)).T @ (mu - mu.mean(0))
    dev = (z - mu[:, None]).reshape(-1, d)
    w, v = np.linalg.eigh(dev.T @ dev / n + delta * np.eye(d))
    root = v @ np.diag(w**-0.5) @ v.T
    m = root @ obj @ root
    rows = m - m.mean(0)
    ratio = np.clip(np.linalg.eigvalsh(rows.T @ rows), 0, None)
    p = ratio / ratio.sum() + eps
    return float(np.exp(-(p * np.log(p)).sum()))


def test_lidar_against_reptrixs_convention() -> None:
    """With Σ_b's directions orthogonal to (1, 1, 1) and an isotropic Σ_w, reptrix's PCA of the
    rows of the LDA matrix is a PCA of M² (its columns already have zero mean): its spectrum is
    the squared one, a_k⁴, where the paper's (and ours) is a_k². Equal directions agree."""
    u1, u2 = np.array([1.0, -1, 0]) / math.sqrt(2), np.array([1.0, 1, -2]) / math.sqrt(6)
    for a1, a2 in [(2.0, 1.0), (1.0, 1.0)]:
        means = np.stack([a1 * u1, -a1 * u1, a2 * u2, -a2 * u2])
        z = star_views(means, np.ones(3))
        ours = [x / (a1**2 + a2**2) + LIDAR_EPS for x in (a1**2, a2**2, 0.0)]
        theirs = [x / (a1**4 + a2**4) + 1e-7 for x in (a1**4, a2**4, 0.0)]
        assert lidar(torch.from_numpy(z)) == pytest.approx(exp_entropy(ours), rel=1e-9)
        assert reptrix_style(z) == pytest.approx(exp_entropy(theirs), rel=1e-9)
    assert exp_entropy(ours) == pytest.approx(exp_entropy(theirs))  # a1 = a2: the same 2


def test_lidar_edge_cases() -> None:
    point = torch.ones(5, 3, 4)  # every view of every sample the same point: Σ_b = 0
    assert lidar(point) == 0.0
    same = torch.randn(5, 1, 4).expand(5, 3, 4)  # views identical, samples apart: Σ_w = δI
    expected = numpy_lidar(same.double().numpy())
    assert lidar(same) == pytest.approx(expected, rel=1e-9)
    assert math.isnan(lidar(torch.full((5, 3, 4), math.nan)))
    with pytest.raises(ValueError, match="n, q >= 2"):
        lidar(torch.randn(5, 1, 4))


# ---------------------------------------------------------------------------- linear probe
def clouds(n: int, d: int, classes: int, seed: int, spread: float = 1.0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    centres = torch.randn(classes, d, generator=g) * 2
    return centres[labels] + spread * torch.randn(n, d, generator=g), labels


def test_linear_probe_matches_scikit_learn() -> None:
    """The same problem solved by scikit-learn: mean cross-entropy + (λ/2)‖W‖² is sklearn's
    C·Σ CE + ½‖W‖² divided by C·N, so C = 1/(λN); features scaled as the probe scales them."""
    sklearn = pytest.importorskip("sklearn.linear_model")
    x, y = clouds(300, 8, 3, seed=0, spread=2.0)
    xt, yt = clouds(200, 8, 3, seed=0, spread=2.0)
    xt = xt + 0.5 * torch.randn(200, 8, generator=torch.Generator().manual_seed(5))
    mean = x.double().mean(0)
    scale = math.sqrt(float(x.double().var(0).mean()))
    fit = sklearn.LogisticRegression(C=1 / (1e-3 * 300), tol=1e-12, max_iter=10000)
    fit.fit(((x.double() - mean) / scale).numpy(), y.numpy())
    theirs = float((fit.predict(((xt.double() - mean) / scale).numpy()) == yt.numpy()).mean())
    assert 0.5 < theirs < 1.0  # a case where the boundary matters
    assert linear_probe_accuracy(x, y, xt, yt, l2=1e-3) == pytest.approx(theirs, abs=1 / 200)


def test_linear_probe_on_separable_and_collapsed_embeddings() -> None:
    x, y = clouds(200, 6, 4, seed=1, spread=0.05)
    xt, yt = clouds(100, 6, 4, seed=1, spread=0.05)
    assert linear_probe_accuracy(x, y, xt, yt) == 1.0
    # One point repeated: the fit is the bias alone (log class shares), so it predicts the
    # training majority, class 2 here, and scores that class's share of the held-out labels.
    y = torch.tensor([0] * 30 + [1] * 30 + [2] * 40)
    yt = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    point = torch.full((100, 6), 3.0)
    assert linear_probe_accuracy(point, y, point, yt) == pytest.approx(20 / 100)


# ---------------------------------------------------------------------------- in a run
TINY = ["train.steps=6", "log.every=3", "log.plots=false", "log.embeddings=0",
        "data.n=300", "train.batch_size=64"]  # fmt: skip


def test_lidar_and_probe_leave_the_training_streams_alone(runs_dir) -> None:
    base = ["data.name=clusters", "views.noise=0.2", *TINY]
    plain, _ = run_experiment(CONFIGS / "nt-xent.yaml", base, runs_dir=runs_dir / "a")
    probed, summary = run_experiment(
        CONFIGS / "nt-xent.yaml",
        [*base, "log.lidar={samples: 40, views: 4}", "log.probe=linear"],
        runs_dir=runs_dir / "b",
    )
    rows = [[json.loads(line) for line in (p / "metrics.jsonl").read_text().splitlines()]
            for p in (plain, probed)]  # fmt: skip
    assert len(rows[0]) == len(rows[1]) == 3
    for a, b in zip(*rows, strict=True):
        assert {k: a[k] for k in a if k != "time"} == {
            k: b[k] for k in b if k not in ("time", "lidar", "probe_acc")
        }  # loss, every metric, kNN: bit-identical
        assert 1 <= b["lidar"] <= min(40 - 1, 32) and 0 <= b["probe_acc"] <= 1
    assert "lidar" in summary["final"] and "probe_acc" in summary["final"]


def test_the_lidar_probe_set_is_fixed_by_the_seed() -> None:
    """256 samples × 8 views (the defaults), the same draw every time for one seed."""
    data = Data(torch.randn(300, 32, generator=torch.Generator().manual_seed(0)))
    sets = []
    for seed in (0, 0, 1):
        cfg = load_config(CONFIGS / "nt-xent.yaml", ["log.lidar={}", f"seed={seed}"])
        sets.append(Probes(cfg, data, torch.device("cpu")).lidar_x)
    assert sets[0].shape == (256 * 8, 32)
    assert torch.equal(sets[0], sets[1]) and not torch.equal(sets[0], sets[2])


def test_a_run_without_views_or_labels_is_a_config_error_naming_the_key(cli) -> None:
    result = cli("validate", CONFIGS / "collapse.yaml", "log.lidar={}")
    assert result.exit_code == 2
    assert "log.lidar: loss variance trains on the raw batch" in result.output
    assert result.output.count("\n") <= 2 and "Traceback" not in result.output
    result = cli("validate", CONFIGS / "collapse.yaml", "log.probe=linear")
    assert result.exit_code == 2 and "log.probe: linear needs labelled data" in result.output
    result = cli("validate", CONFIGS / "nt-xent.yaml", "log.lidar.samples=5000")
    assert result.exit_code == 2 and "log.lidar.samples: 5000 is larger" in result.output
    text = Data(torch.randint(0, 255, (100, 16)))
    cfg = load_config(CONFIGS / "nt-xent.yaml", ["log.lidar={}"])
    with pytest.raises(ConfigError, match=r"log\.lidar: data digits is text"):
        check_probes(cfg, text, 2)
