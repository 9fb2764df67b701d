"""Which metric predicts accuracy: Kendall's τ-b between each unsupervised metric at the final
step and the final kNN and linear-probe accuracy, over the runs of a comparison (no torch, no
scipy: τ-b is a few lines of plain Python)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..catalogue import METRICS

TARGETS = ("knn_acc", "probe_acc")  # the accuracies a metric may track
# Not read as predictors: the accuracies themselves, the retrieval check, and the training
# side's numbers (the loss and gradient norm of different objectives do not compare).
NOT_PREDICTORS = {*TARGETS, "recall_at_1", "grad_norm", "loss"}
MIN_RUNS = 3  # below this a rank correlation means nothing (τ is ±1 or 0 for two runs)
TARGET_NAMES = {"knn_acc": "kNN accuracy", "probe_acc": "probe accuracy"}
# How to read the τ table, wherever it is printed.
READING = (
    "the final value of each metric against the final accuracy, over the runs that ran to "
    "their end (+1: it ranks the runs as the accuracy does; −1: in reverse; -: too few runs or "
    "a constant)"
)


def kendall_tau_b(x: list[float], y: list[float]) -> float | None:
    """Kendall's τ-b of paired values: (n_c − n_d) / √((n₀ − n_x)(n₀ − n_y)), n_c and n_d the
    concordant and discordant pairs, n₀ = n(n − 1)/2, n_x and n_y the pairs tied in x and in y
    (a pair tied in both counts in each). None when either variable is constant (or n < 2)."""
    if len(x) != len(y):
        raise ValueError(f"kendall_tau_b: {len(x)} x values but {len(y)} y values")
    n = len(x)
    score = tied_x = tied_y = 0
    for i in range(n):
        for j in range(i + 1, n):
            dx, dy = x[i] - x[j], y[i] - y[j]
            tied_x += dx == 0
            tied_y += dy == 0
            score += _sign(dx) * _sign(dy)
    pairs = n * (n - 1) // 2
    denominator = (pairs - tied_x) * (pairs - tied_y)
    return score / math.sqrt(denominator) if denominator > 0 else None


def _sign(v: float) -> int:
    return (v > 0) - (v < 0)


@dataclass
class Predictor:
    """One metric against each accuracy: τ-b and the number of runs with both values."""

    metric: str
    taus: dict[str, float | None]
    counts: dict[str, int]


@dataclass
class Predictors:
    targets: list[str]  # the accuracies some run logged: knn_acc, probe_acc
    rows: list[Predictor]  # the strongest |τ| against the first target first
    runs: int  # runs with a final value of some target

    @property
    def enough(self) -> bool:
        return self.runs >= MIN_RUNS

    @property
    def title(self) -> str:
        return f"Kendall τ-b over {self.runs} runs"

    def header(self, target: str) -> str:
        """A target's column header: ``τ vs kNN accuracy``."""
        return f"τ vs {TARGET_NAMES.get(target, target)}"

    def text(self, row: Predictor, target: str) -> str:
        """One cell: ``+0.67``, ``-`` where τ is None, and the number of runs where it is
        computed over fewer than the table's."""
        tau, n = row.taus[target], row.counts[target]
        return ("-" if tau is None else f"{tau:+.2f}") + (
            f" ({n} run{'s' * (n != 1)})" if n != self.runs else ""
        )


def _number(v: Any) -> float | None:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    return float(v) if ok else None


def predictors(finals: list[dict[str, Any]]) -> Predictors | None:
    """τ-b of every unsupervised metric of the catalogue against every accuracy over ``finals``
    (one dict of final metrics per run); None when no run has an accuracy. τ is None (shown
    as -) where fewer than MIN_RUNS runs have both values or one of them is the same in every
    run."""
    targets = [t for t in TARGETS if any(_number(f.get(t)) is not None for f in finals)]
    if not targets:
        return None
    keys = [m.key for m in METRICS if m.key not in NOT_PREDICTORS]
    rows = []
    for key in keys:
        taus: dict[str, float | None] = {}
        counts: dict[str, int] = {}
        for target in targets:
            pairs = [(_number(f.get(key)), _number(f.get(target))) for f in finals]
            both = [(a, b) for a, b in pairs if a is not None and b is not None]
            counts[target] = len(both)
            xs, ys = [a for a, _ in both], [b for _, b in both]
            taus[target] = kendall_tau_b(xs, ys) if len(both) >= MIN_RUNS else None
        if any(counts.values()):
            rows.append(Predictor(key, taus, counts))
    first = targets[0]
    rows.sort(key=lambda r: -abs(r.taus[first]) if r.taus[first] is not None else 1.0)
    runs = sum(any(_number(f.get(t)) is not None for t in targets) for f in finals)
    return Predictors(targets, rows, runs)


ENDED = ("completed", "stopped")  # runs whose last row is their final one


def of_runs(runs: list[Any]) -> Predictors | None:
    """`predictors` over the runs (reading.run.Run) that ran to their end."""
    return predictors([r.summary.get("final") or {} for r in runs if r.status in ENDED])
