"""``collapse compare`` of runs that differ only in seed, a sweep's or any: one group per
setting, the mean ± standard deviation of every final metric over its completed seeds, and
mean curves with a band of ± one standard deviation. Returns data only (the CLI renders it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..catalogue import ORDER, OVERLAID
from ..errors import ConfigError
from ..rundir import (
    COMPARISON,
    create_stamped,
    is_sweep_dir,
    resolve_run,
    resolve_sweep,
    write_json,
)
from .compare import Comparison, compare_runs, differing_keys, run_labels
from .predicts import Predictors, predictors
from .run import Run, load_run
from .sweep import STUDY, Group, Sweep, open_sweep, seed_groups, sweep_groups


@dataclass
class SeedComparison:
    title: str  # the sweep's id, or how many runs
    keys: list[str]  # what sets the groups apart: the table's columns
    groups: list[Group]
    labels: list[str]  # how legends name each group
    metrics: list[str]  # every final metric the completed runs share, the study's first
    out: Path | None = None  # where the figures went
    figures: list[Path] = field(default_factory=list)
    # Kendall's τ-b over every completed run, not over the groups' means (reading/predicts.py)
    predictors: Predictors | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.predictors = predictors([f for g in self.groups for f in g.finals])


def _metrics(groups: list[Group]) -> list[str]:
    """The final metrics every completed run has: the study's four, then the catalogue's."""
    finals = [f for g in groups for f in g.finals]
    if not finals:
        return []
    shared = set.intersection(*(set(f) for f in finals)) - {"step"}
    first = [m for m in STUDY if m in shared]
    return first + [k for k in ORDER if k in shared and k not in first]


def _labels(groups: list[Group], keys: list[str]) -> list[str]:
    ids = [f"group {i + 1}" for i in range(len(groups))]
    return run_labels(ids, {k: [g.params.get(k) for g in groups] for k in keys})


def _finish(
    result: SeedComparison,
    parent: Path,
    out: str | Path | None,
    fmt: str = "png",
    dpi: int | None = None,
) -> SeedComparison:
    """Draw the mean curves of the metrics every completed run logged, into ``out`` (default:
    ``compare-<time>/`` in ``parent``) with the comparison's index."""
    from .figures import check_format, save
    from .overlays import compare_figures
    from .study import draw_bands

    check_format(fmt)
    used = [r for g in result.groups for r in g.used]
    if not used:
        return result  # nothing has completed: no curves to draw
    shared = set.intersection(*(set(r.summary.get("min") or {}) for r in used))
    keys = [k for k in OVERLAID if k in shared]
    if not keys:
        return result
    groups = [g for g in result.groups if g.used]
    labels = [lb for g, lb in zip(result.groups, result.labels, strict=True) if g.used]
    figs = compare_figures(
        used, labels, keys,
        draw=lambda ax, key: draw_bands(ax, groups, labels, key),
        title=f"{result.title}: mean ± std over seeds", legend="mean ± std over seeds",
    )  # fmt: skip
    result.out = Path(out) if out else create_stamped(parent, "compare-{stamp}", "comparison")
    result.figures = save(figs, result.out, fmt, dpi)
    index = {"runs": [str(r.path.resolve()) for r in used], "labels": labels}
    write_json(result.out / COMPARISON, index | {"figures": [p.name for p in result.figures]})
    return result


def compare_sweep(
    sweep: Sweep,
    out: str | Path | None = None,
    *,
    figures: bool = True,
    fmt: str = "png",
    dpi: int | None = None,
) -> SeedComparison:
    """One group per point of the sweep's grid; the swept keys are the table's columns."""
    groups = sweep_groups(sweep)
    result = SeedComparison(
        str(sweep.index.get("id") or sweep.path.name), sweep.keys, groups,
        _labels(groups, sweep.keys), _metrics(groups),
    )  # fmt: skip
    return _finish(result, sweep.path, out, fmt, dpi) if figures else result


def compare_seeds(
    runs: list[Run],
    groups: list[Group],
    keys: list[str],
    out: str | Path | None = None,
    fmt: str = "png",
    dpi: int | None = None,
) -> SeedComparison:
    seeds = len({str(m.seed) for g in groups for m in g.members})
    title = f"{len(runs)} runs, {seeds} seeds"
    result = SeedComparison(title, keys, groups, _labels(groups, keys), _metrics(groups))
    return _finish(result, runs[0].path.parent, out, fmt, dpi)


def compare_any(
    specs: list[str],
    runs_dir: str | Path = "runs",
    out: str | Path | None = None,
    *,
    fmt: str = "png",
    dpi: int | None = None,
    labels: dict[Path, str] | None = None,
) -> Comparison | SeedComparison:
    """``collapse compare``: one sweep folder compares its grid points over seeds; runs (and
    the runs of sweep folders) that differ only in seed are grouped the same way; any other
    runs compare side by side (`compare_runs`), as do runs named by ``labels`` (by folder)."""
    sweeps, paths = [], []
    for spec in specs:
        path = Path(spec)
        if is_sweep_dir(path) or (not path.exists() and str(spec).startswith("sweep-")):
            sweeps.append(open_sweep(resolve_sweep(spec, runs_dir)))
        else:
            paths.append(resolve_run(spec, runs_dir))
    if len(sweeps) == 1 and not paths:
        _no_labels(labels)
        return compare_sweep(sweeps[0], out, fmt=fmt, dpi=dpi)
    paths += [r.run.path for s in sweeps for r in s.runs if r.run is not None]
    if len({p.resolve() for p in paths}) < len(paths):
        raise ConfigError("compare: the same run is named twice")
    how = {"fmt": fmt, "dpi": dpi, "labels": labels}
    if len(paths) < 2:
        return compare_runs(paths, out, **how)  # type: ignore[arg-type]  # says what is wrong
    runs = [load_run(p) for p in paths]
    differing = differing_keys([r.config for r in runs])
    # --label names runs one by one: they compare side by side, whatever their seeds.
    groups = None if labels else seed_groups(runs, differing)
    if groups is None:
        return compare_runs(paths, out, **how)  # type: ignore[arg-type]
    return compare_seeds(runs, groups, [k for k in differing if k != "seed"], out, fmt, dpi)


def _no_labels(labels: dict[Path, str] | None) -> None:
    if labels:
        raise ConfigError(
            "--label names single runs; a sweep's grid points are named by their settings "
            "(to compare some of its runs side by side, name their folders)"
        )
