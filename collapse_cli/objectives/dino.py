"""``dino``: a student matches a centred, sharpened EMA teacher's distribution over prototypes."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .. import collectives
from ..encoders import mlp_head
from ..registry import PositiveFloat, PositiveInt
from .base import (
    OBJECTIVES,
    Objective,
    Output,
    UnitInterval,
    cosine_momentum,
    ema_update,
    frozen_copy,
    two_views,
)


def teacher_probabilities(
    t: torch.Tensor, center: torch.Tensor | float, temperature: float
) -> torch.Tensor:
    """softmax((t − c)/τ_t) over the K prototype scores (N, K): centring and sharpening."""
    return F.softmax((t - center) / temperature, dim=-1)


def dino_cross_entropy(
    teacher_p: torch.Tensor, student_scores: torch.Tensor, temperature: float
) -> torch.Tensor:
    """mean_i −Σ_k P_t(i, k) log softmax(s_i/τ_s)_k: the student's cross-entropy to the teacher."""
    return -(teacher_p * F.log_softmax(student_scores / temperature, dim=-1)).sum(-1).mean()


def entropy(p: torch.Tensor) -> torch.Tensor:
    """mean_i −Σ_k p_ik log p_ik (0 log 0 = 0): 0 for one-hot rows, log K for uniform ones."""
    return -torch.special.xlogy(p, p).sum(-1).mean()


class PrototypeHead(nn.Module):
    """DINO's head: an MLP (GELU, no batch norm) to a bottleneck, L2-normalised, then cosine
    scores against K prototype vectors of norm 1 (the paper's weight-normalised last layer)."""

    def __init__(self, dim: int, sizes: list[int], prototypes: int) -> None:
        super().__init__()
        self.mlp = mlp_head(dim, sizes, activation="gelu", batch_norm=False)
        self.prototypes = nn.Linear(sizes[-1], prototypes, bias=False)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = F.normalize(self.mlp(z), dim=-1)  # (N, bottleneck)
        return F.linear(h, F.normalize(self.prototypes.weight, dim=-1))  # (N, K)


@OBJECTIVES.register("dino")
class DINO(Objective):
    """DINO (Caron et al. 2021): a student matches a centred, sharpened EMA teacher.

    L = ½ Σ_{(a,b) ∈ {(1,2),(2,1)}} H(P_t(x_a), P_s(x_b)), H the cross-entropy.

    P_s = softmax(g(z)/τ_s), τ_s = 0.1, from the student (encoder + prototype head g);
    P_t = softmax((g_t(z_t) − c)/τ_t), τ_t = 0.04, from the teacher, an EMA of the student
    (m from 0.996 to 1, cosine) that gets no gradient; c is the centre, an EMA (0.9) of the
    teacher's mean score. Centring alone drives P_t to uniform, sharpening alone to one-hot;
    together they prevent both collapses. Ablations: ``centering: false`` (one prototype
    wins), a high ``teacher_temperature`` (uniform). Logged parts: ``teacher_entropy`` (H(P_t);
    log K is uniform, 0 one-hot) and ``kl`` (KL(P_t ‖ P_s); → 0 at either collapse). These two
    are where DINO's collapse shows: once every input gets the same prototype the encoder
    receives no gradient and stops learning, so its own embeddings need not collapse. The
    metrics are therefore computed on the student's prototype scores g(z) (``Output.z``),
    which the loss compares and which do collapse.

    >>> import torch
    >>> p = torch.full((2, 4), 0.25)
    >>> round(float(entropy(p)), 4)  # log 4
    1.3863
    """

    views = 2

    def __init__(
        self,
        prototypes: PositiveInt = 65536,
        head: list[PositiveInt] = [2048, 2048, 256],  # noqa: B006 - read only, shown as the default
        student_temperature: PositiveFloat = 0.1,
        teacher_temperature: PositiveFloat = 0.04,
        centering: bool = True,
        center_momentum: UnitInterval = 0.9,
        momentum: UnitInterval = 0.996,
    ) -> None:
        super().__init__()
        self.prototypes, self.head_sizes = prototypes, list(head)
        self.student_temperature, self.teacher_temperature = (
            student_temperature,
            teacher_temperature,
        )
        self.centering, self.center_momentum, self.momentum = centering, center_momentum, momentum
        self.head: PrototypeHead | None = None
        self.teacher: nn.Module | None = None
        self._batch_center: torch.Tensor | None = (
            None  # this step's teacher mean, used in after_step
        )

    def setup(self, encoder: nn.Module, dim: int, batch_size: int, n: int) -> None:
        self.head = PrototypeHead(dim, self.head_sizes, self.prototypes)
        self.teacher = frozen_copy(encoder)
        self.teacher_head = frozen_copy(self.head)
        self.register_buffer("center", torch.zeros(self.prototypes))

    def forward(self, encoder: nn.Module, views: list[torch.Tensor]) -> Output:
        v1, v2 = two_views(views, "dino")
        if self.head is None or self.teacher is None:
            raise RuntimeError("dino: call setup(encoder, dim, batch_size, n) first")
        z1, z2 = encoder(v1), encoder(v2)  # (N, d) each
        s1, s2 = self.head(z1), self.head(z2)  # (N, K) student scores
        with torch.no_grad():
            t1 = self.teacher_head(self.teacher(v1))  # (N, K)
            t2 = self.teacher_head(self.teacher(v2))
            center = self.center if self.centering else 0.0
            p1 = teacher_probabilities(t1, center, self.teacher_temperature)
            p2 = teacher_probabilities(t2, center, self.teacher_temperature)
            # (K,) the teacher's mean score over the global batch: the mean of the ranks' means
            self._batch_center = collectives.mean_over_ranks(torch.cat([t1, t2]).mean(0))
        ce = (
            dino_cross_entropy(p1, s2, self.student_temperature)
            + dino_cross_entropy(p2, s1, self.student_temperature)
        ) / 2
        h = (entropy(p1) + entropy(p2)) / 2  # H(P_t, P_s) = H(P_t) + KL(P_t ‖ P_s)
        parts = {"teacher_entropy": h, "kl": ce.detach() - h}
        # Measured: the student's prototype scores (N, K), what this loss compares and where
        # DINO collapses (one prototype for every input); kNN accuracy still uses the encoder.
        return Output(loss=ce, z=s1, z_pos=s2, parts=parts)

    @torch.no_grad()
    def after_step(self, encoder: nn.Module, step: int, total_steps: int) -> None:
        assert self.head is not None and self.teacher is not None
        m = cosine_momentum(self.momentum, step, total_steps)
        ema_update(self.teacher, encoder, m)
        ema_update(self.teacher_head, self.head, m)
        if self.centering and self._batch_center is not None:
            batch_center = self._batch_center.to(self.center.dtype)  # bf16 under autocast
            self.center.lerp_(batch_center, 1.0 - self.center_momentum)
        self._batch_center = None
