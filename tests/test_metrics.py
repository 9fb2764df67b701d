"""Every metric against an independent NumPy float64 reference or a closed form."""

from __future__ import annotations

import math
import warnings
from collections import Counter

import numpy as np
import pytest
import torch

from collapse_cli import metrics as M
from collapse_cli.catalogue import EMBEDDING_KEYS

# The metrics compute_metrics always gives for N >= 2, from the catalogue (alpha_req needs rank
# >= 10, alignment positives).
KEYS = set(EMBEDDING_KEYS)


# ---------------------------------------------------------------------------- references
def np_unit(z: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(z, axis=1, keepdims=True)
    return np.divide(z, norms, out=np.zeros_like(z), where=norms > 0)


def np_exp_entropy(s: np.ndarray, eps: float = 0.0) -> float:
    p = s / s.sum() + eps
    p = p[p > 0]
    return float(np.exp(-(p * np.log(p)).sum()))


def np_reference(z: np.ndarray) -> dict[str, float]:
    """The metrics written out again in NumPy float64, pairs by explicit loops."""
    z = z.astype(np.float64)
    n, d = z.shape
    zc = z - z.mean(0)
    eigs = np.sort(np.linalg.eigvalsh(np.cov(z.T).reshape(d, d)))[::-1].clip(min=0)
    sv_c = np.linalg.svd(zc, compute_uv=False)
    sv = np.linalg.svd(z, compute_uv=False)
    u = np_unit(z)
    cos, gauss = [], []
    for i in range(n):
        for j in range(n):
            if i != j:
                cos.append(u[i] @ u[j])
                gauss.append(math.exp(-2.0 * ((u[i] - u[j]) ** 2).sum()))
    return {
        "variance": z.var(0, ddof=1).mean(),
        "min_eig": eigs[-1],
        "max_eig": eigs[0],
        "effective_rank": np_exp_entropy(sv_c),
        "rankme": np_exp_entropy(sv, 1e-7),
        "participation_ratio": eigs.sum() ** 2 / (eigs**2).sum(),
        "std_l2": u.std(0, ddof=1).mean(),
        "uniformity": math.log(np.mean(gauss)),
        "mean_cosine": np.mean(cos),
        "norm_mean": np.linalg.norm(z, axis=1).mean(),
        "spectrum": eigs,
    }


def centred_orthonormal(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """(n, k) orthonormal columns, each orthogonal to the all-ones vector (so Zc = Z)."""
    g = rng.standard_normal((n, k))
    return np.linalg.qr(g - g.mean(0))[0]


def with_singular_values(n: int, s: np.ndarray, seed: int = 0) -> torch.Tensor:
    """Z = U diag(s) Vᵀ with centred U: Zc has exactly the singular values s."""
    rng = np.random.default_rng(seed)
    d = len(s)
    u = centred_orthonormal(n, d, rng)
    v = np.linalg.qr(rng.standard_normal((d, d)))[0]
    return torch.from_numpy(u @ np.diag(s) @ v.T)


def sphere_uniformity(d: int) -> float:
    """-4 + log E exp(4 u·v) for u, v uniform on S^(d-1); u·v has density ∝ (1-x²)^((d-3)/2)."""
    x = np.linspace(-1, 1, 2_000_001)
    w = (1 - x**2) ** ((d - 3) / 2)
    return -4 + math.log(np.trapezoid(w * np.exp(4 * x), x) / np.trapezoid(w, x))


# ---------------------------------------------------------------------------- vs NumPy
@pytest.mark.parametrize("shape", [(60, 7), (10, 50), (2, 3), (7, 7)])
def test_every_metric_matches_numpy_reference(shape: tuple[int, int]) -> None:
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(*shape, generator=gen) * torch.linspace(0.2, 3, shape[1]) + 0.5
    z[1] = 0.0  # a zero row: normalised to the zero vector
    got, eigs = M.compute_metrics(z)
    ref = np_reference(z.numpy())
    for key in ref.keys() - {"spectrum"}:
        assert got[key] == pytest.approx(ref[key], rel=1e-7, abs=1e-9), key
    d = shape[1]
    assert eigs.shape == (d,) and eigs.dtype == torch.float64 and eigs.device.type == "cpu"
    np.testing.assert_allclose(eigs.numpy(), ref["spectrum"], rtol=1e-9, atol=1e-12)
    assert got["rank"] == np.linalg.matrix_rank((z - z.mean(0)).numpy())  # float32 rule


def test_gram_route_when_n_below_d() -> None:
    z = torch.randn(10, 50, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    eigs = M.spectrum(z)
    ref = np.sort(np.linalg.eigvalsh(np.cov(z.numpy().T)))[::-1]
    assert eigs.shape == (50,)
    np.testing.assert_allclose(eigs.numpy(), ref.clip(min=0), atol=1e-12)
    assert (eigs[9:] == 0).all()  # padded: rank(Zc) <= N - 1
    assert M.numerical_rank(eigs, 10, z.dtype) == 9


def test_standalone_functions_agree_with_compute_metrics() -> None:
    z = torch.randn(40, 6, generator=torch.Generator().manual_seed(3))
    zp = z + 0.1
    got, eigs = M.compute_metrics(z, zp)
    assert got["variance"] == pytest.approx(float(M.variance(z)), rel=1e-12)
    assert got["std_l2"] == pytest.approx(float(M.std_l2(z)), rel=1e-12)
    assert got["rankme"] == pytest.approx(M.rankme(z), rel=1e-12)
    assert got["alignment"] == pytest.approx(float(M.alignment(z, zp)), rel=1e-12)
    assert got["effective_rank"] == pytest.approx(M.effective_rank_from_spectrum(eigs))
    u, up = np_unit(z.double().numpy()), np_unit(zp.double().numpy())
    assert got["alignment"] == pytest.approx(((u - up) ** 2).sum(1).mean(), rel=1e-9)


# ---------------------------------------------------------------------------- closed forms
def test_isotropic_gaussian_closed_forms() -> None:
    n, d = 20_000, 16
    z = torch.randn(n, d, generator=torch.Generator().manual_seed(4))
    got, _ = M.compute_metrics(z)
    assert got["variance"] == pytest.approx(1.0, abs=0.02)
    assert got["rank"] == d
    assert d * 0.99 < got["effective_rank"] <= d
    assert got["participation_ratio"] == pytest.approx(d * (n - 1) / (n + d), rel=0.01)
    assert got["std_l2"] == pytest.approx(1 / math.sqrt(d), rel=0.01)
    assert abs(got["mean_cosine"]) < 0.005
    assert got["uniformity"] == pytest.approx(sphere_uniformity(d), abs=0.01)  # capped rows


@pytest.mark.parametrize("d", [16, 64])
def test_uniformity_of_the_sphere(d: int) -> None:
    exact = sphere_uniformity(d)
    # Second-order cumulant expansion of log E e^{4x}, x = u·v: 8/d − 64/(d²(d+2)).
    assert exact == pytest.approx(-4 + 8 / d - 64 / (d * d * (d + 2)), abs=2e-3)
    assert exact == pytest.approx(-4 + 8 / d, abs=70 / d**3)
    z = torch.randn(2048, d, generator=torch.Generator().manual_seed(5))
    assert float(M.uniformity(z)) == pytest.approx(exact, abs=0.01)


def test_uniformity_subsamples_evenly_spaced_rows() -> None:
    z = torch.randn(5000, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    rows = z[torch.arange(M.PAIR_CAP) * 4999 // (M.PAIR_CAP - 1)]
    assert len(set(rows.sum(1).tolist())) == M.PAIR_CAP  # distinct rows
    u = np_unit(rows.numpy())
    sq = ((u[:, None] - u[None]) ** 2).sum(-1)[np.triu_indices(M.PAIR_CAP, 1)]
    assert float(M.uniformity(z)) == pytest.approx(math.log(np.exp(-2 * sq).mean()), rel=1e-9)


@pytest.mark.parametrize("k", [1, 3, 8])
def test_k_equal_singular_values(k: int) -> None:
    z = with_singular_values(50, np.array([2.0] * k + [0.0] * (12 - k)))
    got, eigs = M.compute_metrics(z)
    assert got["rank"] == k
    assert got["effective_rank"] == pytest.approx(k, rel=1e-6)
    assert got["participation_ratio"] == pytest.approx(k, rel=1e-9)
    assert float(eigs[0]) == pytest.approx(4.0 / 49, rel=1e-9)


def test_rank_k_data() -> None:
    gen = torch.Generator().manual_seed(7)
    for k in (1, 5):
        z = torch.randn(300, k, generator=gen) @ torch.randn(k, 40, generator=gen) + 3.0
        got, eigs = M.compute_metrics(z)  # float32 product: round-off below the tolerance
        assert got["rank"] == k == np.linalg.matrix_rank((z - z.mean(0)).numpy())
        assert (eigs[k:] < 1e-9 * eigs[0]).all()
        assert got["effective_rank"] <= k + 1e-4
        assert got["participation_ratio"] <= k + 1e-6
    assert got["effective_rank"] == pytest.approx(np_reference(z.numpy())["effective_rank"])


def test_alpha_req_recovers_a_known_exponent() -> None:
    i = np.arange(1, 65)
    got, eigs = M.compute_metrics(with_singular_values(256, np.sqrt(255 * i**-1.5)))
    np.testing.assert_allclose(eigs.numpy(), i**-1.5, rtol=1e-9)
    assert got["rank"] == 64
    assert got["alpha_req"] == pytest.approx(1.5, abs=1e-8)


def test_alpha_req_needs_min_rank() -> None:
    i = np.arange(1, 17.0)
    for rank in (M.ALPHA_MIN_RANK - 1, M.ALPHA_MIN_RANK):
        s = np.where(i <= rank, i**-1.0, 0.0)
        got, _ = M.compute_metrics(with_singular_values(64, s))
        assert got["rank"] == rank
        assert ("alpha_req" in got) == (rank >= M.ALPHA_MIN_RANK)
    assert got["alpha_req"] == pytest.approx(2.0, abs=1e-8)  # σ ∝ i^-1 → λ ∝ i^-2


# ---------------------------------------------------------------------------- bounds, cones
def test_std_l2_bound() -> None:
    gen = torch.Generator().manual_seed(8)
    for n, d in [(2, 3), (5, 2), (64, 16), (300, 7)]:
        z = torch.randn(n, d, generator=gen) * torch.rand(d, generator=gen)
        assert float(M.std_l2(z)) <= math.sqrt(n / (n - 1) / d) + 1e-12
    eye = torch.eye(6)
    equal = torch.cat([eye, -eye])  # ±e_j: zero mean, every dimension the same std
    assert float(M.std_l2(equal)) == pytest.approx(math.sqrt(12 / 11 / 6), rel=1e-12)


def test_narrow_cone() -> None:
    gen = torch.Generator().manual_seed(9)
    z = torch.ones(500, 32) + 0.01 * torch.randn(500, 32, generator=gen)
    got, _ = M.compute_metrics(z)
    assert got["mean_cosine"] > 0.999
    assert got["std_l2"] < 0.01 / math.sqrt(32) * 1.1
    assert got["uniformity"] > -0.01
    assert got["rankme"] < 2  # one dominant singular value (the shared offset)
    assert got["effective_rank"] > 25  # the spread inside the cone is still isotropic


# ---------------------------------------------------------------------------- edge cases
@pytest.mark.parametrize("n", [5, 50])
def test_constant_embeddings(n: int) -> None:
    z = torch.full((n, 8), 0.1)  # 0.1 is not exact in binary: centring must still give 0
    got, eigs = M.compute_metrics(z)
    assert (eigs == 0).all()
    for key in ("variance", "min_eig", "max_eig", "effective_rank", "participation_ratio"):
        assert got[key] == 0.0, key
    assert got["rank"] == 0 and got["std_l2"] == 0.0 and "alpha_req" not in got
    assert got["mean_cosine"] == pytest.approx(1.0, abs=1e-12)
    assert got["uniformity"] == pytest.approx(0.0, abs=1e-12)
    sv = np.linalg.svd(z.double().numpy(), compute_uv=False)
    assert got["rankme"] == pytest.approx(np_exp_entropy(sv, 1e-7), rel=1e-6)
    assert got["rankme"] == pytest.approx(1.0, abs=1e-4)
    assert got["norm_mean"] == pytest.approx(0.1 * math.sqrt(8), rel=1e-6)


def test_all_zero_embeddings() -> None:
    got, eigs = M.compute_metrics(torch.zeros(20, 4), torch.zeros(20, 4))
    expected = dict.fromkeys(KEYS | {"alignment"}, 0.0)
    assert got == expected and (eigs == 0).all()


def test_single_row() -> None:
    got, eigs = M.compute_metrics(torch.tensor([[1.0, -2.0, 3.0]]))
    assert set(got) == KEYS - {"uniformity", "mean_cosine"}  # no pairs
    assert got["variance"] == got["std_l2"] == got["effective_rank"] == 0.0
    assert got["rank"] == 0 and eigs.tolist() == [0.0, 0.0, 0.0]
    assert not any(math.isnan(v) for v in got.values())


def test_non_finite_input_gives_nan_not_an_exception() -> None:
    z = torch.randn(8, 3)
    z[2, 1] = float("nan")
    got, eigs = M.compute_metrics(z)
    assert all(math.isnan(v) for v in got.values()) and eigs.isnan().all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_input_is_upcast(dtype: torch.dtype) -> None:
    z = (torch.randn(64, 8, generator=torch.Generator().manual_seed(10)) * 3).to(dtype)
    got, _ = M.compute_metrics(z)
    ref = np_reference(z.float().numpy())
    for key in ("variance", "effective_rank", "rankme", "std_l2", "uniformity", "mean_cosine"):
        assert got[key] == pytest.approx(ref[key], rel=1e-7, abs=1e-9), key
    # 8 equal singular values clear the 16-bit tolerance even after rounding to that dtype.
    flat = with_singular_values(64, np.full(8, 10.0)).to(dtype)
    assert M.compute_metrics(flat)[0]["rank"] == 8


def test_rank_tolerance_values() -> None:
    assert M.rank_tolerance(512, 128, torch.float32) == pytest.approx((512 * 2**-23) ** 2)
    assert M.rank_tolerance(512, 128, torch.float64) == pytest.approx(512 * 2**-52)
    # 16 bits: the values are float32 results rounded once; the rounding is rounding_bound's
    assert M.rank_tolerance(10, 64, torch.float16) == M.rank_tolerance(10, 64, torch.float32)
    # u² ‖Z‖_F²/(N−1), u half of eps: 2⁻¹¹ float16, 2⁻⁸ bfloat16, 2⁻²⁴ float32, 2⁻⁵³ float64
    for dtype, u in [(torch.float16, 2**-11), (torch.bfloat16, 2**-8), (torch.float32, 2**-24)]:
        assert M.rounding_bound(3.0, dtype) == 3.0 * u * u
    assert M.rounding_bound(1.0, torch.float64) == 2.0**-106


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_rank_of_low_rank_embeddings_rounded_to_16_bits(dtype: torch.dtype) -> None:
    """A rank-32 matrix of 512 × 128 rounded to 16 bits: the rounding fills the 96 empty
    directions with small eigenvalues (for bfloat16 above float32's tolerance, which counts
    them as rank); the bound on one rounding, u² ‖Z‖_F² / (N − 1), lies above all of them and
    below the 32 real ones."""
    g = torch.Generator().manual_seed(21)
    exact = (torch.randn(512, 32, generator=g) @ torch.randn(32, 128, generator=g)).double()
    exact += 3.0  # a mean far from 0, as real embeddings have: the error scales with it
    z = exact.to(dtype)
    eigs = M.spectrum(z)
    moment = float(z.double().pow(2).sum()) / 511  # ‖Z‖_F² / (N − 1), by hand
    noise = float(eigs[32])  # the largest eigenvalue that is only rounding
    tol = M.rank_threshold(eigs, 512, dtype, moment)
    assert 0 < noise < M.rounding_bound(moment, dtype) <= tol < float(eigs[31])
    assert M.compute_metrics(z)[0]["rank"] == 32
    assert M.compute_metrics(z.float(), precision=dtype)[0]["rank"] == 32
    if dtype == torch.bfloat16:  # float32's tolerance counts bfloat16's rounding as rank
        assert M.compute_metrics(z.float())[0]["rank"] > 32


def test_compute_metrics_keys_and_spectrum() -> None:
    z = torch.randn(100, 12, generator=torch.Generator().manual_seed(11))
    state = torch.get_rng_state()
    got, eigs = M.compute_metrics(z)
    assert torch.equal(state, torch.get_rng_state())  # no global RNG use
    assert set(got) == KEYS | {"alpha_req"}
    assert isinstance(got["rank"], int)
    assert all(type(v) is float for k, v in got.items() if k != "rank")
    got_pos, _ = M.compute_metrics(z, z.flip(0))
    assert set(got_pos) == set(got) | {"alignment"}
    assert eigs.shape == (12,) and (eigs >= 0).all() and (eigs[:-1] >= eigs[1:]).all()
    with pytest.raises(ValueError, match="shape"):
        M.compute_metrics(z, z[:5])
    with pytest.raises(ValueError, match=r"\(N, d\)"):
        M.compute_metrics(z[0])


# ---------------------------------------------------------------------------- not from z
def test_knn_accuracy_hand_built() -> None:
    train = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.8, 0.2], [0.0, 1.0], [0.1, 0.9]])
    labels = torch.tensor([0, 0, 0, 1, 1])
    test = torch.tensor([[1.0, 0.05], [0.05, 1.0], [0.2, 1.0], [1.0, 0.3]])
    # k=3: test 0 → {0,0,0}; test 1 → {1,1,0} → 1; test 2 → {1,1,0} → 1; test 3 → {0,0,0}.
    test_labels = torch.tensor([0, 1, 0, 0])  # test 2 is labelled wrong on purpose
    assert M.knn_accuracy(train, labels, test, test_labels, k=3) == 0.75
    # k=2 on a point equidistant from one of each class: a tie goes to the smaller label.
    tie_train, tie_labels = torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([1, 0])
    query = torch.tensor([[1.0, 1.0]])
    assert M.knn_accuracy(tie_train, tie_labels, query, torch.tensor([0]), k=2) == 1.0
    assert M.knn_accuracy(tie_train, tie_labels, query, torch.tensor([0]), k=50) == 1.0
    with pytest.raises(ValueError):
        M.knn_accuracy(train, labels, test, test_labels, k=0)


def test_knn_accuracy_of_one_point_is_the_majority_class_in_any_order() -> None:
    """Every similarity ties: the whole train set votes, whatever its order."""
    point = torch.tensor([0.3, -1.0, 2.0, 0.5])
    labels = torch.tensor([0] * 8 + [1] * 12 + [2] * 10)  # majority: class 1
    train = point.repeat(30, 1)
    test, test_labels = point.repeat(10, 1), torch.tensor([1, 1, 1, 0, 0, 2, 2, 2, 2, 2])
    for order in (torch.arange(30), torch.arange(29, -1, -1), torch.randperm(30)):
        assert M.knn_accuracy(train[order], labels[order], test, test_labels, k=5) == 0.3


def _euclidean_knn(train: torch.Tensor, labels: torch.Tensor, test: torch.Tensor, k: int):
    """Predictions of a plain loop: the k nearest by Euclidean distance, majority, ties of votes
    to the smaller label."""
    preds = []
    for q in test:
        nearest = sorted(range(len(train)), key=lambda i: float((train[i] - q).norm()))[:k]
        votes = Counter(int(labels[i]) for i in nearest)
        preds.append(min(votes, key=lambda c: (-votes[c], c)))
    return torch.tensor(preds)


def test_knn_accuracy_of_a_shrinking_cloud_reads_its_residual_until_rounding() -> None:
    """z = c + s·r: as s → 0 the unit rows tend to ĉ + (s/|c|)·P⊥r, so cosine kNN ranks
    neighbours by the Euclidean distance between the residuals' parts orthogonal to c, at any
    small s. It falls to the majority class only once s·r is below the dtype's resolution."""
    g = torch.Generator().manual_seed(5)
    means = 2 * torch.randn(3, 8, generator=g, dtype=torch.float64)
    labels = torch.arange(3).repeat_interleave(50)
    r = means[labels] + torch.randn(150, 8, generator=g, dtype=torch.float64)
    c = torch.randn(8, generator=g, dtype=torch.float64)
    c = 10 * c / c.norm()
    perp = r - (r @ c / c.dot(c)).unsqueeze(1) * c  # P⊥r
    tr, te = torch.arange(150) % 5 != 0, torch.arange(150) % 5 == 0  # 120 train, 30 test
    expected = float(
        (_euclidean_knn(perp[tr], labels[tr], perp[te], k=7) == labels[te]).double().mean()
    )
    assert expected > 0.6  # the residual separates the classes (chance 1/3)
    for s in (1e-3, 1e-6):
        z = c + s * r
        assert M.knn_accuracy(z[tr], labels[tr], z[te], labels[te], k=7) == expected
    z32 = (c + 1e-12 * r).float()  # the residual is far below float32's resolution at c
    assert torch.unique(z32, dim=0).shape[0] == 1
    test_labels = labels[te]
    majority = torch.bincount(labels[tr]).argmax()  # ties of counts: the smallest label
    at_chance = float((test_labels == majority).double().mean())
    assert M.knn_accuracy(z32[tr], labels[tr], z32[te], test_labels, k=7) == at_chance


def test_grad_norm_matches_clip_grad_norm() -> None:
    torch.manual_seed(12)
    net = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.ReLU(), torch.nn.Linear(7, 3))
    frozen = torch.nn.Parameter(torch.ones(4))  # never gets a gradient
    net(torch.randn(9, 5)).pow(2).sum().backward()
    params = [*net.parameters(), frozen]
    got = M.grad_norm(params)
    assert got.ndim == 0
    hand = math.sqrt(sum(float((p.grad.double() ** 2).sum()) for p in net.parameters()))
    assert float(got) == pytest.approx(hand, rel=1e-6)
    expected = torch.nn.utils.clip_grad_norm_(params, max_norm=float("inf"))
    assert float(got) == pytest.approx(float(expected), rel=1e-6)
    assert float(M.grad_norm([frozen])) == 0.0


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_compute_metrics_synchronises_once() -> None:
    z = torch.randn(512, 128, device="cuda")
    M.compute_metrics(z, z + 1)  # warm-up (lazy CUDA and cuSOLVER/cuBLAS initialisation)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            M.compute_metrics(z, z + 1)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert len([w for w in caught if "synchroniz" in str(w.message)]) == 1


def test_spread_below_float32_resolution_of_the_values_has_rank_zero():
    """A cloud around (1, ..., 1) whose spread (1e-7) is at float32's spacing near 1 (1.19e-7)
    is a point at that precision: its differences are round-off of the values, not directions.
    The same spread around the origin is fully resolved."""
    g = torch.Generator().manual_seed(0)
    noise = 1e-7 * torch.randn(512, 16, generator=g, dtype=torch.float64)
    far = (1.0 + noise).float()
    assert M.compute_metrics(far)[0]["rank"] == 0
    assert M.compute_metrics(noise.float())[0]["rank"] == 16


def test_recall_at_1_against_a_count_by_hand():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    p = torch.tensor([[1.0, 0.1], [1.0, 0.0], [1.0, 1.0]])
    # q0: cos(q0, p1) = 1 beats its own cos(q0, p0) = 0.995, a miss; q1: its own p1 is at
    # cos 0, beaten by p0 (0.0995) and p2 (0.707), a miss; q2: its own at cos 1, a hit.
    assert M.recall_at_1(q, p) == pytest.approx(1 / 3)
    assert M.recall_at_1(q, q) == 1.0
    assert M.recall_at_1(torch.ones(5, 3), torch.ones(5, 3)) == pytest.approx(1 / 5)  # ties: chance
    tied = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])  # q0 and q1 tie on p0 and p1
    assert M.recall_at_1(tied, tied) == pytest.approx((1 / 2 + 1 / 2 + 1) / 3)


def test_recall_at_1_is_the_share_of_rows_whose_argmax_is_their_own_when_nothing_ties():
    g = torch.Generator().manual_seed(0)
    q, p = torch.randn(64, 8, generator=g), torch.randn(64, 8, generator=g)
    p = q + 0.8 * p
    sims = torch.nn.functional.normalize(q, dim=1) @ torch.nn.functional.normalize(p, dim=1).T
    by_argmax = (sims.argmax(1) == torch.arange(64)).double().mean()
    assert M.recall_at_1(q, p) == pytest.approx(float(by_argmax))
    assert 0.1 < M.recall_at_1(q, p) < 1.0


def test_compute_metrics_reads_other_scalars_back_with_the_metrics_and_keeps_them_apart():
    z = torch.randn(50, 6, generator=torch.Generator().manual_seed(0))
    plain, eigs = M.compute_metrics(z)
    both, eigs_too = M.compute_metrics(
        z, also={"loss": torch.tensor(2.5), "lr": torch.tensor(1e-3)}
    )
    assert (
        list(both)[-2:] == ["loss", "lr"]
        and both["loss"] == 2.5
        and both["lr"] == float(torch.tensor(1e-3))
    )
    assert {k: both[k] for k in plain} == plain and torch.equal(eigs, eigs_too)
    nan = M.compute_metrics(z, also={"loss": torch.tensor(float("nan"))})[0]
    assert math.isnan(nan["loss"]) and nan["effective_rank"] == plain["effective_rank"]
    with pytest.raises(ValueError, match="rank is the name of a metric"):
        M.compute_metrics(z, also={"rank": torch.tensor(1.0)})
