"""A sweep folder read back (no torch): its index, each run's folder, the table of `load_sweep`,
and the groups of runs that differ only in seed, with their means and standard deviations.

A run's folder is the truth about it: the index names the folder once the run has ended, and a
run the index does not name yet (its sweep's process died, or a SLURM job outlived it) is found
by the swept values and the seed in its config.yaml.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from ..errors import CollapseError, ConfigError, RunNotFoundError
from ..rundir import CONFIG, METRICS, SWEEP, is_run_dir, list_runs, read_json, read_line
from ..verdict import COMPLETE, DIMENSIONAL, HEALTHY, is_structural, min_eig_text
from ..yamlfile import read_yaml
from .run import Run, config_value, load_run

# The final metrics of a study: its figure's rows and the first columns of its table.
STUDY = ("effective_rank", "std_l2_sqrt_d", "knn_acc", "variance_ratio", "escape_step")
TITLES = {
    "effective_rank": "effective rank",
    "std_l2_sqrt_d": "std_l2·√d",
    "knn_acc": "kNN accuracy",
    "variance_ratio": "variance final / step 0",
    "escape_step": "escape step (variance > 10 × start)",  # runs started near collapse
}
# What a run of a sweep came to, the most severe first: a tie in a majority goes to the first.
OUTCOMES = ("diverged", "failed", COMPLETE, DIMENSIONAL, HEALTHY, "no result")
# A run in one of these states is never run again by --resume (stopped: by train.stop_on).
ENDED = ("completed", "diverged", "stopped")
JUDGED = ("completed", "stopped")  # the states that have a verdict


# --------------------------------------------------------------------------- the index
def read_index(path: Path) -> dict[str, Any]:
    """sweep.json, or RunNotFoundError when the folder has none."""
    index = read_json(path / SWEEP)
    if index is None or not isinstance(index.get("runs"), list):
        raise RunNotFoundError(f"{path / SWEEP}: missing or unreadable; is this a sweep folder?")
    return index


def run_key(values: list[Any], seed: Any) -> str:
    """What tells the runs of a sweep apart: the swept values and the seed, as one string."""
    return json.dumps([values, seed], sort_keys=True)


def config_key(config: dict[str, Any], keys: list[str]) -> str:
    """`run_key` of a run's resolved config (its config.yaml)."""
    return run_key([config_value(config, k) for k in keys], config.get("seed"))


def folders_by_key(path: Path, keys: list[str]) -> dict[str, list[Path]]:
    """The run folders under a sweep folder by `run_key`, newest first."""
    found: dict[str, list[Path]] = {}
    for folder in list_runs(path):
        try:
            config = read_yaml(folder / CONFIG)
        except ConfigError:
            continue  # died before its config was written: nothing to match it by
        found.setdefault(config_key(config, keys), []).append(folder)
    return found


@dataclass
class SweepRun:
    """One run of a sweep: its row of sweep.json and, when it has one, its folder read back."""

    entry: dict[str, Any]
    run: Run | None

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.entry.get("params") or {})

    @property
    def seed(self) -> Any:
        return self.entry.get("seed")

    @property
    def status(self) -> str:
        """The folder's status (``died`` included) once there is a folder; without one, the
        index's ``pending`` or ``failed``, or ``missing`` for a run the index says had started
        (its folder was removed, or its job never made one)."""
        if self.run is not None:
            return self.run.status
        status = str(self.entry.get("status") or "pending")
        return status if status in ("pending", "failed") else "missing"

    @property
    def verdict(self) -> str | None:
        return self.run.summary.get("verdict") if self.run and self.run.finished else None

    @property
    def outcome(self) -> str:
        """The verdict of a completed run or of one stopped by train.stop_on; otherwise
        diverged, failed or no result."""
        if self.status in JUDGED:
            return self.verdict or "no result"
        return self.status if self.status in ("diverged", "failed") else "no result"

    @property
    def reason(self) -> str | None:
        """Why a run did not complete: the divergence, the error, or how it was stopped."""
        if self.run is not None:
            if self.status == "diverged":
                return self.run.summary.get("divergence")
            if self.status == "failed":
                return self.run.meta.get("error") or self.entry.get("reason")
            if self.status == "stopped":
                return self.run.summary.get("stop_reason")
        return self.entry.get("reason")


@dataclass
class Sweep:
    path: Path
    index: dict[str, Any]
    runs: list[SweepRun]

    @property
    def keys(self) -> list[str]:
        """The swept config keys, in the grid's order."""
        return list(self.index.get("grid") or {})

    @property
    def grid(self) -> dict[str, list[Any]]:
        return dict(self.index.get("grid") or {})


def open_sweep(path: str | Path) -> Sweep:
    """A sweep folder with each run of its index matched to its folder."""
    path = Path(path)
    index = read_index(path)
    keys = list(index.get("grid") or {})
    found: dict[str, list[Path]] | None = None
    runs = []
    for entry in index["runs"]:
        folder = entry.get("folder")
        if folder and is_run_dir(path / folder):
            runs.append(SweepRun(entry, load_run(path / folder)))
            continue
        found = folders_by_key(path, keys) if found is None else found
        params = entry.get("params") or {}
        matches = found.get(run_key([params.get(k) for k in keys], entry.get("seed")), [])
        runs.append(SweepRun(entry, load_run(matches[0]) if matches else None))
    return Sweep(path, index, runs)


# --------------------------------------------------------------------------- final metrics
def final_metrics(run: Run) -> dict[str, Any]:
    """The final metrics of a run (summary.json's ``final``) with the study's two derived ones:
    ``std_l2_sqrt_d`` = std_l2·√d (1 for a spread cloud, 0 collapsed) and ``variance_ratio`` =
    the final variance over its value at step 0; and ``escape_step`` for a run that started
    near collapse and escaped (summary.json's; absent when it never did)."""
    final = {k: v for k, v in (run.summary.get("final") or {}).items() if k not in ("time",)}
    std, dim = final.get("std_l2"), run.dim
    if _number(std) is not None and dim:
        final["std_l2_sqrt_d"] = std * math.sqrt(dim)
    first: dict[str, Any] = {}
    try:
        with open(run.path / METRICS) as f:
            first = read_line(f.readline())
    except OSError:
        pass
    v0, v = _number(first.get("variance")), _number(final.get("variance"))
    if v0 and v is not None:
        final["variance_ratio"] = v / v0
    if run.summary.get("escape_step") is not None:  # started near collapse, and escaped
        final["escape_step"] = run.summary["escape_step"]
    return final


def load_sweep(path: str | Path, frame: bool | None = None) -> Any:
    """A sweep as a table for a notebook: one row per run, with the swept parameters, the
    seed, status, verdict, folder and the final metrics (`final_metrics`).

    A pandas DataFrame when pandas is installed (``frame=None``; ``frame=False`` asks for the
    list of dicts, ``frame=True`` insists on pandas), else a list of dicts.

    >>> table = load_sweep("runs/sweep-20261201-101500-nt-xent")  # doctest: +SKIP
    >>> table.groupby("loss.temperature")["effective_rank"].agg(["mean", "std"])  # doctest: +SKIP
    """
    sweep = open_sweep(path)
    rows = []
    for r in sweep.runs:
        row: dict[str, Any] = {**r.params, "seed": r.seed, "status": r.status}
        row |= {"verdict": r.verdict, "folder": r.run.path.name if r.run else None}
        row |= {"reason": r.reason} if r.status in ("diverged", "failed", "stopped") else {}
        if r.run is not None:
            row |= final_metrics(r.run)
        rows.append(row)
    if frame is False:
        return rows
    try:
        import pandas as pd
    except ImportError:
        if frame:
            raise CollapseError("load_sweep(frame=True) needs pandas: pip install pandas") from None
        return rows
    return pd.DataFrame.from_records(rows)


# --------------------------------------------------------------------------- seeds
def mean_std(values: list[Any]) -> tuple[float | None, float | None, int]:
    """(mean, sample standard deviation with n − 1, n) of the finite numbers in ``values``; the
    deviation is None below two values."""
    xs = [x for x in map(_number, values) if x is not None]
    n = len(xs)
    if not n:
        return None, None, 0
    mean = math.fsum(xs) / n
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1)) if n > 1 else None
    return mean, std, n


@dataclass
class Member:
    """One run of a group: its folder (None for a run of a sweep that never got one), its
    status, seed and outcome (`SweepRun.outcome`)."""

    run: Run | None
    status: str
    seed: Any
    outcome: str


@dataclass
class Group:
    """Runs that differ only in seed. Their statistics are over the completed ones and those
    stopped by train.stop_on (whose last metrics are where their verdict had held for its
    patience): a run that diverged or failed has last metrics from before the failure, and one
    still going has not reached the end."""

    params: dict[str, Any]  # the values that set the group apart (the table's columns)
    members: list[Member] = field(default_factory=list)

    @property
    def used(self) -> list[Run]:
        return [m.run for m in self.members if m.status in JUDGED and m.run is not None]

    @cached_property
    def finals(self) -> list[dict[str, Any]]:
        return [final_metrics(run) for run in self.used]

    def stat(self, metric: str) -> tuple[float | None, float | None, int]:
        """(mean, std, n) of a final metric over the completed runs."""
        return mean_std([f.get(metric) for f in self.finals])

    def majority(self) -> tuple[str, int]:
        """The most common outcome and how many runs had it; ties go to the more severe."""
        counts = Counter(m.outcome for m in self.members)
        best = max(counts, key=lambda o: (counts[o], -OUTCOMES.index(o)))
        return best, counts[best]

    def min_eig_text(self) -> str | None:
        """``0 (rank 32/128)`` when λ_min is structurally zero in every completed run (the
        same rank below d in each), where its mean would be float round-off; else None."""
        ranks = {int(f["rank"]) for f in self.finals if isinstance(f.get("rank"), int)}
        dims = {r.dim for r in self.used}
        if len(ranks) != 1 or len(dims) != 1 or len(self.finals) != len(self.used):
            return None
        rank, dim = ranks.pop(), dims.pop()
        return min_eig_text(0.0, rank, dim) if dim and is_structural(rank, dim) else None

    @property
    def outcomes(self) -> Counter[str]:
        return Counter(m.outcome for m in self.members)


def sweep_groups(sweep: Sweep) -> list[Group]:
    """One group per point of the grid, in the index's order."""
    groups: dict[str, Group] = {}
    for r in sweep.runs:
        params = r.params
        group = groups.setdefault(run_key([params.get(k) for k in sweep.keys], None), Group(params))
        group.members.append(Member(r.run, r.status, r.seed, r.outcome))
    return list(groups.values())


def seed_groups(runs: list[Run], differing: dict[str, list[Any]]) -> list[Group] | None:
    """Runs grouped by every differing config key but the seed; None when no two runs differ
    only in seed (then there is nothing to average)."""
    if "seed" not in differing:
        return None
    keys = [k for k in differing if k != "seed"]
    groups: dict[str, Group] = {}
    for i, run in enumerate(runs):
        params = {k: differing[k][i] for k in keys}
        group = groups.setdefault(json.dumps([str(v) for v in params.values()]), Group(params))
        verdict = run.summary.get("verdict") if run.finished else None
        outcome = (verdict or "no result") if run.status in JUDGED else run.status
        outcome = outcome if outcome in OUTCOMES else "no result"
        group.members.append(Member(run, run.status, config_value(run.config, "seed"), outcome))
    if all(len(g.members) == 1 for g in groups.values()):
        return None
    return list(groups.values())


def _number(v: Any) -> float | None:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    return float(v) if ok else None
