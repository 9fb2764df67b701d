"""Run folders: creating, appending to, reading and listing them (see DESIGN.md's contract).

Readers import neither torch nor matplotlib and tolerate a run that is still being written or
that died mid-line.
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from .errors import CollapseError, ConfigError

CONFIG, META, METRICS, SPECTRUM, SUMMARY = (
    "config.yaml",
    "meta.json",
    "metrics.jsonl",
    "spectrum.jsonl",
    "summary.json",
)


# --------------------------------------------------------------------------- writing


def _clean(value: Any) -> Any:
    """JSON-safe copy: non-finite floats become null (never bare NaN tokens)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: dict[str, Any]) -> None:
    write_atomic(path, json.dumps(_clean(data), indent=2, allow_nan=False) + "\n")


def create_run_dir(runs_dir: str | Path, name: str) -> Path:
    """Make ``runs_dir/<YYYYmmdd-HHMMSS>-<name>[-k]``; never reuses an existing folder."""
    runs_dir = Path(runs_dir)
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CollapseError(f"{runs_dir}: cannot create the runs folder ({e.strerror})") from None
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    for k in range(1, 10_000):
        path = runs_dir / (f"{stamp}-{name}" + (f"-{k}" if k > 1 else ""))
        try:
            path.mkdir()  # atomic: exactly one process wins each name
            return path
        except FileExistsError:
            continue
        except OSError as e:
            raise CollapseError(f"{path}: cannot create the run folder ({e.strerror})") from None
    raise CollapseError(f"{runs_dir}: too many runs named {name!r} in one second")


class RunWriter:
    """Appends to one run folder. Each line is flushed as soon as it is written."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._metrics = open(path / METRICS, "a")  # noqa: SIM115 - closed in close()
        self._spectrum = open(path / SPECTRUM, "a")  # noqa: SIM115

    def append_metrics(self, row: dict[str, Any]) -> None:
        self._metrics.write(json.dumps(_clean(row), allow_nan=False) + "\n")
        self._metrics.flush()

    def append_spectrum(self, step: int, eigenvalues: list[float]) -> None:
        line = {"step": step, "eigenvalues": eigenvalues}
        self._spectrum.write(json.dumps(_clean(line), allow_nan=False) + "\n")
        self._spectrum.flush()

    def close(self) -> None:
        self._metrics.close()
        self._spectrum.close()


# --------------------------------------------------------------------------- reading


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every complete JSON line of ``path``; a torn or garbled line (a run died mid-write) is
    skipped, and a missing file reads as no lines."""
    rows = []
    try:
        text = path.read_text()
    except FileNotFoundError:
        return rows
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object file, or None when it is missing or unreadable."""
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def process_fields() -> dict[str, Any]:
    """Who is writing a run: this process's id and host, recorded in meta.json while it runs."""
    return {"pid": os.getpid(), "host": socket.gethostname()}


def writer_state(meta: dict[str, Any]) -> str:
    """Whether the process that wrote a ``running`` meta.json still exists: ``alive``, ``gone``
    (same host, no process with that id: killed, crashed, machine restarted) or ``unknown``
    (not running, another host, or a meta.json without ``pid`` and ``host``). A recycled
    process id reads as alive."""
    pid, host = meta.get("pid"), meta.get("host")
    if meta.get("status") != "running" or not isinstance(pid, int) or host != socket.gethostname():
        return "unknown"
    try:
        os.kill(pid, 0)  # signal 0 sends nothing: it only checks that the process exists
    except ProcessLookupError:
        return "gone"
    except OSError:  # PermissionError: it exists, owned by another user
        pass
    return "alive"


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
            raise ConfigError(f"{path}: not a run folder (no {META})")
        return path
    runs = list_runs(runs_dir)
    if str(spec) == "latest":
        if not runs:
            raise ConfigError(f"{runs_dir}: no runs yet")
        return runs[0]
    matches = [p for p in runs if p.name.startswith(str(spec))]
    what = "runs match"
    if not matches:  # the run's name: <YYYYmmdd-HHMMSS>-<name>[-k]
        named = re.compile(rf"\d{{8}}-\d{{6}}-{re.escape(str(spec))}(-\d+)?")
        matches, what = [p for p in runs if named.fullmatch(p.name)], "runs have that name"
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise ConfigError(f"{spec}: no such run in {runs_dir}")
    names = ", ".join(p.name for p in matches[:10]) + (" ..." if len(matches) > 10 else "")
    raise ConfigError(f"{spec}: ambiguous, {len(matches)} {what} (newest first): {names}")


def sanitize_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "-", name).lstrip(".-_")[:80] or "run"
