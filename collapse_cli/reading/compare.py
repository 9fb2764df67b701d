"""Side-by-side comparison of run folders: differing config keys, metric table, overlaid curves.

Returns data only (the CLI renders it); matplotlib loads only when the figures are drawn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..catalogue import ORDER, OVERLAID
from ..errors import ConfigError
from ..rundir import create_stamped
from ..verdict import min_eig_text
from .run import Run, load_run

if TYPE_CHECKING:
    from .seeds import SeedComparison

STATS = ("final", "min", "max")
# When several keys tell the runs apart, legends use the most telling ones first.
_LABEL_PRIORITY = ["loss", "encoder", "optimizer", "views", "data", "train", "seed", "log"]


class _Absent:
    """The value of a config key a run does not have (e.g. loss.temperature of a variance run)."""

    def __repr__(self) -> str:
        return "-"

    __str__ = __repr__


ABSENT: Any = _Absent()


@dataclass
class MetricRow:
    """One statistic of one metric across the runs; ``diffs[i]`` = values[i] − values[0].

    A λ_min below a rank-deficient spectrum is structurally zero: its value is 0 and its text
    ``0 (rank 32/128)``, never the float round-off that was logged.
    """

    metric: str
    stat: str  # final | min | max
    values: list[float | None]
    diffs: list[float | None]
    texts: list[str | None]  # how to read a value when a number alone would mislead, or None


@dataclass
class Comparison:
    runs: list[Run]
    labels: list[str]  # how legends and tables name each run
    differing: dict[str, list[Any]]  # dotted config key -> its value in each run (ABSENT)
    rows: list[MetricRow]
    out: Path | None = None  # where the figures went
    figures: list[Path] = field(default_factory=list)


def flatten(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"loss": {"name": "x"}} -> {"loss.name": "x"}; lists stay whole values."""
    flat: dict[str, Any] = {}
    for key, value in doc.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def differing_keys(configs: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Exactly the dotted keys whose value is not the same in every config (absent counts)."""
    flats = [flatten(c) for c in configs]
    keys = list(dict.fromkeys(k for f in flats for k in f))
    out = {}
    for key in keys:
        values = [f.get(key, ABSENT) for f in flats]
        if any(v != values[0] for v in values[1:]):  # ABSENT equals only itself
            out[key] = values
    return out


def run_labels(ids: list[str], differing: dict[str, list[Any]]) -> list[str]:
    """``key=value`` names that tell the runs apart, using as few keys as it takes; the run id
    when the configs do not tell them apart."""

    def rank(key: str) -> int:
        head = key.split(".")[0]
        return _LABEL_PRIORITY.index(head) if head in _LABEL_PRIORITY else len(_LABEL_PRIORITY)

    def names(keys: list[str]) -> list[str]:
        return [
            ", ".join(f"{k}={differing[k][i]}" for k in keys if differing[k][i] is not ABSENT)
            for i in range(len(ids))
        ]

    chosen: list[str] = []
    candidates = sorted(differing, key=rank)  # stable: the config's order breaks ties
    # Greedy: add the key that splits the runs into the most groups until every name is unique.
    while candidates and len(set(names(chosen))) < len(ids):
        best = max(candidates, key=lambda k: len(set(names([*chosen, k]))))
        chosen.append(best)
        candidates.remove(best)
    labels = names(chosen)
    if not chosen or len(set(labels)) < len(ids) or not all(labels):
        return list(ids)
    return labels


def _shared_metrics(runs: list[Run]) -> list[str]:
    """Metric keys every run has a finite value of (the keys of its summary's minima)."""
    shared = set.intersection(*(set(r.summary.get("min") or {}) for r in runs))
    shared -= {"step", "time"}
    return [k for k in ORDER if k in shared] + sorted(shared - set(ORDER))


def _number(v: Any) -> float | None:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    return v if ok else None


def metric_rows(runs: list[Run], metrics: list[str]) -> list[MetricRow]:
    """Final, minimum and maximum of each metric in each run, with its difference to run 1."""
    rows = []
    for key in metrics:
        for stat in STATS:
            values = [_number((r.summary.get(stat) or {}).get(key)) for r in runs]
            texts: list[str | None] = [None] * len(runs)
            if key == "min_eig":
                for i, run in enumerate(runs):
                    # final λ_min goes with the final rank; the smallest λ_min with the smallest
                    # rank; the largest is structural only if even the largest rank is short.
                    rank = _number((run.summary.get(stat) or {}).get("rank"))
                    dim = run.dim
                    if values[i] is not None and rank is not None and dim and rank < dim:
                        values[i], texts[i] = 0.0, min_eig_text(0.0, int(rank), dim)
            first = values[0]
            diffs = [
                None if i == 0 or v is None or first is None else v - first
                for i, v in enumerate(values)
            ]
            rows.append(MetricRow(key, stat, values, diffs, texts))
    return rows


def compare_runs(
    run_dirs: list[str | Path],
    out: str | Path | None = None,
    *,
    fmt: str = "png",
    figures: bool = True,
) -> Comparison:
    """Compare two or more runs (finished, still going or died): the config keys that differ,
    final/min/max of every shared metric, and overlaid curves written to ``out`` (default:
    ``compare-<YYYYmmdd-HHMMSS>/`` beside the first run) unless ``figures`` is False."""
    from .figures import check_format

    check_format(fmt)
    paths = [Path(p) for p in run_dirs]
    if len(paths) < 2:
        raise ConfigError("compare needs at least two runs")
    if len({p.resolve() for p in paths}) < len(paths):
        raise ConfigError("compare: the same run is named twice")
    runs = [load_run(p) for p in paths]
    differing = differing_keys([r.config for r in runs])
    result = Comparison(
        runs=runs,
        labels=run_labels([r.id for r in runs], differing),
        differing=differing,
        rows=metric_rows(runs, _shared_metrics(runs)),
    )
    if figures:
        from .figures import save
        from .overlays import compare_figures

        shared = {row.metric for row in result.rows}
        keys = [k for k in OVERLAID if k in shared]
        if not keys:
            return result  # nothing logged in common yet: no curves to draw
        result.out = (
            Path(out) if out else create_stamped(paths[0].parent, "compare-{stamp}", "comparison")
        )
        result.figures = save(compare_figures(runs, result.labels, keys), result.out, fmt)
    return result


def compare_named(
    runs: list[str], runs_dir: str | Path = "runs", out: str | Path | None = None
) -> Comparison | SeedComparison:
    """``collapse compare RUN RUN ...``: resolve the names a user typed, then `compare_runs`;
    a sweep folder, or runs that differ only in seed, compare over seeds (reading/seeds.py)."""
    from .seeds import compare_any

    return compare_any(runs, runs_dir, out)
