"""Side-by-side comparison of run folders: differing config keys, metric table, overlaid curves.

Returns data only (the CLI renders it); matplotlib loads only when the figures are drawn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..catalogue import AT_SEPARATOR, BY_KEY, ORDER, OVERLAID, OVERVIEW, REPRESENTATIONS
from ..errors import ConfigError
from ..rundir import COMPARISON, create_stamped, write_json
from ..verdict import max_eig_text, min_eig_text
from .predicts import Predictors, of_runs
from .run import Run, load_run

if TYPE_CHECKING:
    from .seeds import SeedComparison

STATS = ("step 0", "final", "min", "max")
# When several keys tell the runs apart, legends use the most telling ones first.
_LABEL_PRIORITY = ["loss", "encoder", "optimizer", "views", "data", "train", "seed", "log"]
# What the table shows of log.at's further places (encoder/effective_rank): the overview's
# metrics only. Each metric is four rows, some 70 for a DINO run's own 18 metrics; its 13 at the
# encoder would add 52 more. Not the loss (the objective's, no place's), nor λ_min: whether it
# is structurally zero needs the place's width, which the run folder does not keep.
PLACED = [k for k in OVERVIEW if k not in ("loss", "min_eig")]


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
    # Kendall's τ-b of each final metric against the final accuracies (reading/predicts.py)
    predictors: Predictors | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.predictors = of_runs(self.runs)


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
    """Names that tell the runs apart in words (``stop_gradient: off``, ``loss: simsiam``),
    using as few config keys as it takes; the run id when the configs do not tell them apart."""

    def rank(key: str) -> int:
        head = key.split(".")[0]
        return _LABEL_PRIORITY.index(head) if head in _LABEL_PRIORITY else len(_LABEL_PRIORITY)

    def names(keys: list[str]) -> list[str]:
        words = key_words(keys)
        return [
            ", ".join(
                f"{words[k]}: {value_words(differing[k][i])}"
                for k in keys
                if differing[k][i] is not ABSENT
            )
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


def key_words(keys: list[str]) -> dict[str, str]:
    """How a legend names each config key: its last part (``loss.stop_gradient`` →
    ``stop_gradient``; a component's ``name`` → the block, ``loss``), the dotted key where two
    of ``keys`` would read alike."""
    short = {k: k.split(".")[-2] if k.endswith(".name") and "." in k else k.split(".")[-1]
             for k in keys}  # fmt: skip
    taken = [w for w in short.values()]
    return {k: w if taken.count(w) == 1 else k.removesuffix(".name") for k, w in short.items()}


def value_words(value: Any) -> str:
    """A config value as a legend reads it: on/off for switches, none for null, 0.05 not 5e-02."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if value is None:
        return "none"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def placed(key: str) -> tuple[str, str] | None:
    """(place, metric) of a metric measured at one of log.at's further places
    (``encoder/effective_rank`` → ``("encoder", "effective_rank")``); None for any other key,
    a Monitor's own ``lr/head`` included."""
    place, sep, metric = key.partition(AT_SEPARATOR)
    return (place, metric) if sep and place and metric in BY_KEY else None


def _table_metrics(runs: list[Run]) -> list[str]:
    """The table's metric keys: those every run has a finite value of (the keys of its
    summary's minima), the catalogue's first, then the loss parts; then, place by place
    (encoder, projector, predictor), the PLACED metrics any run measured there (the others
    show -)."""
    logged = [set(r.summary.get("min") or {}) - {"step", "time"} for r in runs]
    shared = {k for k in set.intersection(*logged) if placed(k) is None}
    at = {p for k in set.union(*logged) if (p := placed(k))}
    order = {name: i for i, name in enumerate(REPRESENTATIONS)}
    places = sorted({name for name, _ in at}, key=lambda name: (order.get(name, len(order)), name))
    own = [k for k in ORDER if k in shared] + sorted(shared - set(ORDER))
    return own + [f"{p}{AT_SEPARATOR}{m}" for p in places for m in PLACED if (p, m) in at]


def _number(v: Any) -> float | None:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    return v if ok else None


def visible(diff: float | None, reference: float | None) -> bool:
    """Whether a difference is worth showing: not None and above float64 round-off of the
    values compared (|Δ| > 1e-12 · |reference|, or any non-zero Δ of a zero reference)."""
    if diff is None or diff == 0:
        return False
    return abs(diff) > 1e-12 * abs(reference or 0.0)


def _stats(run: Run, stat: str) -> dict[str, Any]:
    """One statistic of every metric of a run: the first logged row for ``step 0``, else the
    summary's ``final``, ``min`` or ``max``."""
    if stat == "step 0":
        return run.metrics[0] if run.metrics else {}
    return run.summary.get(stat) or {}


def metric_rows(runs: list[Run], metrics: list[str]) -> list[MetricRow]:
    """Step 0, final, minimum and maximum of each metric in each run, with its difference to
    run 1."""
    rows = []
    for key in metrics:
        for stat in STATS:
            values = [_number(_stats(r, stat).get(key)) for r in runs]
            texts: list[str | None] = [None] * len(runs)
            if key == "min_eig":
                for i, run in enumerate(runs):
                    # final λ_min goes with the final rank; the smallest λ_min with the smallest
                    # rank; the largest is structural only if even the largest rank is short.
                    rank = _number(_stats(run, stat).get("rank"))
                    dim = run.dim
                    if values[i] is not None and rank is not None and dim and rank < dim:
                        values[i], texts[i] = 0.0, min_eig_text(0.0, int(rank), dim)
            if key == "max_eig":  # λ₁ of a rank-0 step is round-off: 0, as in the other tables
                for i, run in enumerate(runs):
                    if values[i] is not None and _stats(run, stat).get("rank") == 0 and run.dim:
                        values[i], texts[i] = 0.0, max_eig_text(0.0, 0, run.dim)
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
    dpi: int | None = None,
    labels: dict[Path, str] | None = None,
) -> Comparison:
    """Compare two or more runs (finished, still going or died): the config keys that differ,
    step 0, final, min and max of every shared metric (and of the main ones at log.at's further
    places), and overlaid curves written to ``out`` (default: ``compare-<YYYYmmdd-HHMMSS>/``
    beside the first run) unless ``figures`` is False.
    ``labels`` name runs (by resolved folder) in place of the names derived from their configs."""
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
        labels=[
            (labels or {}).get(p.resolve(), derived)
            for p, derived in zip(paths, run_labels([r.id for r in runs], differing), strict=True)
        ],
        differing=differing,
        rows=metric_rows(runs, _table_metrics(runs)),
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
        figs = compare_figures(runs, result.labels, keys)
        result.figures = save(figs, result.out, fmt, dpi)
        index = {"runs": [str(p.resolve()) for p in paths], "labels": result.labels}
        write_json(result.out / COMPARISON, index | {"figures": [p.name for p in result.figures]})
    return result


def compare_named(
    runs: list[str],
    runs_dir: str | Path = "runs",
    out: str | Path | None = None,
    fmt: str = "png",
    *,
    dpi: int | None = None,
    labels: list[str] | None = None,
) -> Comparison | SeedComparison:
    """``collapse compare RUN RUN ...``: resolve the names a user typed (and ``--label
    RUN=TEXT``), then `compare_runs`; a sweep folder, or runs that differ only in seed,
    compare over seeds (reading/seeds.py)."""
    from .figures import parse_labels
    from .seeds import compare_any

    named = parse_labels(labels or [], runs_dir)
    if None in named:
        raise ConfigError(f"--label {named[None]!r}: compare needs RUN=TEXT, naming the run")
    return compare_any(runs, runs_dir, out, fmt=fmt, dpi=dpi, labels=named)  # type: ignore[arg-type]
