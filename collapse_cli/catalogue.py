"""The metric catalogue: every logged number once, with what each reader needs of it.

The live table, ``compare``, the figures, ``inspect``, docs/metrics.md and the tests derive
their lists from here. Adding a metric is one function in metrics.py and one entry below.
Standard library only: the read side imports it.
"""

from __future__ import annotations

from dataclasses import dataclass

KNN_K = 20  # neighbours of knn_acc, unless log.knn_k says otherwise
# log.at: where the metrics can be measured. The first place of log.at is logged under the
# names below; every further one under its name, AT_SEPARATOR and the name: encoder/rank.
REPRESENTATIONS = ("encoder", "projector", "predictor")
AT_SEPARATOR = "/"


@dataclass(frozen=True)
class Metric:
    """One logged number.

    ``title`` and ``axis`` label its figures; ``log``: drawn on a log axis; ``ceiling``: a
    rank-like value drawn against min(d, N − 1); ``collapsed`` and ``healthy``: what its value
    does in each case; ``live``: its header in the live table (None: not shown there), and
    ``keep``: its priority there when the terminal is narrow (lower stays longer);
    ``overlay``: ``compare`` draws its curves; ``overview``: one of the six panels of the
    compare overview; ``when``: when it is present (absent means "does not apply").
    """

    key: str
    title: str
    axis: str
    log: bool = False
    ceiling: bool = False
    collapsed: str = ""
    healthy: str = ""
    live: str | None = None
    keep: int = 9
    overlay: bool = True
    overview: bool = False
    when: str = "always"


LOSS = Metric("loss", "Loss", "loss", live="loss", keep=5, overview=True)

METRICS: tuple[Metric, ...] = (
    Metric("variance", "Variance", "variance (log)", log=True, collapsed="→ 0",
           healthy="stays up", live="variance", keep=1, overview=True),
    Metric("min_eig", "Smallest non-zero eigenvalue λ_r (r = rank)", "λ_r (log)", log=True,
           collapsed="→ 0 with the cloud", live="min eig", keep=6, overview=True),
    Metric("max_eig", "Largest eigenvalue λ₁", "λ₁ (log)", log=True, overlay=False),
    Metric("rank", "Numerical rank", "rank", ceiling=True, collapsed="1 or 0",
           healthy="up to min(d, N − 1)", live="rank", keep=7, overview=True),
    Metric("effective_rank", "Effective rank", "effective rank", ceiling=True,
           collapsed="→ 1", healthy="→ rank", live="eff. rank", keep=2, overview=True),
    Metric("rankme", "RankMe", "RankMe", ceiling=True, collapsed="→ 1",
           healthy="→ min(N, d)"),
    Metric("participation_ratio", "Participation ratio", "(Σλ)² / Σλ²", ceiling=True,
           collapsed="→ 1", healthy="≈ d for isotropic data"),
    Metric("alpha_req", "α-ReQ", "α", collapsed="large", healthy="≈ 1", overlay=False,
           when="rank ≥ 10"),
    Metric("lidar", "LiDAR (LDA rank over augmented views)", "LiDAR", collapsed="→ 1",
           healthy="→ min(n − 1, d), n = log.lidar.samples", live="LiDAR", keep=6,
           when="log.lidar (runs with views)"),
    # The live table shows std_l2·√d: 1 for a cloud spread over the sphere, the verdict's scale.
    Metric("std_l2", "Std of L2-normalised embeddings", "std_l2 (0 = collapsed)",
           collapsed="→ 0", healthy="≈ 1/√d", live="std·√d", keep=3, overview=True),
    Metric("uniformity", "Uniformity", "log E exp(−2‖u−v‖²)", collapsed="→ 0",
           healthy="≈ −4 + 8/d", when="N ≥ 2"),
    Metric("alignment", "Alignment", "E‖u−u⁺‖²", collapsed="→ 0 (also at collapse)",
           healthy="small", when="two-view objectives"),
    Metric("mean_cosine", "Mean cosine similarity", "mean cosine (1 = collapsed)",
           collapsed="→ 1", healthy="≈ 0", when="N ≥ 2"),
    Metric("norm_mean", "Mean norm", "mean ‖z‖", overlay=False),
    Metric("knn_acc", "kNN accuracy on held-out data", "kNN accuracy", collapsed="chance",
           healthy="well above chance", live="kNN", keep=4,
           when="labelled data with a held-out split"),
    Metric("probe_acc", "Linear-probe accuracy on held-out data", "probe accuracy",
           collapsed="chance (training majority)", healthy="well above chance", live="probe",
           keep=4, when="log.probe: linear, labelled data with a held-out split"),
    Metric("recall_at_1", "Recall@1 of held-out pairs", "recall@1", collapsed="chance (1/M)",
           healthy="well above chance", live="R@1", keep=4,
           when="data with held-out pairs (text)"),
    Metric("grad_norm", "Gradient norm", "grad norm (log)", log=True,
           collapsed="→ 0 at complete collapse", live="grad norm", keep=8, when="training"),
    # The two terms of InfoNCE's gradient per anchor (metrics.contrastive_forces), log steps.
    Metric("force_attraction", "Attraction ‖z_i⁺‖/τ", "mean ‖z_i⁺‖ / τ", overlay=False,
           collapsed="‖c‖/τ (1/τ for cosine objectives)", healthy="1/τ for cosine objectives",
           when="InfoNCE objectives"),
    Metric("force_repulsion", "Repulsion ‖Σ_k P(k|i) z_k‖/τ", "mean ‖Σ_k P(k|i) z_k‖ / τ",
           overlay=False, collapsed="= attraction", healthy="below attraction",
           when="InfoNCE objectives"),
    Metric("force_ratio", "Repulsion / attraction", "repulsion / attraction",
           collapsed="→ 1", healthy="< 1", when="InfoNCE objectives"),
    Metric("force_net", "Net force ‖∇_{z_i} L_i‖", "mean ‖Σ_k P(k|i) z_k − z_i⁺‖ / τ",
           log=True, collapsed="0 at exact collapse (stationary)", healthy="> 0 while it learns",
           when="InfoNCE objectives"),
)  # fmt: skip

COLUMNS: tuple[Metric, ...] = (LOSS, *METRICS)  # what a row of metrics.jsonl holds, in order
BY_KEY = {m.key: m for m in COLUMNS}
ORDER = [m.key for m in COLUMNS]  # the order a reader looks for them in
LIVE = [m for m in COLUMNS if m.live]  # the live table's columns after "step", in order
OVERLAID = [m.key for m in COLUMNS if m.overlay]
OVERVIEW = [m.key for m in COLUMNS if m.overview]
LOG_SCALE = {m.key for m in COLUMNS if m.log}
CEILED = {m.key for m in COLUMNS if m.ceiling}
# Keys of compute_metrics(z): the metrics of the embeddings alone, always present for N ≥ 2.
EMBEDDING_KEYS = [
    m.key for m in METRICS if m.when in ("always", "N ≥ 2") and m.key not in ("grad_norm",)
]
