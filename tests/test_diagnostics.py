"""The diagnostics on hard clouds: the rank under a large shared offset, the readings that say
what the numbers mean, dead and dominant dimensions (issue 15, points 1, 2 and 7).

Expected values come from NumPy, closed forms or the construction of each cloud, never from
the code under test."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from collapse_cli import metrics as M
from collapse_cli.inspection import inspect_embeddings
from collapse_cli.interpretation import alpha_of_noise

U32, U64 = 2.0**-24, 2.0**-53  # unit roundoff of float32 and float64


@pytest.fixture
def no_figures(monkeypatch):
    """Run folders without their figures (drawing them is not what these tests check)."""
    monkeypatch.setattr("collapse_cli.training.lifecycle._plot", lambda path, meta: None)


def _np_spectrum(z: np.ndarray) -> np.ndarray:
    """λ₁ ≥ … of the sample covariance, by NumPy in float64 (the independent computation)."""
    return np.sort(np.linalg.eigvalsh(np.cov(z.astype(np.float64), rowvar=False)))[::-1]


# ---------------------------------------------------------------------------- the rank
@pytest.mark.parametrize(
    ("offset", "dtype"), [(1e4, np.float32), (1e6, np.float64), (1e8, np.float64)]
)
def test_isotropic_spread_around_a_large_offset_has_full_rank(offset, dtype):
    """An isotropic spread of 1 around a shared offset: all 32 directions are real (NumPy's
    smallest eigenvalue is far above the bound on what rounding the values can put there,
    u²‖Z‖_F²/(N − 1) computed here by hand), and the rank counts all of them."""
    rng = np.random.default_rng(0)
    z = (rng.standard_normal((500, 32)) + offset).astype(dtype)
    u = U32 if dtype == np.float32 else U64
    bound = u * u * float((z.astype(np.float64) ** 2).sum()) / 499
    lam = _np_spectrum(z)
    assert lam[-1] > 1e3 * bound  # every direction is real
    got, _ = M.compute_metrics(torch.from_numpy(z))
    assert got["rank"] == 32
    assert got["max_eig"] == pytest.approx(lam[0], rel=1e-6)


def test_identical_rows_plus_tiny_noise_in_float64_have_full_rank():
    """300 copies of one row plus noise of 1e-6 (float64): the noise spans all 32 directions,
    far above float64's rounding of the rows (u ‖z‖ ≈ 1e-15)."""
    rng = np.random.default_rng(1)
    z = np.tile(rng.standard_normal((1, 32)), (300, 1)) + 1e-6 * rng.standard_normal((300, 32))
    lam = _np_spectrum(z)
    assert lam[-1] > 1e-13  # the 32nd direction: noise of 1e-6 squared, times MP's lower edge
    got, _ = M.compute_metrics(torch.from_numpy(z))
    assert got["rank"] == 32


def test_rounding_stays_below_the_bound_even_when_chosen_to_be_worst():
    """The derivation of `rounding_bound`: exact rank-4 data around an offset, each entry then
    moved by u|z_ij| with signs s_i t_j (the rank-one pattern that puts the most error into one
    direction). The eigenvalues past 4 are only that error, and stay below u²‖Z‖_F²/(N − 1),
    with the worst case within a small factor of it (the bound is tight)."""
    rng = np.random.default_rng(2)
    n, d, u = 400, 16, U32
    exact = rng.standard_normal((n, 4)) @ rng.standard_normal((4, d)) + 50.0
    signs = np.sign(rng.standard_normal(n))[:, None] * np.sign(rng.standard_normal(d))[None]
    stored = exact + u * np.abs(exact) * signs  # |E_ij| = u|z_ij| exactly
    bound = M.rounding_bound(float((exact**2).sum()) / (n - 1), torch.float32)
    lam = _np_spectrum(stored)
    assert lam[4] < bound < 4 * lam[4] and lam[3] > 1e6 * bound
    got, _ = M.compute_metrics(torch.from_numpy(stored), precision=torch.float32)
    assert got["rank"] == 4


def test_the_rank_threshold_terms():
    """τ = max(u²‖Z‖_F²/(N − 1), λ₁ · max((max(N, d) eps)², max(N, d) eps_f64)), by hand."""
    eigs = torch.tensor([2.0, 1.0, 0.5], dtype=torch.float64)
    m = 100  # max(N, d)
    fp32 = 2.0 * max((m * 2.0**-23) ** 2, m * 2.0**-52)
    assert M.rank_threshold(eigs, 100, torch.float32, 1e-3) == pytest.approx(fp32)
    big = 1e9  # a large offset: the rounding term wins
    assert M.rank_threshold(eigs, 100, torch.float32, big) == pytest.approx(U32**2 * big)
    # Without the second moment the data are taken as centred: ‖Zc‖_F²/(N − 1) = Σλ = 3.5.
    assert M.rank_threshold(eigs, 100, torch.bfloat16) == pytest.approx(max(2.0**-16 * 3.5, fp32))


def test_a_rank_of_zero_never_stands_beside_a_resolved_eigenvalue():
    """rank 0 ⇔ every eigenvalue is at most the threshold, on clouds from a point to a wide
    spread around a distant centre, in both precisions."""
    g = torch.Generator().manual_seed(3)
    roundoff = 0  # clouds read rank 0 with λ₁ > 0: their readings are checked
    for dtype in (torch.float32, torch.float64):
        for spread in (0.0, 1e-16, 1e-12, 1e-9, 1e-8, 1e-7, 1e-5, 1.0):
            z = (1.0 + spread * torch.randn(200, 8, generator=g, dtype=torch.float64)).to(dtype)
            got, eigs = M.compute_metrics(z)
            moment = float(z.double().pow(2).sum()) / 199
            tol = M.rank_threshold(eigs, 200, dtype, moment)
            assert (got["rank"] == 0) == (got["max_eig"] <= tol), (dtype, spread)
            if got["rank"] == 0 and got["max_eig"] > 0:  # read as round-off, never as spread
                roundoff += 1
                report = inspect_embeddings(z)
                assert report.readings["min_eig"].startswith("every eigenvalue is round-off")
                assert report.readings["max_eig"].startswith("round-off")
                assert report.readings["rank"].startswith("a point at this precision")
    assert roundoff >= 3


# ---------------------------------------------------------------------------- uniformity
@pytest.mark.parametrize("offset", [0.0, 0.1, 1e4, 1e8])
def test_uniformity_is_exactly_zero_when_all_rows_coincide(offset):
    row = torch.randn(1, 24, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    z = (row + offset).repeat(300, 1)
    got, _ = M.compute_metrics(z)
    assert got["uniformity"] == 0.0 and math.copysign(1.0, got["uniformity"]) == 1.0
    assert float(M.uniformity(z.float())) == 0.0


def test_uniformity_is_never_positive_on_a_tight_cone():
    z = 1e8 + torch.randn(500, 16, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    assert M.compute_metrics(z)[0]["uniformity"] <= 0.0


# ---------------------------------------------------------------------------- α of noise
@pytest.mark.parametrize(("n", "d"), [(64, 64), (128, 64), (256, 64), (1024, 64), (32, 128)])
def test_alpha_of_white_noise_follows_marchenko_pastur(n, d):
    """The Marchenko–Pastur prediction against α-ReQ measured on Gaussian samples (the mean
    over 4 draws; the sample-to-sample spread is a few hundredths)."""
    g = torch.Generator().manual_seed(6)
    draws = [M.compute_metrics(torch.randn(n, d, generator=g))[0]["alpha_req"] for _ in range(4)]
    assert alpha_of_noise(n, d) == pytest.approx(np.mean(draws), abs=0.04)


def test_alpha_of_noise_limits():
    # N ≫ d: the sample spectrum of white noise is flat, α → 0; N = d: MP reaches 0, α > 1.
    assert alpha_of_noise(10**6, 16) < 0.02
    assert alpha_of_noise(65, 64) > 1.2


def test_gaussian_noise_is_not_called_good_ssl_features():
    for n, d in [(128, 64), (256, 64)]:  # N/d = 2 and 4: α ≈ 0.76 and 0.51
        z = torch.randn(n, d, generator=torch.Generator().manual_seed(7))
        text = inspect_embeddings(z).readings["alpha_req"]
        assert "white noise" in text and "good SSL" not in text
    # A real power law well above the noise of its shape keeps the paper's reading.
    i = np.arange(1, 65)
    q, _ = np.linalg.qr(np.random.default_rng(8).standard_normal((4096, 64)))
    z = torch.from_numpy(q * np.sqrt(4095 * i**-1.0))  # λ_i ∝ i^-1 exactly, N/d = 64
    text = inspect_embeddings(z).readings["alpha_req"]
    assert text.startswith("decay near α ≈ 1, typical of good SSL features")


# ---------------------------------------------------------------------------- readings
def test_the_offset_cone_reads_as_a_cone_with_its_spread_intact():
    """Spread 1 around an offset of 1e4 (float32): the normalised rows coincide (std_l2 tiny)
    but the centred cloud is whole; nothing calls it a point or says its eigenvalues are 0."""
    rng = np.random.default_rng(9)
    z = torch.from_numpy((rng.standard_normal((500, 32)) + 1e4).astype(np.float32))
    report = inspect_embeddings(z)
    r = report.readings
    assert report.metrics["rank"] == 32 and r["rank"] == "32 of 32 attainable"
    assert r["min_eig"].startswith("full rank")
    assert "offset cone" in r["norm_mean"] and "spread is intact" in r["norm_mean"]
    assert "spread is intact" in r["std_l2"]
    assert "offset cone, not a point" in report.reason and "span 32 directions" in report.reason
    assert not any(text == "a point" or "are 0" in text for text in r.values())


def test_one_point_plus_noise_of_no_resolution_is_not_a_cone():
    """The same shape with the spread below float32's rounding of the offset: rank 0, and the
    readings say round-off, not cone."""
    rng = np.random.default_rng(10)
    z = torch.from_numpy((rng.standard_normal((500, 32)) * 1e-3 + 1e4).astype(np.float32))
    report = inspect_embeddings(z)
    assert report.metrics["rank"] == 0 and "offset cone" not in report.reason
    assert "offset cone" not in report.readings["norm_mean"]
    assert report.readings["rank"].startswith("a point at this precision")


def test_rankme_of_a_single_repeated_point():
    z = torch.randn(1, 16, generator=torch.Generator().manual_seed(11)).repeat(100, 1)
    report = inspect_embeddings(z)
    assert report.metrics["rankme"] == pytest.approx(1.0, abs=1e-4)
    assert report.readings["rankme"].startswith("≈ 1: the rows are multiples of one vector")
    assert "line" not in report.readings["rankme"]
    zero = inspect_embeddings(torch.zeros(10, 4))
    assert zero.readings["rankme"] == "0: every row is the zero vector"


def test_norm_mean_readings():
    g = torch.Generator().manual_seed(12)
    centred = inspect_embeddings(torch.randn(400, 16, generator=g)).readings["norm_mean"]
    assert centred.endswith("the rows spread around the origin (their mean is near 0)")
    shifted = inspect_embeddings(torch.randn(400, 16, generator=g) + 1.0).readings["norm_mean"]
    assert shifted.endswith("the rows share an offset (a cone)")
    point = inspect_embeddings(torch.full((50, 4), 3.0)).readings["norm_mean"]
    assert point == "every row is the same point, at distance 6 from the origin"  # 3 · √4


def test_knn_collapsed_is_the_held_out_share_of_the_training_majority():
    train = torch.tensor([0, 0, 0, 1, 1])  # majority 0
    test = torch.tensor([1, 1, 0])  # majority 1 (2/3); class 0 holds 1/3
    assert M.knn_collapsed(train, test) == pytest.approx(1 / 3)
    assert M.knn_chance(test) == pytest.approx(2 / 3)
    # and it is what knn_accuracy scores on a cloud collapsed to one point
    z = torch.ones(5, 3)
    assert M.knn_accuracy(z, train, torch.ones(3, 3), test, k=2) == pytest.approx(1 / 3)


def test_a_collapsed_cloud_with_labels_shows_both_chance_levels():
    """Labels whose held-out majority is not the training majority: one point scores the
    held-out share of the training majority, below chance; the reading names both and says
    'at chance'."""
    from collapse_cli.data import split

    n = 500
    labels = torch.zeros(n, dtype=torch.long)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(0))  # split's order
    test_rows, train_rows = perm[: round(0.2 * n)], perm[round(0.2 * n) :]
    labels[test_rows[:60]] = 1  # held out: 60 of 100 in class 1
    labels[train_rows[:150]] = 1  # training: 150 of 400 in class 1, so class 0 is its majority
    z = torch.ones(n, 8)
    part = split(z, labels, 0.2, 0)
    assert torch.equal(part.labels_test.sort().values, labels[test_rows].sort().values)
    report = inspect_embeddings(z, labels)
    assert report.knn["chance"] == pytest.approx(0.6) and report.knn["collapsed"] == 0.4
    assert report.metrics["knn_acc"] == pytest.approx(0.4)  # class 0's held-out share
    text = report.readings["knn_acc"]
    assert "chance 0.60" in text and "one point (collapsed) scores 0.40" in text
    assert text.endswith("at chance")


def test_the_verdict_line_wraps_to_the_table_width_in_a_pipe(cli, tmp_path):
    rng = np.random.default_rng(13)
    src = tmp_path / "cone.npy"
    np.save(src, (rng.standard_normal((500, 32)) + 1e4).astype(np.float32))
    out = cli("inspect", src).output.splitlines()
    table = [line for line in out if line.startswith(("┏", "└"))]
    width = len(table[0])
    assert width > 80 and all(len(line) == width for line in table)
    verdict = next(i for i, line in enumerate(out) if line.startswith("verdict:"))
    assert all(len(line) <= width for line in out[verdict:])
    assert len(out[verdict]) > 80  # not cut at Rich's default 80 columns


# ---------------------------------------------------------------------------- dimensions
def test_dead_axes_are_found_by_index_and_the_dominant_share_matches_numpy():
    """Axes 2 and 5 constant (5 at a large value), axis 7 with a variance of 1e-30 of the
    others (as real models have: all-MiniLM-L6-v2 has three such axes): dead. Axis 0 weak
    (variance 1e-6 of the others) but real: alive."""
    rng = np.random.default_rng(14)
    z = rng.standard_normal((300, 10)) * np.array([1e-3] + [1.0] * 8 + [3.0])
    z[:, 2], z[:, 5] = 0.25, 1e3
    z[:, 7] = 1.0 + 1e-15 * rng.standard_normal(300)  # below float64's rounding of 1.0
    got, _ = M.compute_metrics(torch.from_numpy(z))
    dims = M.dimensions(torch.from_numpy(z), got["max_eig"])
    assert dims["dead"] == [2, 5, 7]
    lam = _np_spectrum(z)
    assert dims["dominant_share"] == pytest.approx(lam[0] / lam.sum(), rel=1e-9)
    var = z.var(0, ddof=1)
    assert dims["top_axis"] == 9 and dims["top_axis_share"] == pytest.approx(var[9] / var.sum())
    assert got["rank"] == 7  # the rank does not count the three dead axes either


def test_a_point_has_every_axis_dead_and_a_healthy_cloud_none():
    point = torch.full((20, 6), 2.0)
    assert M.dimensions(point, 0.0)["dead"] == list(range(6))
    assert M.dimensions(point, 0.0)["dominant_share"] is None
    cloud = torch.randn(200, 6, generator=torch.Generator().manual_seed(15))
    assert M.dimensions(cloud, M.compute_metrics(cloud)[0]["max_eig"])["dead"] == []


def test_the_run_summary_names_dead_dimensions(tmp_path, no_figures):
    from collapse_cli import Monitor

    g = torch.Generator().manual_seed(16)
    with Monitor(tmp_path, name="dead", every=1) as monitor:
        for step in range(2):
            z = torch.randn(64, 8, generator=g)
            z[:, 3] = 0.5  # one axis carries nothing
            monitor.log(step, z)
    dims = monitor.summary["dimensions"]
    assert dims["dead"] == [3]
    lam = _np_spectrum(z.double().numpy())
    assert dims["dominant_share"] == pytest.approx(lam[0] / lam.sum(), rel=1e-9)
    import json

    saved = json.loads((monitor.path / "summary.json").read_text())
    assert saved["dimensions"]["dead"] == [3]


def test_the_run_summary_holds_the_collapsed_knn_score(tmp_path, no_figures):
    """Labelled data through a Monitor: knn_collapsed is the held-out share of the training
    majority of the seeded split, recomputed here from the split itself."""
    from collapse_cli import Monitor
    from collapse_cli.data import split

    g = torch.Generator().manual_seed(17)
    z, y = torch.randn(200, 4, generator=g), torch.randint(0, 3, (200,), generator=g)
    with Monitor(tmp_path, name="knn", every=1) as monitor:
        monitor.log(0, z, labels=y)
    part = split(z, y, 0.2, 0)
    majority = int(torch.bincount(part.labels).argmax())
    expected = float((part.labels_test == majority).double().mean())
    assert monitor.summary["knn_collapsed"] == pytest.approx(expected)
    assert monitor.summary["knn_collapsed"] <= monitor.summary["knn_chance"]


def test_compare_shows_the_round_off_lambda_1_of_a_rank_0_run_as_0(tmp_path, no_figures):
    """A cloud whose spread (1e-9 around 1) is below float32's resolution: rank 0 with a
    positive λ₁ in metrics.jsonl, which compare shows as 0 (rank 0/8), never beside rank 0."""
    from collapse_cli import Monitor
    from collapse_cli.reading.compare import compare_runs

    g = torch.Generator().manual_seed(18)
    paths = []
    for name, spread in [("roundoff", 1e-9), ("spread", 1.0)]:
        with Monitor(tmp_path, name=name, every=1) as monitor:
            z = (1.0 + spread * torch.randn(100, 8, generator=g, dtype=torch.float64)).float()
            monitor.log(0, z)
        paths.append(monitor.path)
    final = monitor.summary["final"]
    assert final["rank"] == 8 and final["max_eig"] > 0
    result = compare_runs(paths, figures=False)
    row = next(r for r in result.rows if r.metric == "max_eig" and r.stat == "final")
    assert row.texts[0] == "0 (rank 0/8)" and row.values[0] == 0.0
    assert row.texts[1] is None and row.values[1] == pytest.approx(final["max_eig"])
