"""``train.stop_on``: end a run that is dead, a number of log steps after its verdict first holds.

The verdict is the end-of-run verdict (`verdict.findings`) applied to each logged row against
the run's step-0 row, as `summary.build_summary` judges a finished run. Stopping on a verdict
also stops on a more severe one (``dimensional collapse`` stops a run in complete collapse too);
a row where it no longer holds starts the count again.
"""

from __future__ import annotations

from typing import Any

from ..config import RunConfig
from ..verdict import STOP_VERDICTS, findings


class StopOn:
    """The rule of one run: `see` each finite logged row in order; it returns the reason to stop
    once the verdict has held at ``patience`` + 1 log steps in a row, else None.

    ``prior``: the rows a resumed run kept, so that its count goes on from where it was.
    """

    def __init__(
        self,
        verdict: str,
        patience: int,
        thresholds: dict[str, float],
        prior: list[dict[str, Any]] | None = None,
    ) -> None:
        self.verdict, self.patience, self.thresholds = verdict, patience, thresholds
        # The verdicts that count: this one and the more severe ones before it.
        self.counted = set(STOP_VERDICTS[: STOP_VERDICTS.index(verdict) + 1])
        self.initial: dict[str, Any] | None = None
        self.since: tuple[int, str] | None = None  # (step, reason) where the verdict began to hold
        self.held = 0  # log steps in a row at which it holds
        self._pending = list(prior or [])  # judged at the first `see`, once dim is known

    @classmethod
    def from_config(
        cls, cfg: RunConfig, prior: list[dict[str, Any]] | None = None
    ) -> StopOn | None:
        rule = cfg.train.stop_on
        if rule is None:
            return None
        return cls(rule.verdict, rule.patience, cfg.log.verdict.model_dump(), prior)

    def see(self, row: dict[str, Any], dim: int) -> str | None:
        rows, self._pending = [*self._pending, row], []
        reason = None
        for r in rows:
            reason = self._judge(r, dim)
        return reason

    def _judge(self, row: dict[str, Any], dim: int) -> str | None:
        self.initial = self.initial or row
        reference_rank = int(self.initial.get("rank") or 0)
        found = findings(row, dim, reference_rank, self.thresholds, self.initial)
        hit = next((f for f in found if f.verdict in self.counted), None)
        if hit is None:
            self.since, self.held = None, 0
            return None
        self.held += 1
        if self.since is None:
            self.since = (int(row.get("step", 0)), f"{hit.verdict}: {hit.reason}")
        if self.held <= self.patience:
            return None
        step, why = self.since
        more = f" and {self.patience} log step{'s' * (self.patience != 1)} after" * bool(
            self.patience
        )
        return f"{why} (train.stop_on: held from step {step}{more}; stopped at step {row['step']})"
