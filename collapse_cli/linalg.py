"""The linear algebra and device plumbing behind the metrics: float64 copies, centring, the one
matrix product both spectra come from, eigendecompositions on the right device and thread
count, and the single read-back of a log step. metrics.py holds the definitions."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch

PAIR_CAP = 2048  # pairwise (O(N²)) metrics use at most this many evenly spaced rows


def as_f64(z: torch.Tensor) -> torch.Tensor:
    if z.ndim != 2 or z.shape[0] < 1 or z.shape[1] < 1:
        raise ValueError(f"embeddings must be (N, d) with N, d >= 1, got {tuple(z.shape)}")
    return z.detach().to(torch.float64)


def centre(z64: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(Zc, column mean). Shift by the first row before removing the mean: a constant column
    becomes exactly 0 (no round-off variance for a collapsed batch) and a large mean costs no
    precision."""
    y = z64 - z64[:1]
    shift = y.sum(0) / y.shape[0]  # (d,): the mean of y
    return y.sub_(shift), z64[0] + shift  # (N, d), (d,)


def centred(z64: torch.Tensor) -> torch.Tensor:
    return centre(z64)[0]  # (N, d)


def unit_rows(z64: torch.Tensor, norm: torch.Tensor | None = None) -> torch.Tensor:
    """Rows scaled to unit L2 norm; an all-zero row stays the zero vector (it is divided by ∞).
    ``norm`` (N,) are the row norms when already computed."""
    if norm is None:
        norm = torch.linalg.vector_norm(z64, dim=1)
    return z64 / norm.masked_fill(norm == 0, math.inf).unsqueeze(1)  # (N, d)


SYRK_BLOCK = 512  # CPU: aᵀa is built from column blocks this wide when a has more columns


def syrk(a: torch.Tensor) -> torch.Tensor:
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


def products(z64: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
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
    zc, mean = centre(z64)
    if n >= d:
        prod = syrk(zc)  # (d, d)
        gram = prod + n * torch.outer(mean, mean)
    else:
        prod = syrk(zc.T)  # (N, N)
        v = zc @ mean  # (N,)
        gram = prod + (v.unsqueeze(1) + v.unsqueeze(0)) + mean.dot(mean)
    return prod / max(n - 1, 1), gram


DEVICE_EIG_MIN = 1024  # on a GPU, matrices of at least this size are decomposed there


def eig_on_device(mat: torch.Tensor) -> bool:
    """Decompose on the tensor's own device? Always on the CPU; on a GPU from DEVICE_EIG_MIN on.

    torch.linalg.eigvalsh on CUDA reads its error flag back to the host (one synchronisation
    per call, whatever the size), and cuSOLVER is latency-bound on small matrices, while moving
    a (m, m) float64 matrix to the host is cheap for small m. Large m: the GPU wins by far.
    """
    return mat.device.type == "cpu" or mat.shape[-1] >= DEVICE_EIG_MIN


def eigvalsh(mats: torch.Tensor) -> torch.Tensor:
    """Ascending eigenvalues of a (…, m, m) stack of symmetric matrices on their device, in
    one call; a non-finite matrix (a diverged step) gives NaN eigenvalues, not an exception,
    and no host synchronisation is spent on checking it."""
    finite = torch.isfinite(mats).flatten(-2).all(-1, keepdim=True)  # (…, 1)
    with one_thread(mats):
        if mats.device.type == "cpu" and bool(finite.all()):  # the usual case: no copy
            return torch.linalg.eigvalsh(mats)
        eigs = torch.linalg.eigvalsh(torch.where(finite.unsqueeze(-1), mats, 0.0))
    return torch.where(finite, eigs, math.nan)


SINGLE_THREAD_MAX = 256  # CPU decompositions of matrices up to this size use one thread


@contextlib.contextmanager
def one_thread(mats: torch.Tensor) -> Iterator[None]:
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


def descending(eigs: torch.Tensor, size: int) -> torch.Tensor:
    """Ascending (m,) eigenvalues → descending, clamped at 0, zero-padded to ``size``."""
    eigs = eigs.flip(0).clamp_min(0.0)  # NaN stays NaN
    return torch.cat([eigs, eigs.new_zeros(size - eigs.numel())])


def eigvalsh_desc(mat: torch.Tensor, size: int) -> torch.Tensor:
    """Eigenvalues of a symmetric matrix, descending, clamped at 0, zero-padded to ``size``,
    float64 on the CPU; NaN throughout when the matrix is not finite (a diverged step)."""
    mat = mat.to(torch.float64)
    if not eig_on_device(mat):
        mat = mat.cpu()
    return descending(eigvalsh(mat).cpu(), size)


def pair_rows(z64: torch.Tensor, cap: int) -> torch.Tensor:
    n = z64.shape[0]
    if n <= cap:
        return z64
    # Evenly spaced rows i·(N−1)//(cap−1): deterministic, no RNG, spans the whole batch.
    idx = torch.arange(cap, device=z64.device) * (n - 1) // (cap - 1)
    return z64[idx]


def read_back(
    scalars: torch.Tensor, cov: torch.Tensor, gram: torch.Tensor
) -> tuple[list[float], tuple[torch.Tensor, torch.Tensor]]:
    """The scalars as floats and the ascending eigenvalues of both (m, m) matrices on the CPU,
    with one device-to-host copy. CPU tensors: decomposed in place. A GPU, m ≥ DEVICE_EIG_MIN:
    decomposed there in one batched call, then the eigenvalues are copied with the scalars. A
    GPU, smaller m: the matrices are copied with the scalars and decomposed on the CPU."""
    k = scalars.numel()
    if cov.device.type == "cpu":
        return scalars.tolist(), (eigvalsh(cov), eigvalsh(gram))
    if eig_on_device(cov):
        packed = torch.cat([scalars, eigvalsh(torch.stack([cov, gram])).flatten()]).cpu()
        eigs = packed[k:].view(2, -1)
    else:
        packed = torch.cat([scalars, cov.flatten(), gram.flatten()]).cpu()
        eigs = eigvalsh(packed[k:].view(2, *cov.shape))
    return packed[:k].tolist(), (eigs[0], eigs[1])
