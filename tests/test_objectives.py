"""Every two-view loss against an independent computation; gradients, EMA targets and queues
step by step; and short seeded runs in which each ablation collapses and its healthy twin not."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from collapse_cli.errors import ConfigError
from collapse_cli.objectives import OBJECTIVES
from collapse_cli.objectives.barlow_twins import cross_correlation, off_diagonal, on_diagonal
from collapse_cli.objectives.base import cosine_momentum, ema_update, frozen_copy
from collapse_cli.objectives.byol import byol_loss
from collapse_cli.objectives.dino import dino_cross_entropy, entropy, teacher_probabilities
from collapse_cli.objectives.infonce import nt_xent
from collapse_cli.objectives.moco import moco_loss
from collapse_cli.objectives.simsiam import negative_cosine
from collapse_cli.objectives.vicreg import covariance_term, invariance_term, variance_term

TWO_VIEW = ["infonce", "moco", "byol", "simsiam", "dino", "barlow_twins", "vicreg", "alignment"]


def make(name: str, dim: int = 6, batch: int = 4, n: int = 64, **params) -> tuple:
    """An objective set up on a small linear encoder, as train.build does."""
    torch.manual_seed(0)
    encoder = nn.Linear(5, dim)
    if name == "moco":
        params.setdefault("queue_size", 8)
    if name == "dino":
        params.setdefault("prototypes", 16)
        params.setdefault("head", [8, 4])
    if name == "byol":
        params.setdefault("predictor_hidden", 8)
    objective = OBJECTIVES.build(name, **params)
    objective.setup(encoder, dim, batch, n)
    return objective, encoder


def pair(n: int = 4) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return [torch.randn(n, 5, generator=g), torch.randn(n, 5, generator=g)]


# ---------------------------------------------------------------------------- the formulas
def nt_xent_loop(z1: torch.Tensor, z2: torch.Tensor, tau: float) -> float:
    """NT-Xent written out anchor by anchor, in float64."""
    u = [F.normalize(r.double(), dim=0) for r in torch.cat([z1, z2])]
    n2 = len(u)
    total = 0.0
    for i in range(n2):
        j = (i + n2 // 2) % n2
        denom = sum(math.exp(float(u[i] @ u[k]) / tau) for k in range(n2) if k != i)
        total += -math.log(math.exp(float(u[i] @ u[j]) / tau) / denom)
    return total / n2


@pytest.mark.parametrize("tau", [0.1, 0.5, 2.0])
def test_nt_xent_matches_a_loop(tau: float):
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    assert float(nt_xent(z1, z2, tau)) == pytest.approx(nt_xent_loop(z1, z2, tau), rel=1e-5)


def test_nt_xent_closed_forms():
    n, tau = 4, 0.5
    e = torch.eye(2 * n)
    # identical views of orthogonal embeddings: one positive at cos 1, 2N - 2 negatives at 0
    same = float(nt_xent(e[:n], e[:n], tau))
    assert same == pytest.approx(math.log(1 + (2 * n - 2) * math.exp(-1 / tau)), rel=1e-6)
    # all 2N embeddings orthogonal: the positive is no closer than the negatives
    assert float(nt_xent(e[:n], e[n:], tau)) == pytest.approx(math.log(2 * n - 1), rel=1e-6)


def test_moco_loss_matches_a_loop():
    g = torch.Generator().manual_seed(0)
    q, k = (F.normalize(torch.randn(3, 4, generator=g), dim=1) for _ in range(2))
    queue = F.normalize(torch.randn(5, 4, generator=g), dim=1)
    tau, total = 0.2, 0.0
    for i in range(3):
        logits = [float(q[i] @ k[i]) / tau] + [float(q[i] @ c) / tau for c in queue]
        total += -logits[0] + math.log(sum(math.exp(v) for v in logits))
    assert float(moco_loss(q, k, queue, tau)) == pytest.approx(total / 3, rel=1e-5)


def test_cosine_losses_closed_forms():
    e = torch.eye(4)
    assert float(byol_loss(e, 3 * e)) == pytest.approx(0.0, abs=1e-6)  # aligned
    assert float(byol_loss(e, e.roll(1, 1))) == pytest.approx(2.0)  # orthogonal
    assert float(negative_cosine(e, 2 * e)) == pytest.approx(-1.0)
    assert float(negative_cosine(e, e.roll(1, 1))) == pytest.approx(0.0)
    alignment = OBJECTIVES.build("alignment")
    assert float(alignment(nn.Identity(), [e, e.roll(1, 1)]).loss) == pytest.approx(2.0)
    assert float(OBJECTIVES.build("alignment", alpha=1.0)(nn.Identity(), [e, -e]).loss) == 2.0


def test_barlow_twins_terms_by_hand():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(6, 3, generator=g).double(), torch.randn(6, 3, generator=g).double()
    n, d = z1.shape
    std = [
        [
            (z[:, j] - z[:, j].mean()) / math.sqrt(z[:, j].var(unbiased=False) + 1e-5)
            for j in range(d)
        ]
        for z in (z1, z2)
    ]
    c = torch.tensor(
        [[float((std[0][i] * std[1][j]).sum()) / n for j in range(d)] for i in range(d)],
        dtype=torch.float64,
    )
    assert torch.allclose(cross_correlation(z1, z2), c)
    on = sum((1 - c[i, i]) ** 2 for i in range(d))
    off = sum(c[i, j] ** 2 for i in range(d) for j in range(d) if i != j)
    assert float(on_diagonal(c)) == pytest.approx(float(on))
    assert float(off_diagonal(c)) == pytest.approx(float(off))
    out = OBJECTIVES.build("barlow_twins", lambd=0.1)(nn.Identity(), [z1, z2])
    assert float(out.loss) == pytest.approx(float(on + 0.1 * off), rel=1e-5)
    assert set(out.parts) == {"on_diagonal", "off_diagonal"}


def test_vicreg_terms_by_hand():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(5, 3, generator=g).double(), torch.randn(5, 3, generator=g).double()
    n, d = z1.shape

    def var_by_hand(z):
        stds = [
            math.sqrt(float(((z[:, j] - z[:, j].mean()) ** 2).sum()) / (n - 1) + 1e-4)
            for j in range(d)
        ]
        return sum(max(0.0, 1 - s) for s in stds) / d

    def cov_by_hand(z):
        zc = z - z.mean(0)
        return (
            sum(
                float((zc[:, i] * zc[:, j]).sum() / (n - 1)) ** 2
                for i in range(d)
                for j in range(d)
                if i != j
            )
            / d
        )

    inv = float(((z1 - z2) ** 2).sum()) / (n * d)
    assert float(invariance_term(z1, z2)) == pytest.approx(inv)
    assert float(variance_term(z1)) == pytest.approx(var_by_hand(z1))
    assert float(covariance_term(z1)) == pytest.approx(cov_by_hand(z1))
    assert float(variance_term(torch.zeros(4, 3))) == pytest.approx(1 - math.sqrt(1e-4))
    out = OBJECTIVES.build("vicreg")(nn.Identity(), [z1, z2])
    v, c = (var_by_hand(z1) + var_by_hand(z2)) / 2, cov_by_hand(z1) + cov_by_hand(z2)
    assert float(out.loss) == pytest.approx(25 * inv + 25 * v + c, rel=1e-6)
    assert out.parts["variance_term"] == pytest.approx(v)
    assert out.parts["covariance_term"] == pytest.approx(c)
    assert set(out.parts) == {"invariance", "variance_term", "covariance_term"}


def test_dino_terms_by_hand():
    t = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
    s = torch.tensor([[1.0, 2.0, 0.0], [0.0, 0.0, 3.0]])
    center = torch.tensor([0.5, 0.0, 0.0])
    p = teacher_probabilities(t, center, 0.5)
    for i in range(2):
        w = [math.exp((float(t[i, k]) - float(center[k])) / 0.5) for k in range(3)]
        assert p[i].tolist() == pytest.approx([x / sum(w) for x in w])
    ce = 0.0
    for i in range(2):
        logz = math.log(sum(math.exp(float(v) / 0.1) for v in s[i]))
        ce += -sum(float(p[i, k]) * (float(s[i, k]) / 0.1 - logz) for k in range(3))
    assert float(dino_cross_entropy(p, s, 0.1)) == pytest.approx(ce / 2, rel=1e-5)
    assert float(entropy(torch.full((2, 4), 0.25))) == pytest.approx(math.log(4))
    assert float(entropy(torch.eye(3))) == 0.0


def test_dino_logs_entropy_and_a_nonnegative_kl():
    dino, enc = make("dino")
    out = dino(enc, pair())
    assert set(out.parts) == {"teacher_entropy", "kl"}
    assert float(out.parts["kl"]) >= -1e-6
    assert 0 <= float(out.parts["teacher_entropy"]) <= math.log(16) + 1e-6


@pytest.mark.parametrize("name", TWO_VIEW)
def test_two_view_objectives_return_the_second_view(name: str):
    objective, enc = make(name)
    assert objective.views == 2
    out = objective(enc, pair())
    # the measured embeddings: the encoder's (N, d = 6), DINO's prototype scores (N, K)
    width = objective.prototypes if name == "dino" else 6
    assert out.z.shape == out.z_pos.shape == (4, width)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    assert all(v.ndim == 0 for v in out.parts.values())
    with pytest.raises(ValueError, match="2 views"):
        objective(enc, pair()[:1])


# ---------------------------------------------------------------------------- gradients
def test_stop_gradient_blocks_the_target_branch():
    x1, x2 = (v.requires_grad_() for v in pair())
    simsiam = OBJECTIVES.build("simsiam", predictor=False)
    simsiam.setup(nn.Identity(), 5, 4, 64)
    simsiam(nn.Identity(), [x1, x2]).loss.backward()
    ref = x1.detach().clone().requires_grad_()
    (-F.cosine_similarity(ref, x2.detach(), dim=1).mean() / 2).backward()
    assert torch.allclose(x1.grad, ref.grad)  # only D(z1, sg(z2)) reaches z1
    x1.grad = None
    no_stop = OBJECTIVES.build("simsiam", predictor=False, stop_gradient=False)
    no_stop.setup(nn.Identity(), 5, 4, 64)
    no_stop(nn.Identity(), [x1, x2]).loss.backward()
    assert torch.allclose(x1.grad, 2 * ref.grad)  # both terms reach z1


@pytest.mark.parametrize(
    ("name", "frozen"),
    [("byol", ["target"]), ("dino", ["teacher", "teacher_head"]), ("moco", ["key_encoder"])],
)
def test_ema_targets_get_no_gradient_and_no_optimizer_slot(name: str, frozen: list[str]):
    objective, enc = make(name)
    objective(enc, pair()).loss.backward()
    assert all(p.grad is not None for p in enc.parameters())
    for attr in frozen:
        params = list(getattr(objective, attr).parameters())
        assert params and all(not p.requires_grad and p.grad is None for p in params)
    trainable = {id(p) for m in (enc, objective) for p in m.parameters() if p.requires_grad}
    assert not any(id(p) in trainable for a in frozen for p in getattr(objective, a).parameters())


# ---------------------------------------------------------------------------- EMA and queue
def test_ema_update_is_the_convex_combination_and_copies_buffers():
    online, target = nn.BatchNorm1d(3), nn.BatchNorm1d(3)
    with torch.no_grad():
        online.weight.fill_(2.0)
        online.running_mean.fill_(5.0)
    ema_update(target, online, 0.75)
    assert target.weight.tolist() == pytest.approx([0.75 * 1 + 0.25 * 2] * 3)
    assert target.running_mean.tolist() == [5.0] * 3
    ema_update(target, online, 0.0)
    assert torch.equal(target.weight, online.weight)
    before = target.bias.clone()
    ema_update(target, online, 1.0)
    assert torch.equal(target.bias, before)
    assert all(not p.requires_grad for p in frozen_copy(online).parameters())


def test_cosine_momentum_schedule():
    assert cosine_momentum(0.99, 0, 100) == pytest.approx(0.99)
    assert cosine_momentum(0.99, 50, 100) == pytest.approx(0.995)
    assert cosine_momentum(0.99, 100, 100) == pytest.approx(1.0)


def _step(objective, enc, opt, views, step, total):
    out = objective(enc, views)
    opt.zero_grad()
    out.loss.backward()
    opt.step()
    objective.after_step(enc, step, total)
    return out


@pytest.mark.parametrize("name", ["byol", "dino", "moco"])
def test_ema_targets_follow_the_encoder_step_by_step(name: str):
    objective, enc = make(name)
    target = {"byol": "target", "dino": "teacher", "moco": "key_encoder"}[name]
    opt = torch.optim.SGD(
        [p for m in (enc, objective) for p in m.parameters() if p.requires_grad], lr=0.5
    )
    total = 5
    for step in range(total):
        before = [p.clone() for p in getattr(objective, target).parameters()]
        _step(objective, enc, opt, pair(), step, total)
        base = {"byol": 0.99, "dino": 0.996}
        m = cosine_momentum(base[name], step, total) if name in base else 0.99
        online = enc.parameters()
        for b, t, o in zip(before, getattr(objective, target).parameters(), online, strict=True):
            assert torch.allclose(t, m * b + (1 - m) * o, atol=1e-6)


def test_dino_centre_is_an_ema_of_the_teacher_mean():
    dino, enc = make("dino")
    with torch.no_grad():
        scores = torch.cat([dino.teacher_head(dino.teacher(v)) for v in pair()])
    dino(enc, pair())
    dino.after_step(enc, 0, 10)
    assert torch.allclose(dino.center, 0.1 * scores.mean(0), atol=1e-6)
    off, enc2 = make("dino", centering=False)
    off(enc2, pair())
    off.after_step(enc2, 0, 10)
    assert torch.equal(off.center, torch.zeros(16))


def test_moco_queue_is_first_in_first_out():
    moco, enc = make("moco")  # queue 8, batch 4
    opt = torch.optim.SGD(enc.parameters(), lr=0.1)
    start = moco.queue.clone()
    keys = []
    for step in range(3):
        views = pair()
        with torch.no_grad():
            keys.append(F.normalize(moco.key_encoder(views[1]), dim=1))
        _step(moco, enc, opt, views, step, 3)
        expected_ptr = [4, 0, 4][step]
        assert moco.queue_ptr == expected_ptr
        if step == 0:
            assert torch.allclose(moco.queue[:4], keys[0]) and torch.equal(
                moco.queue[4:], start[4:]
            )
    assert torch.allclose(moco.queue[:4], keys[2])  # the oldest batch was replaced
    assert torch.allclose(moco.queue[4:], keys[1])
    assert moco.state_dict()["_extra_state"] == {"queue_ptr": 4}


def test_moco_queue_must_fit_the_batch_and_the_data():
    moco = OBJECTIVES.build("moco", queue_size=100)
    with pytest.raises(ValueError, match="multiple of the batch size"):
        moco.setup(nn.Linear(2, 2), 2, 32, 1000)
    with pytest.raises(ValueError, match="queue_size=96 at most"):
        OBJECTIVES.build("moco", queue_size=128).setup(nn.Linear(2, 2), 2, 32, 128)


# ---------------------------------------------------------------------------- config errors
BASE = {
    "data": {"name": "clusters", "n": 640, "dim": 16, "intrinsic_dim": 6, "classes": 4},
    "encoder": {"name": "mlp", "hidden": [64], "out_dim": 16, "batch_norm": True},
    "loss": {"name": "infonce"},
    "optimizer": {"name": "adam", "lr": 0.003},
    "views": {"noise": 0.3, "mask": 0.3},
    "train": {"steps": 200, "batch_size": 128},
    "log": {"every": 199, "spectrum": False},
}


def _build(overrides: list[str]) -> None:
    from collapse_cli.config import load_config
    from collapse_cli.training.build import build

    build(load_config(BASE, overrides))


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        (["loss.name=byol", "views.count=1"], ["views.count", "byol compares 2 views"]),
        (["loss.name=variance", "views.count=2"], ["views.count", "takes one view"]),
        (["loss.name=moco"], ["loss.queue_size: 4096", "queue_size=384 at most"]),
        (["loss.name=moco", "loss.queue_size=200"], ["multiple of the batch size (128)"]),
        (["encoder.name=cnn", "encoder.hidden=null"], ["hidden"]),
        (["encoder={name: cnn}"], ["cnn needs image data"]),
        (["views.scale=[2, 1]"], ["views.scale", "low <= high"]),
        (["views.blur=1"], ["views.blur: unknown key"]),
        (["loss.name=vicreg", "loss.variance_weight=-1"], ["loss.variance_weight"]),
    ],
)
def test_parts_that_do_not_fit_are_config_errors(overrides: list[str], words: list[str]):
    with pytest.raises(ConfigError) as e:
        _build(overrides)
    assert all(w in str(e.value) for w in words), str(e.value)


# ---------------------------------------------------------------------------- short runs
CONFIGS = Path(__file__).resolve().parents[1] / "configs"
COLLAPSED = {"complete collapse", "dimensional collapse"}
FAST = ["log.every=100000", "log.spectrum=false"]  # log only the first and the last step


@pytest.fixture
def one_thread():
    """These models are tiny: one thread is faster, and immune to oversubscribed CI cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run_config(tmp_path: Path, name: str, overrides: list[str]) -> dict:
    from collapse_cli import run_experiment

    _, summary = run_experiment(CONFIGS / f"{name}.yaml", FAST + overrides, runs_dir=tmp_path)
    return summary


@pytest.mark.parametrize(
    ("healthy", "ablation", "overrides"),
    [
        ("simsiam", "simsiam-no-stopgrad", ["optimizer.lr=0.003", "train.steps=400"]),
        ("byol", "byol-no-predictor", ["train.steps=500"]),
        ("vicreg", "vicreg-no-variance", []),
        ("nt-xent", "alignment", []),
    ],
)
def test_each_ablation_collapses_and_its_healthy_twin_does_not(
    tmp_path, one_thread, healthy, ablation, overrides
):
    pytest.importorskip("sklearn")
    good = run_config(tmp_path, healthy, overrides)
    bad = run_config(tmp_path, ablation, overrides)
    assert good["verdict"] == "healthy", good["verdict_reason"]
    assert bad["verdict"] in COLLAPSED, bad["verdict_reason"]
    assert good["final"]["knn_acc"] > 0.8  # chance is 0.1
    assert good["final"]["knn_acc"] > bad["final"]["knn_acc"]


def test_dino_without_centering_collapses_to_one_prototype(tmp_path, one_thread):
    pytest.importorskip("sklearn")
    good = run_config(tmp_path, "dino", ["train.steps=200"])
    bad = run_config(tmp_path, "dino-no-centering", ["train.steps=200"])
    # DINO's collapse is in the teacher's distribution (Caron et al. 2021, Fig. 7): one-hot
    # for every input (entropy -> 0) and matched by the student (KL -> 0). The encoder then
    # gets no gradient, so its own embeddings are not what collapses: its head's scores are.
    assert bad["final"]["teacher_entropy"] < 1e-3 and bad["final"]["kl"] < 1e-2
    assert good["final"]["teacher_entropy"] > 0.1 and good["final"]["kl"] > 0.1
    # Measured on the student's prototype scores, the ablation's verdict is collapse too.
    assert bad["verdict"] in COLLAPSED, bad["verdict_reason"]
    assert good["verdict"] == "healthy", good["verdict_reason"]


def test_vicreg_without_variance_reaches_knn_chance_once_embeddings_coincide(tmp_path, one_thread):
    """kNN accuracy ignores scale, so a shrinking cloud keeps it; it reaches chance only when
    the embeddings coincide bit for bit, which VICReg without its variance term gets to at
    about step 2,500 (configs/README.md, "How far kNN accuracy falls")."""
    pytest.importorskip("sklearn")
    from collapse_cli import run_experiment
    from collapse_cli.rundir import read_jsonl

    overrides = ["train.steps=3200", "log.every=100", "log.spectrum=false"]
    path, _ = run_experiment(CONFIGS / "vicreg-no-variance.yaml", overrides, runs_dir=tmp_path)
    rows = read_jsonl(path / "metrics.jsonl")
    assert rows[0]["knn_acc"] > 0.85
    # Collapsed (std_l2 < 1e-3, std_l2·√d < 0.006) but spread wider than float32's resolution:
    # the classes are still there.
    shrunk = [r for r in rows if 1e-6 < r["std_l2"] < 1e-3]
    assert shrunk and min(r["knn_acc"] for r in shrunk) > 0.3
    assert min(r["knn_acc"] for r in rows) < 0.2  # chance is 0.1
