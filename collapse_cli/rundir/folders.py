"""Run folders as a whole: their names, creating them, listing them and resolving the name a
user types (a path, a prefix, a run name, ``latest``). Standard library only."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

from ..errors import CollapseError, RunNotFoundError

# The files of a run folder (DESIGN.md, "Run folder contract").
CONFIG, META, METRICS, SPECTRUM, SUMMARY = (
    "config.yaml",
    "meta.json",
    "metrics.jsonl",
    "spectrum.jsonl",
    "summary.json",
)
CHECKPOINT, PLOTS = "checkpoint.pt", "plots"
EMBEDDINGS, EMBEDDING_LABELS = "embeddings.npy", "embedding_labels.npy"
METRICS_CSV, TENSORBOARD = "metrics.csv", "tensorboard"
COMPARISON = "comparison.json"  # what marks a folder of `collapse compare`: the runs compared
SWEEP = "sweep.json"  # the index of a sweep folder (runs/sweep-<stamp>-<name>/)


def create_stamped(parent: str | Path, template: str, kind: str = "run") -> Path:
    """Make ``parent/<template with {stamp} = YYYYmmdd-HHMMSS>[-k]`` and return it: the mkdir is
    atomic, so two processes starting in the same second get distinct folders and no existing
    folder is ever reused. Run folders and comparison folders (``kind``) alike."""
    parent = Path(parent)
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CollapseError(f"{parent}: cannot create the {kind}s folder ({e.strerror})") from None
    base = template.replace("{stamp}", datetime.now().strftime("%Y%m%d-%H%M%S"))
    for k in range(1, 10_000):
        path = parent / (base + (f"-{k}" if k > 1 else ""))
        try:
            path.mkdir()  # atomic: exactly one process wins each name
            return path
        except FileExistsError:
            continue
        except OSError as e:
            raise CollapseError(f"{path}: cannot create the {kind} folder ({e.strerror})") from None
    raise CollapseError(f"{parent}: too many folders named {base!r} in one second")


def create_run_dir(runs_dir: str | Path, name: str) -> Path:
    """Make ``runs_dir/<YYYYmmdd-HHMMSS>-<name>[-k]``."""
    return create_stamped(runs_dir, "{stamp}-" + name)


def create_sweep_dir(runs_dir: str | Path, name: str) -> Path:
    """Make ``runs_dir/sweep-<YYYYmmdd-HHMMSS>-<name>[-k]``: the folder of a sweep's runs."""
    return create_stamped(runs_dir, "sweep-{stamp}-" + name, "sweep")


def is_sweep_dir(path: Path) -> bool:
    return path.is_dir() and (path / SWEEP).is_file()


def resolve_sweep(spec: str | Path, runs_dir: str | Path = "runs") -> Path:
    """A sweep folder from its path or its folder name (or a unique prefix of it) in
    ``runs_dir``."""
    path = Path(spec)
    if path.is_dir():
        if not is_sweep_dir(path):
            raise RunNotFoundError(f"{path}: not a sweep folder (no {SWEEP})")
        return path
    runs_dir = Path(runs_dir)
    names = sorted(runs_dir.iterdir()) if runs_dir.is_dir() else []
    found = [p for p in names if p.name.startswith(str(spec)) and is_sweep_dir(p)]
    return _the_one(
        found, f"{spec}: no such sweep folder (in {runs_dir} either)", spec, "sweeps match"
    )


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and (path / META).is_file()


def list_runs(runs_dir: str | Path) -> list[Path]:
    """Run folders under ``runs_dir``, newest first (by folder name, which starts with the time)."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    return sorted(
        (p for p in runs_dir.iterdir() if is_run_dir(p)), key=lambda p: p.name, reverse=True
    )


def resolve_run(spec: str | Path, runs_dir: str | Path = "runs") -> Path:
    """A run folder from a path, a folder name or unique prefix of one in ``runs_dir``, the
    run's own name (the part after the time stamp) when exactly one run there has it, or
    ``latest``."""
    runs_dir = Path(runs_dir)
    path = Path(spec)
    if path.is_dir():
        if not is_run_dir(path):
            raise RunNotFoundError(f"{path}: not a run folder (no {META})")
        return path
    runs = list_runs(runs_dir)
    if str(spec) == "latest":
        if not runs:
            raise RunNotFoundError(f"{runs_dir}: no runs yet")
        return runs[0]
    matches = [p for p in runs if p.name.startswith(str(spec))]
    what = "runs match"
    if not matches:  # the run's name: <YYYYmmdd-HHMMSS>-<name>[-k]
        named = re.compile(rf"\d{{8}}-\d{{6}}-{re.escape(str(spec))}(-\d+)?")
        matches, what = [p for p in runs if named.fullmatch(p.name)], "runs have that name"
    return _the_one(matches, f"{spec}: no such run in {runs_dir}", spec, f"{what} (newest first)")


def _the_one(found: list[Path], missing: str, spec: str | Path, what: str) -> Path:
    """The single folder of ``found``; else the error ``missing``, or one listing the matches."""
    if len(found) == 1:
        return found[0]
    if not found:
        raise RunNotFoundError(missing)
    names = ", ".join(p.name for p in found[:10]) + (" ..." if len(found) > 10 else "")
    raise RunNotFoundError(f"{spec}: ambiguous, {len(found)} {what}: {names}")


def sanitize_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "-", name).lstrip(".-_")[:80] or "run"
