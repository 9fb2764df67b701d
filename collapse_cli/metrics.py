"""Collapse metrics: pure functions of an (N, d) embedding tensor, no I/O.

Definitions, collapsed and healthy values and sources are in docs/metrics.md.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator

import torch

RANKME_EPS = 1e-7  # ε of RankMe (Garrido et al. 2023)
UNIFORMITY_T = 2.0  # t of the uniformity loss (Wang and Isola 2020)
PAIR_CAP = 2048  # pairwise (O(N²)) metrics use at most this many evenly spaced rows
ALPHA_FIT_START = 2  # α-ReQ fit: first 1-based eigenvalue index (λ₁ is skipped) ...
ALPHA_FIT_END = 0.9  # ... last index ⌊0.9 · rank⌋ (the finite-sample tail is skipped)
ALPHA_MIN_RANK = 10  # below this rank the fit has fewer than 8 points: alpha_req is absent


# ---------------------------------------------------------------------------- helpers
def _f64(z: torch.Tensor) -> torch.Tensor:
    if z.ndim != 2 or z.shape[0] < 1 or z.shape[1] < 1:
        raise ValueError(f"embeddings must be (N, d) with N, d >= 1, got {tuple(z.shape)}")
    return z.detach().to(torch.float64)


def _centre(z64: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(Zc, column mean). Shift by the first row before removing the mean: a constant column
    becomes exactly 0 (no round-off variance for a collapsed batch) and a large mean costs no
    precision."""
    y = z64 - z64[:1]
    shift = y.sum(0) / y.shape[0]  # (d,): the mean of y
    return y.sub_(shift), z64[0] + shift  # (N, d), (d,)


def _centred(z64: torch.Tensor) -> torch.Tensor:
    return _centre(z64)[0]  # (N, d)


def _unit_rows(z64: torch.Tensor, norm: torch.Tensor | None = None) -> torch.Tensor:
    """Rows scaled to unit L2 norm; an all-zero row stays the zero vector (it is divided by ∞).
    ``norm`` (N,) are the row norms when already computed."""
    if norm is None:
        norm = torch.linalg.vector_norm(z64, dim=1)
    return z64 / norm.masked_fill(norm == 0, math.inf).unsqueeze(1)  # (N, d)


SYRK_BLOCK = 512  # CPU: aᵀa is built from column blocks this wide when a has more columns


def _syrk(a: torch.Tensor) -> torch.Tensor:
    """aᵀa for an (m, k) matrix, exactly symmetric. On the CPU with k > SYRK_BLOCK only the
    blocks on and above the diagonal are multiplied and the rest mirrored (what BLAS's SYRK
    does, which torch does not expose): (b+1)/(2b) of a GEMM's flops for b blocks, the same dot
    products. On a GPU one GEMM is faster than a loop of smaller ones."""
    k = a.shape[1]
    if a.device.type != "cpu" or k <= SYRK_BLOCK:
        return a.T @ a
    out = a.new_empty(k, k)
    for i in range(0, k, SYRK_BLOCK):
        j = min(i + SYRK_BLOCK, k)
        row = a[:, i:j].T @ a[:, i:]  # (j−i, k−i): block row i, from the diagonal rightwards
        out[i:j, i:] = row
        out[j:, i:j] = row[:, j - i :].T
    return out


def _products(z64: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(C, G) from ONE matrix product, m = min(N, d):

    C (m, m) = Zcᵀ Zc / (N−1), or the Gram Zc Zcᵀ / (N−1) when N < d (same nonzero eigenvalues,
    smaller matrix); N − 1 becomes 1 when N == 1 (then Zc = 0).
    G (m, m) = Zᵀ Z, or Z Zᵀ when N < d: its eigenvalues are σ_k(Z)², for rankme. Derived from
    the centred product with Z = Zc + 1 μᵀ (1ᵀZc = 0): ZᵀZ = ZcᵀZc + N μμᵀ, ZZᵀ = ZcZcᵀ +
    v1ᵀ + 1vᵀ + ‖μ‖² 11ᵀ with v = Zc μ. The mean's terms are added to the centred product,
    never subtracted from the larger uncentred one (C = (ZᵀZ − N μμᵀ)/(N−1) cancels
    catastrophically when the mean is large), so C is formed as it always was and G differs
    from a product of Z itself by float64 round-off, about ‖ZᵀZ‖ · 1e-16.
    """
    n, d = z64.shape
    zc, mean = _centre(z64)
    if n >= d:
        prod = _syrk(zc)  # (d, d)
        gram = prod + n * torch.outer(mean, mean)
    else:
        prod = _syrk(zc.T)  # (N, N)
        v = zc @ mean  # (N,)
        gram = prod + (v.unsqueeze(1) + v.unsqueeze(0)) + mean.dot(mean)
    return prod / max(n - 1, 1), gram


DEVICE_EIG_MIN = 1024  # on a GPU, matrices of at least this size are decomposed there


def _eig_on_device(mat: torch.Tensor) -> bool:
    """Decompose on the tensor's own device? Always on the CPU; on a GPU from DEVICE_EIG_MIN on.

    torch.linalg.eigvalsh on CUDA reads its error flag back to the host (one synchronisation
    per call, whatever the size), and cuSOLVER is latency-bound on small matrices, while moving
    a (m, m) float64 matrix to the host is cheap for small m. Large m: the GPU wins by far.
    """
    return mat.device.type == "cpu" or mat.shape[-1] >= DEVICE_EIG_MIN


def _eigvalsh(mats: torch.Tensor) -> torch.Tensor:
    """Ascending eigenvalues of a (…, m, m) stack of symmetric matrices on their device, in
    one call; a non-finite matrix (a diverged step) gives NaN eigenvalues, not an exception,
    and no host synchronisation is spent on checking it."""
    finite = torch.isfinite(mats).flatten(-2).all(-1, keepdim=True)  # (…, 1)
    with _one_thread(mats):
        if mats.device.type == "cpu" and bool(finite.all()):  # the usual case: no copy
            return torch.linalg.eigvalsh(mats)
        eigs = torch.linalg.eigvalsh(torch.where(finite.unsqueeze(-1), mats, 0.0))
    return torch.where(finite, eigs, math.nan)


SINGLE_THREAD_MAX = 256  # CPU decompositions of matrices up to this size use one thread


@contextlib.contextmanager
def _one_thread(mats: torch.Tensor) -> Iterator[None]:
    """One intra-op thread for a small CPU decomposition. It costs nothing on an idle machine
    (0.6 ms at m = 128 either way), while on a busy one LAPACK's threads wait for each other:
    a 128 × 128 eigvalsh was measured at 0.6 ms on one thread and up to 1.1 s on two."""
    if mats.device.type != "cpu" or mats.shape[-1] > SINGLE_THREAD_MAX:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _desc(eigs: torch.Tensor, size: int) -> torch.Tensor:
    """Ascending (m,) eigenvalues → descending, clamped at 0, zero-padded to ``size``."""
    eigs = eigs.flip(0).clamp_min(0.0)  # NaN stays NaN
    return torch.cat([eigs, eigs.new_zeros(size - eigs.numel())])


def _eigvalsh_desc(mat: torch.Tensor, size: int) -> torch.Tensor:
    """Eigenvalues of a symmetric matrix, descending, clamped at 0, zero-padded to ``size``,
    float64 on the CPU; NaN throughout when the matrix is not finite (a diverged step)."""
    mat = mat.to(torch.float64)
    if not _eig_on_device(mat):
        mat = mat.cpu()
    return _desc(_eigvalsh(mat).cpu(), size)


def _exp_entropy(s: torch.Tensor, eps: float = 0.0) -> float:
    """exp(−Σ p log p) with p = s / Σs + eps; 0 log 0 = 0; 0 when Σs == 0."""
    total = float(s.sum())
    if not total > 0:
        return 0.0 if total == 0 else math.nan
    p = s / total + eps
    return math.exp(float(-torch.special.xlogy(p, p).sum()))


# ---------------------------------------------------------------------------- spectrum
@torch.no_grad()
def spectrum(z: torch.Tensor) -> torch.Tensor:
    """λ₁ ≥ … ≥ λ_d ≥ 0, the eigenvalues of C = Zcᵀ Zc / (N−1): (d,) float64 on the CPU.

    The product is formed on z's device and decomposed there too, except on a GPU below
    DEVICE_EIG_MIN, where the small matrix is decomposed on the CPU. When N < d the N×N Gram is
    decomposed and the spectrum padded with zeros (rank(Zc) ≤ N − 1).
    """
    z64 = _f64(z)
    return _eigvalsh_desc(_products(z64)[0], z64.shape[1])


def rank_tolerance(n: int, d: int, dtype: torch.dtype = torch.float32) -> float:
    """Relative eigenvalue tolerance of `numerical_rank`: λ_i counts when λ_i > λ₁ · rtol.

    Embeddings computed in ``dtype`` (float32, float64):

    rtol = max((max(N, d) · eps)², max(N, d) · eps_f64),   eps = machine epsilon of ``dtype``.

    The first term is numpy.linalg.matrix_rank's default (σ_i > σ₁ · max(N, d) · eps) on the
    singular values of Zc, squared because λ ∝ σ²; the second is the same rule for the float64
    matrix C itself, the resolution of its decomposition (it only matters for float64 input).
    float32, N = 512, d = 128: rtol = 3.7e-9.

    16-bit ``dtype`` (float16, bfloat16: autocast outputs, half-precision files): the values are
    taken as wider results rounded once to 16 bits, which moves each entry by at most u·|z|,
    u = eps/2. The rounding error E then has ‖E‖₂ ≤ ‖E‖_F ≤ u·‖Z‖_F ≤ u·√min(N, d)·σ₁(Z), and
    no singular value of Zc moves by more (Weyl), so

    rtol = max(u² · min(N, d), float32's rtol),

    relative to σ₁(Z)²/(N−1). bfloat16, N = 512, d = 128: 1.95e-3; float16: 3.0e-5. (The
    matrix_rank rule would reach 1, rank 0, at max(N, d) = 128 for bfloat16.)
    """
    if torch.finfo(dtype).bits <= 16:
        u = torch.finfo(dtype).eps / 2
        return max(u * u * min(n, d), rank_tolerance(n, d, torch.float32))
    m = max(n, d)
    return max((m * torch.finfo(dtype).eps) ** 2, m * torch.finfo(torch.float64).eps)


def numerical_rank(
    eigs: torch.Tensor, n: int, dtype: torch.dtype = torch.float32, scale: float | None = None
) -> int:
    """#{i : λ_i > s · rank_tolerance(N, d, dtype)} for a descending spectrum, s = ``scale`` or
    λ₁; 0 when s == 0. `compute_metrics` passes s = σ₁(Z)² / (N − 1), the largest eigenvalue of
    the *uncentred* second moment: Z's rounding error scales with Z, mean included, so a cloud
    that has shrunk around a distant point loses rank instead of counting round-off as rank.

    Collapsed: 0 (a point) or 1 (a line). Healthy: up to min(d, N − 1).
    """
    tol = (float(eigs[0]) if scale is None else scale) * rank_tolerance(n, eigs.numel(), dtype)
    return int((eigs > tol).sum())


def effective_rank_from_spectrum(eigs: torch.Tensor) -> float:
    """exp(−Σ p_i log p_i), p_i = σ_i / Σ σ_j over the singular values σ_i = √((N−1) λ_i) of Zc
    (the factor N − 1 cancels). Roy and Vetterli 2007. Zero singular values contribute 0.
    Collapsed → 1 (one direction left; 0 for a zero spectrum). Healthy → the rank; k equal
    singular values give exactly k.
    """
    return _exp_entropy(eigs.clamp_min(0.0).sqrt())


def participation_ratio_from_spectrum(eigs: torch.Tensor) -> float:
    """(Σλ)² / Σλ². Collapsed → 1 (0 for a zero spectrum); k equal eigenvalues give k;
    isotropic Gaussian data: ≈ d (N−1) / (N + d). (Gao et al. 2017.)"""
    top = float(eigs[0])
    if not top > 0:
        return 0.0 if top == 0 else math.nan
    e = eigs / top  # scale first so that Σλ² cannot underflow
    return float(e.sum() ** 2 / (e**2).sum())


def alpha_req_from_spectrum(eigs: torch.Tensor, rank: int) -> float | None:
    """α of λ_i ∝ i^(−α): minus the least-squares slope of log λ_i on log i (Agrawal et al.
    2022, α-ReQ), over 1-based i = ALPHA_FIT_START … ⌊ALPHA_FIT_END · rank⌋.

    λ₁ is skipped because one dominant direction (a shared offset of all embeddings) often sits
    above the power law; the last 10 % of the attainable rank is skipped because the smallest
    sample eigenvalues are pushed down by finite N (Marchenko–Pastur) and by round-off. Only
    eigenvalues above the rank tolerance enter, so log λ is finite. None (the key is absent)
    when rank < ALPHA_MIN_RANK, i.e. fewer than 8 points. Collapse: α grows (fast decay);
    a flat, whitened spectrum gives α ≈ 0; the paper finds well-generalising SSL features
    near α ≈ 1.
    """
    if rank < ALPHA_MIN_RANK:
        return None
    end = int(ALPHA_FIT_END * rank + 1e-9)  # ⌊0.9 · rank⌋, safe from 0.9·r = 8.999…
    i = torch.arange(ALPHA_FIT_START, end + 1, dtype=torch.float64)
    x, y = i.log(), eigs[ALPHA_FIT_START - 1 : end].log()
    x, y = x - x.mean(), y - y.mean()
    return float(-(x * y).sum() / (x * x).sum())


@torch.no_grad()
def rankme(z: torch.Tensor) -> float:
    """RankMe (Garrido et al. 2023): exp(−Σ_k p_k log p_k), p_k = σ_k / ‖σ‖₁ + ε, ε = 1e-7,
    over the min(N, d) singular values of the UNCENTRED Z.

    Needs its own decomposition (Z, not Zc): the eigenvalues σ_k² of the smaller Gram, ZᵀZ
    (d×d) or ZZᵀ (N×N), derived on z's device from the covariance's product (see `_products`).
    Collapsed → 1 (a repeated point; 0 for all-zero Z). Healthy → min(N, d).
    """
    return _rankme_from_gram(_products(_f64(z))[1])


def _rankme_from_gram(gram: torch.Tensor) -> float:
    return _rankme_from_eigs(_eigvalsh_desc(gram, gram.shape[0]))


def _rankme_from_eigs(eigs: torch.Tensor) -> float:
    return _exp_entropy(eigs.sqrt(), RANKME_EPS)


# ---------------------------------------------------------------------------- on z's device
# Each returns a 0-dim float64 tensor on z's device (no host synchronisation).
@torch.no_grad()
def variance(z: torch.Tensor) -> torch.Tensor:
    """(1/d) Σ_j (1/(N−1)) Σ_i (z_ij − z̄_j)² = tr(C) / d, the article's z.var(0).mean().
    Collapsed → 0. Healthy: the data's scale (1 for standardised data). 0 when N == 1."""
    z64 = _f64(z)
    return _centred(z64).pow(2).sum(0).mean() / max(z64.shape[0] - 1, 1)


@torch.no_grad()
def std_l2(z: torch.Tensor) -> torch.Tensor:
    """(1/d) Σ_j std_i(u_ij), u = rows of Z scaled to unit norm, std unbiased (SimSiam, Chen
    and He 2021). Collapsed → 0. Healthy ≈ 1/√d. Bound: ≤ √(N/(N−1)) / √d, with equality when
    every dimension has the same std and the u have zero mean. 0 when N == 1."""
    return _std_l2_of_unit(_unit_rows(_f64(z)))


def _std_l2_of_unit(u: torch.Tensor) -> torch.Tensor:
    return (_centred(u).pow(2).sum(0) / max(u.shape[0] - 1, 1)).sqrt().mean()


def _pair_rows(z64: torch.Tensor, cap: int) -> torch.Tensor:
    n = z64.shape[0]
    if n <= cap:
        return z64
    # Evenly spaced rows i·(N−1)//(cap−1): deterministic, no RNG, spans the whole batch.
    idx = torch.arange(cap, device=z64.device) * (n - 1) // (cap - 1)
    return z64[idx]


@torch.no_grad()
def uniformity(
    z: torch.Tensor, t: float = UNIFORMITY_T, cap: int = PAIR_CAP
) -> torch.Tensor | None:
    """log mean_{i<j} exp(−t ‖u_i − u_j‖²), u = unit rows, t = 2 (Wang and Isola 2020), over at
    most ``cap`` evenly spaced rows. Collapsed → 0. Healthy (uniform on the sphere) ≈
    −4 + 8/d − 64/(d²(d+2)), → −4 for large d. None when N < 2 (no pairs)."""
    return _uniformity_of_unit(_unit_rows(_pair_rows(_f64(z), cap)), t)


def _uniformity_of_unit(u: torch.Tensor, t: float = UNIFORMITY_T) -> torch.Tensor | None:
    """The uniformity of unit rows u (M, d) from their Gram matrix g = u uᵀ (one matrix product
    instead of M²/2 explicit differences): ‖u_i − u_j‖² = g_ii + g_jj − 2 g_ij, so
    exp(−t ‖u_i − u_j‖²) = a_i a_j exp(2t g_ij) with a_i = exp(−t g_ii). The sum over i ≠ j is
    aᵀ E a minus its diagonal (each term 1: ‖u_i − u_i‖² = 0); by symmetry its mean is the mean
    over i < j. exp(2t g) ≤ e⁴ for unit rows: no overflow."""
    m = u.shape[0]
    if m < 2:
        return None
    g = _syrk(u.T)  # (M, M)
    a = g.diagonal().mul(-t).exp()  # (M,)
    e = g.mul_(2 * t).exp_()  # (M, M), in place: g is not needed any more
    total = a @ (e @ a) - (a * a * e.diagonal()).sum()
    return (total / (m * (m - 1))).log()


@torch.no_grad()
def mean_cosine(z: torch.Tensor) -> torch.Tensor | None:
    """mean_{i≠j} u_i·u_j = (‖Σ_i u_i‖² − Σ_i ‖u_i‖²) / (N(N−1)), exact in O(N·d), no
    subsampling, clamped to [−1, 1] against round-off. A zero row has cosine 0 with everything.
    Collapsed → 1. Healthy ≈ 0. None when N < 2."""
    return _mean_cosine_of_unit(_unit_rows(_f64(z)))


def _mean_cosine_of_unit(u: torch.Tensor) -> torch.Tensor | None:
    n = u.shape[0]
    if n < 2:
        return None
    flat = u.flatten()
    return ((u.sum(0).pow(2).sum() - flat.dot(flat)) / (n * (n - 1))).clamp(-1.0, 1.0)


@torch.no_grad()
def norm_mean(z: torch.Tensor) -> torch.Tensor:
    """(1/N) Σ_i ‖z_i‖₂. Shows norm inflation (the article's demo 2) or shrinkage to 0."""
    return torch.linalg.vector_norm(_f64(z), dim=1).mean()


@torch.no_grad()
def alignment(z: torch.Tensor, z_pos: torch.Tensor) -> torch.Tensor:
    """(1/N) Σ_i ‖u_i − u⁺_i‖² over positive pairs of unit rows (Wang and Isola 2020), in
    [0, 4]. Small is good, but 0 is also what a collapsed encoder gets."""
    return _alignment_of_unit(_unit_rows(_f64(z)), z_pos)


def _alignment_of_unit(u: torch.Tensor, z_pos: torch.Tensor) -> torch.Tensor:
    if z_pos.shape != u.shape:
        raise ValueError(f"z_pos must have z's shape {tuple(u.shape)}, got {tuple(z_pos.shape)}")
    return (u - _unit_rows(_f64(z_pos))).pow(2).sum(1).mean()


# ---------------------------------------------------------------------------- not from z
@torch.no_grad()
def grad_norm(parameters: Iterable[torch.Tensor]) -> torch.Tensor:
    """‖(g_1, …, g_P)‖₂ over every .grad that is not None: a 0-dim float32 tensor on the first
    gradient's device, no host synchronisation (0 with no gradients). → 0 at complete collapse."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.zeros(())
    device = grads[0].device
    norms = [torch.linalg.vector_norm(g, dtype=torch.float32).to(device) for g in grads]
    return torch.linalg.vector_norm(torch.stack(norms))


def knn_chance(test_labels: torch.Tensor) -> float:
    """The chance level of `knn_accuracy`: the share of the largest class among the held-out
    labels, what always guessing it scores."""
    return float(torch.bincount(test_labels.long()).max()) / len(test_labels)


KNN_BLOCK = 1 << 23  # elements of one block of test-train similarities (64 MiB in float64)


@torch.no_grad()
def knn_accuracy(
    train_z: torch.Tensor,
    train_labels: torch.Tensor,
    test_z: torch.Tensor,
    test_labels: torch.Tensor,
    k: int = 20,
) -> float:
    """Fraction of test rows whose label is the majority among their k most cosine-similar
    train rows (labels are integers ≥ 0; a tie of votes goes to the smallest label; k is capped
    at the number of train rows). Train rows as similar as the k-th nearest all vote, so the
    result never depends on the order of the train set: a cloud collapsed to one point (every
    similarity equal) votes with the whole train set and predicts its majority class, chance.
    (The k-NN monitor of Wu et al. 2018 and DINO, unweighted.)

    Cosine similarity ignores scale: a cloud that shrinks around a point without changing its
    shape keeps its kNN accuracy, which then reads the direction of the residual spread down
    to the last bits of the embeddings (configs/README.md, "How far kNN accuracy falls")."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    train_u = _unit_rows(_f64(train_z))
    test_u = _unit_rows(_f64(test_z)).to(train_u.device)
    train_labels = train_labels.to(train_u.device, torch.long)
    k = min(k, train_u.shape[0])
    classes = int(train_labels.max()) + 1
    one_hot = torch.nn.functional.one_hot(train_labels, classes).double()  # (N_train, classes)
    preds = []
    rows = max(1, min(1024, KNN_BLOCK // train_u.shape[0]))
    for chunk in test_u.split(rows):  # bounds the (rows, N_train) similarity matrix
        sims = chunk @ train_u.T
        kth = sims.topk(k, dim=1).values[:, -1:]  # (B, 1): the k-th largest similarity
        votes = (sims >= kth).double() @ one_hot  # (B, classes), ties at the k-th included
        preds.append(votes.argmax(1))  # argmax returns the first maximum: smallest label
    hits = torch.cat(preds) == test_labels.to(train_u.device, torch.long)
    return float(hits.double().mean())


# ---------------------------------------------------------------------------- one log step
def _read_back(
    scalars: torch.Tensor, cov: torch.Tensor, gram: torch.Tensor
) -> tuple[list[float], tuple[torch.Tensor, torch.Tensor]]:
    """The scalars as floats and the ascending eigenvalues of both (m, m) matrices on the CPU,
    with one device-to-host copy. CPU tensors: decomposed in place. A GPU, m ≥ DEVICE_EIG_MIN:
    decomposed there in one batched call, then the eigenvalues are copied with the scalars. A
    GPU, smaller m: the matrices are copied with the scalars and decomposed on the CPU."""
    k = scalars.numel()
    if cov.device.type == "cpu":
        return scalars.tolist(), (_eigvalsh(cov), _eigvalsh(gram))
    if _eig_on_device(cov):
        packed = torch.cat([scalars, _eigvalsh(torch.stack([cov, gram])).flatten()]).cpu()
        eigs = packed[k:].view(2, -1)
    else:
        packed = torch.cat([scalars, cov.flatten(), gram.flatten()]).cpu()
        eigs = _eigvalsh(packed[k:].view(2, *cov.shape))
    return packed[:k].tolist(), (eigs[0], eigs[1])


@torch.no_grad()
def compute_metrics(
    z: torch.Tensor, z_pos: torch.Tensor | None = None, precision: torch.dtype | None = None
) -> tuple[dict[str, float], torch.Tensor]:
    """All embedding metrics of one log step from ONE eigendecomposition of the covariance
    (plus rankme's Gram); returns (metrics as python floats/ints, eigenvalues float64
    descending on CPU).

    Everything is computed on z's device with one matrix product for both matrices (see
    `_products`) and one read-back: on the CPU, or on a GPU from DEVICE_EIG_MIN on, both
    matrices are decomposed there in one ``eigvalsh`` call (on a GPU that call also reads its
    error flag back, a second, cheap synchronisation) and only the eigenvalues travel to the
    host with the scalars; below DEVICE_EIG_MIN the two small matrices travel instead and are
    decomposed on the CPU. ``rank`` is an int. ``uniformity`` and ``mean_cosine`` are absent
    when N < 2, ``alignment`` without z_pos, ``alpha_req`` when rank < ALPHA_MIN_RANK.
    Non-finite z (a diverged step) gives NaN for every metric (rank included) and a NaN
    spectrum, never an exception. ``precision`` is the dtype z was computed in, which sets the
    rank tolerance (`rank_tolerance`); default z.dtype (bfloat16 under autocast, whatever the
    dtype of the last operation).
    """
    z64 = _f64(z)
    n, d = z64.shape
    norm = torch.linalg.vector_norm(z64, dim=1)  # (N,)
    u = _unit_rows(z64, norm)  # (N, d)
    cov, gram = _products(z64)  # (m, m) each, m = min(N, d)
    maybe = {
        "variance": cov.diagonal().sum() / d,  # tr(C)/d, also when C is the N×N Gram
        "std_l2": _std_l2_of_unit(u),
        "uniformity": _uniformity_of_unit(_pair_rows(u, PAIR_CAP)),
        "alignment": _alignment_of_unit(u, z_pos) if z_pos is not None else None,
        "mean_cosine": _mean_cosine_of_unit(u),
        "norm_mean": norm.mean(),
    }
    on_device = {k: v for k, v in maybe.items() if v is not None}  # absent = not applicable
    scalars, both = _read_back(torch.stack(list(on_device.values())), cov, gram)
    values = dict(zip(on_device, scalars, strict=True))
    eigs, gram_eigs = _desc(both[0], d), _desc(both[1], both[1].numel())  # descending

    if not (torch.isfinite(eigs).all() and all(map(math.isfinite, values.values()))):
        keys = ["min_eig", "max_eig", "rank", "effective_rank", "rankme", "participation_ratio"]
        return {k: math.nan for k in [*values, *keys]}, eigs.fill_(math.nan)
    scale = max(float(eigs[0]), float(gram_eigs[0]) / max(n - 1, 1))  # σ₁(Z)²/(N−1) ≥ λ₁
    rank = numerical_rank(eigs, n, precision or z.dtype, scale)
    out: dict[str, float] = {
        "variance": values.pop("variance"),
        "min_eig": float(eigs[-1]),
        "max_eig": float(eigs[0]),
        "rank": rank,
        "effective_rank": effective_rank_from_spectrum(eigs),
        "rankme": _rankme_from_eigs(gram_eigs),
        "participation_ratio": participation_ratio_from_spectrum(eigs),
    }
    alpha = alpha_req_from_spectrum(eigs, rank)
    if alpha is not None:
        out["alpha_req"] = alpha
    out.update(values)
    return out, eigs
