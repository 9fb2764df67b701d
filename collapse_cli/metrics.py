"""Collapse metrics: pure functions of an (N, d) embedding tensor, no I/O.

Definitions, collapsed and healthy values and sources are in docs/metrics.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch

from .catalogue import KNN_K, ORDER
from .linalg import (
    PAIR_CAP,
    as_f64,
    centred,
    descending,
    eig_on_device,
    eigvalsh_desc,
    one_thread,
    pair_rows,
    products,
    read_back,
    syrk,
    unit_rows,
)

RANKME_EPS = 1e-7  # ε of RankMe (Garrido et al. 2023)
UNIFORMITY_T = 2.0  # t of the uniformity loss (Wang and Isola 2020)
ALPHA_FIT_START = 2  # α-ReQ fit: first 1-based eigenvalue index (λ₁ is skipped) ...
ALPHA_FIT_END = 0.9  # ... last index ⌊0.9 · rank⌋ (the finite-sample tail is skipped)
ALPHA_MIN_RANK = 10  # below this rank the fit has fewer than 8 points: alpha_req is absent


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
    z64 = as_f64(z)
    return eigvalsh_desc(products(z64)[0], z64.shape[1])


def rank_tolerance(n: int, d: int, dtype: torch.dtype = torch.float32) -> float:
    """The part of `rank_threshold` relative to λ₁ of the centred covariance:

    max((max(N, d) · eps)², max(N, d) · eps_f64),   eps = machine epsilon of ``dtype``, or of
    float32 for 16-bit dtypes (whose values are taken as float32 results rounded once).

    The first term is numpy.linalg.matrix_rank's default (σ_i > σ₁ · max(N, d) · eps) on the
    singular values of Zc, squared because λ ∝ σ²: a heuristic for the error of the computation
    that produced Z (a float32 layer's dot products), which the data cannot tell. The second is
    the same rule for the float64 matrix C itself, the resolution of its product and
    decomposition. float32, N = 512, d = 128: 3.7e-9.
    """
    m, eps = max(n, d), torch.finfo(dtype).eps
    if torch.finfo(dtype).bits <= 16:
        eps = torch.finfo(torch.float32).eps
    return max((m * eps) ** 2, m * torch.finfo(torch.float64).eps)


def rounding_bound(second_moment: float, dtype: torch.dtype = torch.float32) -> float:
    """u² · ‖Z‖_F² / (N − 1), u = eps/2 the unit roundoff of ``dtype``, ``second_moment`` =
    ‖Z‖_F² / (N − 1) (the trace of the uncentred ZᵀZ / (N − 1), mean included): the largest
    eigenvalue that rounding Z to ``dtype`` can put into the centred covariance in a direction
    where the exact data have none.

    Each stored entry is z_ij (1 + δ_ij), |δ_ij| ≤ u, so the error E has |E_ij| ≤ u |z_ij| and
    ‖E‖₂ ≤ ‖E‖_F ≤ u ‖Z‖_F. Centring is a projection P = I − 11ᵀ/N, ‖P‖₂ = 1, so the centred
    error PE has ‖PE‖₂ ≤ u ‖Z‖_F, and by Weyl's inequality no singular value of Zc moves by more:
    an empty direction (σ = 0) gets σ ≤ u ‖Z‖_F, λ = σ² / (N − 1) ≤ u² ‖Z‖_F² / (N − 1). A shared
    offset enters through ‖Z‖_F (the error of an entry scales with the entry), not the spread.
    """
    u = torch.finfo(dtype).eps / 2
    return u * u * second_moment


def rank_threshold(
    eigs: torch.Tensor,
    n: int,
    dtype: torch.dtype = torch.float32,
    second_moment: float | None = None,
) -> float:
    """The eigenvalue above which a direction counts towards `numerical_rank`:

    τ = max(rounding_bound(‖Z‖_F² / (N − 1), dtype), λ₁ · rank_tolerance(N, d, dtype)),

    λ₁ = eigs[0], the largest eigenvalue of the centred covariance. ``second_moment`` is
    ‖Z‖_F² / (N − 1); None takes the data as centred (‖Zc‖_F² / (N − 1) = Σλ). The first term
    bounds what rounding the stored values can add (a proven bound, offset included); the second
    what the float64 computation here and the computation that produced Z leave, both on the
    scale of the centred cloud itself. docs/metrics.md, *Rank tolerance*.
    """
    top = float(eigs[0])
    moment = float(eigs.sum()) if second_moment is None else second_moment
    return max(rounding_bound(moment, dtype), top * rank_tolerance(n, eigs.numel(), dtype))


def numerical_rank(
    eigs: torch.Tensor,
    n: int,
    dtype: torch.dtype = torch.float32,
    second_moment: float | None = None,
) -> int:
    """#{i : λ_i > τ} for a descending spectrum, τ = `rank_threshold`; 0 when λ₁ == 0.
    `compute_metrics` passes second_moment = ‖Z‖_F² / (N − 1): a cloud that has shrunk around
    a distant point loses rank when its spread reaches the rounding of the values, and a spread
    that rounding cannot have made counts however large the offset.

    Collapsed: 0 (a point) or 1 (a line). Healthy: up to min(d, N − 1).
    """
    if not float(eigs[0]) > 0:
        return 0
    return int((eigs > rank_threshold(eigs, n, dtype, second_moment)).sum())


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
    (d×d) or ZZᵀ (N×N), derived on z's device from the covariance's product (see `products`).
    Collapsed → 1 (a repeated point; 0 for all-zero Z). Healthy → min(N, d).
    """
    return _rankme_from_gram(products(as_f64(z))[1])


def _rankme_from_gram(gram: torch.Tensor) -> float:
    return _rankme_from_eigs(eigvalsh_desc(gram, gram.shape[0]))


def _rankme_from_eigs(eigs: torch.Tensor) -> float:
    return _exp_entropy(eigs.sqrt(), RANKME_EPS)


# ---------------------------------------------------------------------------- on z's device
# Each returns a 0-dim float64 tensor on z's device (no host synchronisation).
@torch.no_grad()
def variance(z: torch.Tensor) -> torch.Tensor:
    """(1/d) Σ_j (1/(N−1)) Σ_i (z_ij − z̄_j)² = tr(C) / d, the article's z.var(0).mean().
    Collapsed → 0. Healthy: the data's scale (1 for standardised data). 0 when N == 1."""
    z64 = as_f64(z)
    return centred(z64).pow(2).sum(0).mean() / max(z64.shape[0] - 1, 1)


@torch.no_grad()
def std_l2(z: torch.Tensor) -> torch.Tensor:
    """(1/d) Σ_j std_i(u_ij), u = rows of Z scaled to unit norm, std unbiased (SimSiam, Chen
    and He 2021). Collapsed → 0. Healthy ≈ 1/√d. Bound: ≤ √(N/(N−1)) / √d, with equality when
    every dimension has the same std and the u have zero mean. 0 when N == 1."""
    return _std_l2_of_unit(unit_rows(as_f64(z)))


def _std_l2_of_unit(u: torch.Tensor) -> torch.Tensor:
    # Squared in place: centred(u) is a fresh (N, d) tensor; a second one would cost as much.
    return (centred(u).pow_(2).sum(0) / max(u.shape[0] - 1, 1)).sqrt().mean()


@torch.no_grad()
def uniformity(
    z: torch.Tensor, t: float = UNIFORMITY_T, cap: int = PAIR_CAP
) -> torch.Tensor | None:
    """log mean_{i<j} exp(−t ‖u_i − u_j‖²), u = unit rows, t = 2 (Wang and Isola 2020), over at
    most ``cap`` evenly spaced rows. Collapsed → 0. Healthy (uniform on the sphere) ≈
    −4 + 8/d − 64/(d²(d+2)), → −4 for large d. None when N < 2 (no pairs)."""
    return _uniformity_of_unit(unit_rows(pair_rows(as_f64(z), cap)), t)


def _uniformity_of_unit(u: torch.Tensor, t: float = UNIFORMITY_T) -> torch.Tensor | None:
    """The uniformity of unit rows u (M, d) from their Gram matrix g = u uᵀ (one matrix product
    instead of M²/2 explicit differences): ‖u_i − u_j‖² = g_ii + g_jj − 2 g_ij, so
    exp(−t ‖u_i − u_j‖²) = a_i a_j exp(2t g_ij) with a_i = exp(−t g_ii). The sum over i ≠ j is
    aᵀ E a minus its diagonal (each term 1: ‖u_i − u_i‖² = 0); by symmetry its mean is the mean
    over i < j. exp(2t g) ≤ e⁴ for unit rows: no overflow.

    Every term is ≤ 1, so the value is ≤ 0: it is clamped there against round-off, and it is
    exactly 0 when all the rows are one vector (then every distance is 0, whatever round-off
    the Gram route leaves, e.g. for rows at 1e8), decided on the device, no synchronisation."""
    m = u.shape[0]
    if m < 2:
        return None
    g = syrk(u.T)  # (M, M)
    a = g.diagonal().mul(-t).exp()  # (M,)
    e = g.mul_(2 * t).exp_()  # (M, M), in place: g is not needed any more
    total = a @ (e @ a) - (a * a * e.diagonal()).sum()
    value = (total / (m * (m - 1))).log().clamp(max=0.0)
    return torch.where((u == u[:1]).all(), 0.0, value)


@torch.no_grad()
def mean_cosine(z: torch.Tensor) -> torch.Tensor | None:
    """mean_{i≠j} u_i·u_j = (‖Σ_i u_i‖² − Σ_i ‖u_i‖²) / (N(N−1)), exact in O(N·d), no
    subsampling, clamped to [−1, 1] against round-off. A zero row has cosine 0 with everything.
    Collapsed → 1. Healthy ≈ 0. None when N < 2."""
    return _mean_cosine_of_unit(unit_rows(as_f64(z)))


def _mean_cosine_of_unit(u: torch.Tensor) -> torch.Tensor | None:
    n = u.shape[0]
    if n < 2:
        return None
    flat = u.flatten()
    return ((u.sum(0).pow(2).sum() - flat.dot(flat)) / (n * (n - 1))).clamp(-1.0, 1.0)


@torch.no_grad()
def norm_mean(z: torch.Tensor) -> torch.Tensor:
    """(1/N) Σ_i ‖z_i‖₂. Shows norm inflation (the article's demo 2) or shrinkage to 0."""
    return torch.linalg.vector_norm(as_f64(z), dim=1).mean()


@torch.no_grad()
def alignment(z: torch.Tensor, z_pos: torch.Tensor) -> torch.Tensor:
    """(1/N) Σ_i ‖u_i − u⁺_i‖² over positive pairs of unit rows (Wang and Isola 2020), in
    [0, 4]. Small is good, but 0 is also what a collapsed encoder gets."""
    return _alignment_of_unit(unit_rows(as_f64(z)), z_pos)


def _alignment_of_unit(u: torch.Tensor, z_pos: torch.Tensor) -> torch.Tensor:
    if z_pos.shape != u.shape:
        raise ValueError(f"z_pos must have z's shape {tuple(u.shape)}, got {tuple(z_pos.shape)}")
    return (u - unit_rows(as_f64(z_pos))).pow(2).sum(1).mean()


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


@torch.no_grad()
def contrastive_forces(
    queries: torch.Tensor,
    candidates: torch.Tensor,
    positive: torch.Tensor,
    temperature: float,
    allowed: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """The two terms of InfoNCE's gradient with respect to each anchor, the candidates held
    fixed (the article's identity ∇_{q_i} L_i = (Σ_k P(k|i) c_k − c_i⁺)/τ):

    - ``force_attraction``: mean over anchors of ‖c_i⁺‖/τ, the pull towards the positive;
    - ``force_repulsion``: mean over anchors of ‖Σ_k P(k|i) c_k‖/τ, the push away from the
      softmax-weighted mean of the candidates, P(k|i) = softmax_k(q_i·c_k/τ);
    - ``force_ratio``: force_repulsion / force_attraction (1 at collapse, where P is uniform
      over identical candidates; 0 would be no repulsion);
    - ``force_net``: mean over anchors of ‖∇_{q_i} L_i‖, the two terms' difference: 0 where they
      balance (at collapse too, a stationary point), the anchor's full gradient otherwise.

    ``queries`` (M, d) and ``candidates`` (C, d) are what the dot products take (unit vectors
    for cosine objectives, where ‖c_i⁺‖/τ = 1/τ exactly); ``positive`` (M,) the column of each
    anchor's positive; ``allowed`` (M, C) which candidates each anchor's softmax runs over
    (None: all). 0-dim float64 tensors on the queries' device, no host synchronisation.
    """
    q, c = as_f64(queries), as_f64(candidates)
    logits = (q @ c.T) / temperature  # (M, C)
    if allowed is not None:
        logits = logits.masked_fill(~allowed, float("-inf"))
    repulsion = torch.softmax(logits, dim=1) @ c / temperature  # (M, d) Σ_k P(k|i) c_k / τ
    attraction = c[positive] / temperature  # (M, d) c_i⁺ / τ
    pull = attraction.norm(dim=1).mean()
    push = repulsion.norm(dim=1).mean()
    net = (repulsion - attraction).norm(dim=1).mean()
    return {"force_attraction": pull, "force_repulsion": push, "force_ratio": push / pull,
            "force_net": net}  # fmt: skip


def knn_chance(test_labels: torch.Tensor) -> float:
    """The chance level of `knn_accuracy`: the share of the largest class among the held-out
    labels, what always guessing it scores."""
    return float(torch.bincount(test_labels.long()).max()) / len(test_labels)


def knn_collapsed(train_labels: torch.Tensor, test_labels: torch.Tensor) -> float:
    """What `knn_accuracy` scores when the embeddings have collapsed to one point: every query
    votes with the whole train set and gets its majority class (the smallest label of a tie),
    so the score is that class's share among the held-out labels. It is at most `knn_chance`
    (equal when the train and held-out splits share their majority class)."""
    majority = int(torch.bincount(train_labels.long()).argmax())  # first maximum: smallest
    return float((test_labels.long() == majority).double().mean())


@torch.no_grad()
def dimensions(
    z: torch.Tensor, max_eig: float, precision: torch.dtype | None = None
) -> dict[str, Any]:
    """Dead and dominant dimensions of z (N, d), given λ₁ = ``max_eig`` of its covariance:

    ``dead``: the coordinate axes j (0-based) whose variance C_jj is at most the rank
    threshold τ (`rank_threshold`, the same as `numerical_rank`'s): variance that rounding of
    the values could have made, so none; ``threshold``: τ; ``dominant_share``: λ₁ / Σλ, the
    share of the variance on the dominant direction (Σλ = tr C = Σ_j C_jj); ``top_axis``, and
    ``top_axis_share``: the axis with the largest variance and its share of tr C. O(N·d), no
    decomposition; ``precision``: the dtype z was computed in (default z.dtype).
    """
    z64 = as_f64(z)
    n = z64.shape[0]
    axis_var = centred(z64).pow(2).sum(0).div_(max(n - 1, 1)).cpu()  # (d,): C_jj
    moment = float(z64.pow(2).sum()) / max(n - 1, 1)  # ‖Z‖_F² / (N − 1)
    tol = max(
        rounding_bound(moment, precision or z.dtype),
        max_eig * rank_tolerance(n, z64.shape[1], precision or z.dtype),
    )
    total = float(axis_var.sum())
    top = int(axis_var.argmax())
    return {
        "dead": (axis_var <= tol).nonzero().flatten().tolist(),
        "threshold": tol,
        "dominant_share": max_eig / total if total > 0 else None,
        "top_axis": top,
        "top_axis_share": float(axis_var[top]) / total if total > 0 else None,
    }


KNN_BLOCK = 1 << 23  # elements of one block of test-train similarities (64 MiB in float64)


@torch.no_grad()
def knn_accuracy(
    train_z: torch.Tensor,
    train_labels: torch.Tensor,
    test_z: torch.Tensor,
    test_labels: torch.Tensor,
    k: int = KNN_K,
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
    train_u = unit_rows(as_f64(train_z))
    test_u = unit_rows(as_f64(test_z)).to(train_u.device)
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


@torch.no_grad()
def recall_at_1(queries: torch.Tensor, partners: torch.Tensor) -> float:
    """Recall@1 of a retrieval check: the share of held-out queries q_i (M, d) whose most
    cosine-similar partner among p_1 … p_M (M, d) is their own p_i. A partner tied with t others
    for the top counts 1/(t + 1), the expected hit of a random choice among them, so embeddings
    collapsed to one point score chance, 1/M, exactly. Healthy: well above 1/M."""
    if queries.shape != partners.shape or queries.ndim != 2 or queries.shape[0] < 1:
        raise ValueError(
            f"queries and partners must both be (M, d), got {tuple(queries.shape)}, "
            f"{tuple(partners.shape)}"
        )
    q = unit_rows(as_f64(queries))
    p = unit_rows(as_f64(partners)).to(q.device)
    sims = q @ p.T  # (M, M)
    own = sims.diagonal().unsqueeze(1)  # (M, 1)
    beaten = (sims > own).any(1)  # another partner is strictly closer: a miss
    ties = (sims == own).sum(1)  # the own partner and those tied with it
    return float(torch.where(beaten, 0.0, 1.0 / ties).mean())


# ---------------------------------------------------------------------------- one log step
@dataclass
class Shared:
    """What the metrics of one log step share, each formed once on z's device."""

    z64: torch.Tensor  # (N, d) float64
    norm: torch.Tensor  # (N,) row norms
    u: torch.Tensor  # (N, d) unit rows
    cov: torch.Tensor  # (m, m): C, or the N × N Gram when N < d
    z_pos: torch.Tensor | None  # (N, d) positives of two-view objectives


@dataclass
class Spectra:
    """The decomposed spectra of one log step, on the host."""

    eigs: torch.Tensor  # (d,) λ₁ ≥ … ≥ λ_d of C
    gram_eigs: torch.Tensor  # (m,) σ_k(Z)², descending
    rank: int  # numerical rank of C


# compute_metrics's metrics by catalogue key (titles and collapsed values: catalogue.py).
# On z's device, 0-dim tensors read back together; None where a metric does not apply.
ON_DEVICE: dict[str, Callable[[Shared], torch.Tensor | None]] = {
    "variance": lambda s: s.cov.diagonal().sum() / s.z64.shape[1],  # tr(C)/d, either matrix
    "std_l2": lambda s: _std_l2_of_unit(s.u),
    "uniformity": lambda s: _uniformity_of_unit(pair_rows(s.u, PAIR_CAP)),
    "alignment": lambda s: None if s.z_pos is None else _alignment_of_unit(s.u, s.z_pos),
    "mean_cosine": lambda s: _mean_cosine_of_unit(s.u),
    "norm_mean": lambda s: s.norm.mean(),
}
# From the spectra, on the host.
FROM_SPECTRUM: dict[str, Callable[[Spectra], float | None]] = {
    "min_eig": lambda s: float(s.eigs[-1]),
    "max_eig": lambda s: float(s.eigs[0]),
    "rank": lambda s: s.rank,
    "effective_rank": lambda s: effective_rank_from_spectrum(s.eigs),
    "rankme": lambda s: _rankme_from_eigs(s.gram_eigs),
    "participation_ratio": lambda s: participation_ratio_from_spectrum(s.eigs),
    "alpha_req": lambda s: alpha_req_from_spectrum(s.eigs, s.rank),
}
NEEDS_RANK = {"alpha_req"}  # absent, not NaN, when the spectrum is not finite


@torch.no_grad()
def compute_metrics(
    z: torch.Tensor,
    z_pos: torch.Tensor | None = None,
    precision: torch.dtype | None = None,
    also: dict[str, torch.Tensor] | None = None,
) -> tuple[dict[str, float], torch.Tensor]:
    """All embedding metrics of one log step from ONE eigendecomposition of the covariance
    (plus rankme's Gram); returns (metrics as python floats/ints, eigenvalues float64
    descending on CPU).

    Everything is computed on z's device with one matrix product for both matrices (see
    `products`) and one read-back: on the CPU, or on a GPU from DEVICE_EIG_MIN on, both
    matrices are decomposed there in one ``eigvalsh`` call (on a GPU that call also reads its
    error flag back, a second, cheap synchronisation) and only the eigenvalues travel to the
    host with the scalars; below DEVICE_EIG_MIN the two small matrices travel instead and are
    decomposed on the CPU. ``rank`` is an int. ``uniformity`` and ``mean_cosine`` are absent
    when N < 2, ``alignment`` without z_pos, ``alpha_req`` when rank < ALPHA_MIN_RANK.
    Non-finite z (a diverged step) gives NaN for every metric (rank included) and a NaN
    spectrum, never an exception. ``precision`` is the dtype z was computed in, which sets the
    rank tolerance (`rank_tolerance`); default z.dtype (bfloat16 under autocast, whatever the
    dtype of the last operation). ``also``: other 0-dim tensors (a loss, a gradient norm) to
    read back in the same copy; their values come last in the returned dict, under their keys.
    """
    z64 = as_f64(z)
    n, d = z64.shape
    norm = torch.linalg.vector_norm(z64, dim=1)  # (N,)
    cov, gram = products(z64)  # (m, m) each, m = min(N, d)
    step = Shared(z64, norm, unit_rows(z64, norm), cov, z_pos)
    maybe = {key: f(step) for key, f in ON_DEVICE.items()}
    on_device = {k: v for k, v in maybe.items() if v is not None}  # absent = not applicable
    extra = {
        k: v.detach().to(z64.device, torch.float64).reshape(()) for k, v in (also or {}).items()
    }
    if clash := set(extra) & (set(ON_DEVICE) | set(FROM_SPECTRUM)):
        raise ValueError(f"also: {', '.join(sorted(clash))} is the name of a metric")
    stacked = torch.stack([*on_device.values(), *extra.values()])
    scalars, both = read_back(stacked, cov, gram)
    values: dict[str, float] = dict(zip(on_device, scalars[: len(on_device)], strict=True))
    read = dict(zip(extra, scalars[len(on_device) :], strict=True))
    eigs, gram_eigs = descending(both[0], d), descending(both[1], both[1].numel())  # descending

    if not (torch.isfinite(eigs).all() and all(map(math.isfinite, values.values()))):
        # A diverged step: NaN for every metric that applies to any spectrum.
        values |= {k: math.nan for k in FROM_SPECTRUM if k not in NEEDS_RANK}
        return {k: values[k] for k in ORDER if k in values} | read, eigs.fill_(math.nan)
    moment = float(gram_eigs.sum()) / max(n - 1, 1)  # ‖Z‖_F²/(N−1) = tr(G)/(N−1)
    spectra = Spectra(eigs, gram_eigs, numerical_rank(eigs, n, precision or z.dtype, moment))
    for key, f in FROM_SPECTRUM.items():
        value = f(spectra)
        if value is not None:
            values[key] = value
    return {k: values[k] for k in ORDER if k in values} | read, eigs


# ---------------------------------------------------------------------------- probes
# Metrics of their own inputs rather than of the step's batch: measured at log steps on
# rank 0 by training/probes.py (log.lidar, log.probe).
LIDAR_DELTA = 1e-4  # δ of LiDAR's Σ_w + δ I (Thilak et al. 2023; absolute, in z's units²)
LIDAR_EPS = RANKME_EPS  # ε of LiDAR's entropy, p_k = λ_k / ‖λ‖₁ + ε, as RankMe's


@torch.no_grad()
def lidar(z: torch.Tensor, delta: float = LIDAR_DELTA, eps: float = LIDAR_EPS) -> float:
    """LiDAR (Thilak et al. 2023): the effective rank of the LDA matrix of ``z`` (n, q, d), q
    augmented views of each of n samples, every sample its own surrogate class:

    Σ_b = (1/(n−1)) Σ_i (μ_i − μ)(μ_i − μ)ᵀ,   Σ_w = (1/(n(q−1))) Σ_i Σ_j (z_ij − μ_i)(z_ij − μ_i)ᵀ
    + δ I,   LiDAR = exp(−Σ_k p_k log p_k),  p_k = λ_k / ‖λ‖₁ + ε,

    λ the d eigenvalues of Σ_w^{−1/2} Σ_b Σ_w^{−1/2} (μ_i the mean of sample i's views, μ their
    mean). Those are the eigenvalues of L⁻¹ Σ_b L⁻ᵀ for the Cholesky factor Σ_w = L Lᵀ (a
    similar matrix), formed as the smaller Gram of L⁻¹ (M − 1μᵀ)ᵀ. 0 when Σ_b = 0 (every
    sample's views average to one point); NaN for non-finite z. Collapsed → 1 (or 0);
    healthy → min(n − 1, d); k equally discriminable directions give ≈ k.
    """
    if z.ndim != 3 or z.shape[0] < 2 or z.shape[1] < 2 or z.shape[2] < 1:
        raise ValueError(f"lidar needs (n, q, d) views with n, q >= 2, got {tuple(z.shape)}")
    z64 = z.detach().to(torch.float64)
    if not bool(torch.isfinite(z64).all()):
        return math.nan
    n, q, d = z64.shape
    means = z64.mean(1)  # (n, d): μ_i
    between = centred(means)  # (n, d): μ_i − μ
    within = (z64 - means.unsqueeze(1)).reshape(n * q, d)  # (n q, d): z_ij − μ_i
    s_w = syrk(within) / (n * (q - 1))  # (d, d)
    s_w.diagonal().add_(delta)
    if not eig_on_device(s_w):  # small: one copy to the host, decomposed there
        s_w, between = s_w.cpu(), between.cpu()
    with one_thread(s_w):
        chol = torch.linalg.cholesky(s_w)  # (d, d) lower: Σ_w = L Lᵀ
        a = torch.linalg.solve_triangular(chol, between.T, upper=False)  # (d, n): L⁻¹ (μ_i − μ)
    gram = (syrk(a.T) if d <= n else syrk(a)) / (n - 1)  # (m, m), m = min(n, d)
    return _exp_entropy(eigvalsh_desc(gram, d), eps)


PROBE_STEPS = 50  # L-BFGS iterations of the linear probe (docs/metrics.md: why 50)
PROBE_L2 = 1e-3  # its weight decay: (λ/2) ‖W‖² beside the mean cross-entropy


def linear_probe_accuracy(
    train_z: torch.Tensor,
    train_labels: torch.Tensor,
    test_z: torch.Tensor,
    test_labels: torch.Tensor,
    steps: int = PROBE_STEPS,
    l2: float = PROBE_L2,
) -> float:
    """Held-out accuracy of a multinomial logistic regression fitted to frozen embeddings.

    Features: both sets centred by the train mean and divided by one scale, the train's RMS
    spread √(tr(C)/d) (one number, so the probe ignores the embeddings' scale, as kNN's cosine
    does, and a direction with little variance relative to the others stays small). Fit:
    logits x W + b, loss mean cross-entropy + (λ/2)‖W‖², λ = ``l2`` (the bias is not
    penalised), full batch in float64 on the embeddings' device, from W = 0, b = 0 (no random
    draw: nothing to seed, no RNG stream touched), at most ``steps`` L-BFGS iterations with a
    strong-Wolfe line search. The problem is strictly convex in W, so the result is its one
    optimum up to the iteration budget. Prediction: the largest logit, ties to the smallest
    label. Embeddings collapsed to one point have zero features: the fit is the bias alone,
    the log of the training class shares, so it predicts the training majority class.
    Collapsed: that class's share of the held-out labels. Healthy: well above it.
    """
    x = as_f64(train_z)
    xt = as_f64(test_z).to(x.device)
    y = train_labels.to(x.device, torch.long)
    yt = test_labels.to(x.device, torch.long)
    mean = x.mean(0)
    scale = float((x - mean).pow(2).sum(0).mean() / max(x.shape[0] - 1, 1)) ** 0.5
    scale = scale if scale > 0 and math.isfinite(scale) else 1.0
    x, xt = (x - mean) / scale, (xt - mean) / scale
    classes = int(max(int(y.max()), int(yt.max()))) + 1
    w = torch.zeros(x.shape[1], classes, dtype=x.dtype, device=x.device, requires_grad=True)
    b = torch.zeros(classes, dtype=x.dtype, device=x.device, requires_grad=True)
    lbfgs = torch.optim.LBFGS(
        [w, b], lr=1, max_iter=steps, history_size=10, line_search_fn="strong_wolfe",
        tolerance_grad=1e-10, tolerance_change=1e-14,
    )  # fmt: skip

    def closure() -> torch.Tensor:
        lbfgs.zero_grad()
        loss = torch.nn.functional.cross_entropy(x @ w + b, y) + 0.5 * l2 * w.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        lbfgs.step(closure)
    with torch.no_grad():
        return float(((xt @ w + b).argmax(1) == yt).double().mean())
