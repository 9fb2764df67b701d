"""``moco``: contrast a query against its key and a queue of past keys from a momentum encoder."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .. import collectives, metrics
from ..registry import PositiveFloat, PositiveInt
from .base import OBJECTIVES, Objective, Output, UnitInterval, ema_update, frozen_copy, two_views


def moco_logits(
    q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float
) -> torch.Tensor:
    """(N, 1 + K) logits: column 0 is q_i·k_i/τ (the positive), then q_i·queue_j/τ.

    q (N, d) and k (N, d) are unit-normalised queries and keys, queue (K, d) unit-normalised
    keys of earlier batches.
    """
    positive = (q * k).sum(dim=1, keepdim=True)  # (N, 1)
    negative = q @ queue.T  # (N, K)
    return torch.cat([positive, negative], dim=1) / temperature


def moco_loss(
    q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float = 0.2
) -> torch.Tensor:
    """InfoNCE with the positive in column 0: mean_i −log softmax(moco_logits)_i0."""
    logits = moco_logits(q, k, queue, temperature)
    return F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long, device=q.device))


@OBJECTIVES.register("moco")
class MoCo(Objective):
    """MoCo v2 (He et al. 2020; Chen et al. 2020b): a queue of momentum-encoder keys as negatives.

    L = −log exp(q·k⁺/τ) / Σ_k exp(q·k/τ) over k⁺ and the queue, τ = 0.2.

    q = normalise(encoder(view 1)); k⁺ = normalise(key encoder(view 2)), the key encoder being a
    momentum copy of the encoder, θ_k ← m θ_k + (1 − m) θ with m = 0.99, that gets no gradient;
    the negatives are a first-in-first-out queue of the last ``queue_size`` keys (4096 in the
    paper; it must be a multiple of the batch size and leave a batch of the data out of it, so
    small data need a smaller one). Starts from random unit keys, as the paper's code does.
    ``z_pos`` (for alignment) is the key encoder's embedding of view 2. On several ranks each
    rank's queries meet their own keys and the queue, and the queue takes the keys of the whole
    global batch (gathered), so it is the same on every rank; the batch size is the global one.

    >>> import torch
    >>> q = torch.eye(2)
    >>> round(float(moco_loss(q, q, -q, temperature=1.0)), 4)  # log(1 + e⁻¹ + e⁻²)
    0.4076
    """

    views = 2

    def __init__(
        self,
        queue_size: PositiveInt = 4096,
        momentum: UnitInterval = 0.99,
        temperature: PositiveFloat = 0.2,
    ) -> None:
        super().__init__()
        self.queue_size, self.momentum, self.temperature = queue_size, momentum, temperature
        self.key_encoder: nn.Module | None = None
        self._keys: torch.Tensor | None = None  # this step's keys, queued in after_step
        self.queue_ptr = 0  # where the next batch of keys goes; a Python int: no device sync
        self._negatives: torch.Tensor | None = None  # the queue the last forward contrasted with

    def setup(self, encoder: nn.Module, dim: int, batch_size: int, n: int) -> None:
        if self.queue_size % batch_size:
            raise ValueError(
                f"loss.queue_size: {self.queue_size} must be a multiple of the batch size "
                f"({batch_size}), so that each step replaces whole batches of keys"
            )
        if self.queue_size + batch_size > n:
            fits = (n - batch_size) // batch_size * batch_size
            fix = f"use queue_size={fits} at most" if fits else "use a smaller train.batch_size"
            raise ValueError(
                f"loss.queue_size: {self.queue_size} keys plus a batch of {batch_size} exceed "
                f"the {n} training samples, so the queue would hold stale keys of the very "
                f"samples it is contrasted with; {fix}"
            )
        self.key_encoder = frozen_copy(encoder)
        self.register_buffer("queue", F.normalize(torch.randn(self.queue_size, dim), dim=1))

    def forward(self, encoder: nn.Module, views: list[torch.Tensor]) -> Output:
        v1, v2 = two_views(views, "moco")
        if self.key_encoder is None:
            raise RuntimeError("moco: call setup(encoder, dim, batch_size, n) first")
        z = encoder(v1)  # (N, d)
        with torch.no_grad():
            z_key = self.key_encoder(v2)  # (N, d)
            k = F.normalize(z_key, dim=1)
        self._negatives = self.queue.clone()  # (K, d) this step's queue, for `forces`
        loss = moco_loss(F.normalize(z, dim=1), k, self._negatives, self.temperature)
        self._keys = collectives.gather_detached(k)  # (N, d): every rank queues the same keys
        return Output(loss=loss, z=z, z_pos=z_key)

    def forces(self, z: torch.Tensor, z_pos: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """Each query q_i against its own key k_i (the positive, column i) and the queue the
        step contrasted it with, not the other keys of the batch."""
        if z_pos is None or self._negatives is None:
            return {}
        q, k = F.normalize(z.double(), dim=1), F.normalize(z_pos.double(), dim=1)  # (N, d)
        n = q.shape[0]
        candidates = torch.cat([k, self._negatives.to(k)])  # (N + K, d)
        allowed = torch.ones(n, candidates.shape[0], dtype=torch.bool, device=q.device)
        allowed[:, :n] = torch.eye(n, dtype=torch.bool, device=q.device)
        positive = torch.arange(n, device=q.device)
        return metrics.contrastive_forces(q, candidates, positive, self.temperature, allowed)

    @torch.no_grad()
    def after_step(self, encoder: nn.Module, step: int, total_steps: int) -> None:
        assert self.key_encoder is not None
        # The key encoder follows the encoder the optimizer just moved (MoCo updates it at the
        # start of the next forward, the same thing).
        ema_update(self.key_encoder, encoder, self.momentum)
        if self._keys is not None:  # dequeue the oldest batch of keys, enqueue this one
            b = self._keys.shape[0]
            self.queue[self.queue_ptr : self.queue_ptr + b] = self._keys
            self.queue_ptr = (self.queue_ptr + b) % self.queue_size
            self._keys = None

    def get_extra_state(self) -> dict[str, int]:  # the pointer travels with checkpoints
        return {"queue_ptr": self.queue_ptr}

    def set_extra_state(self, state: dict[str, int]) -> None:
        self.queue_ptr = int(state["queue_ptr"])
