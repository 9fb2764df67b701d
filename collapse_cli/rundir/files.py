"""The files of a run folder: atomic writes, JSON objects, JSON lines appended and read back.

Readers tolerate a run that is still being written or that died mid-line. Standard library only.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .folders import METRICS, SPECTRUM


def clean(value: Any) -> Any:
    """JSON-safe copy: non-finite floats become null (never bare NaN tokens)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    return value


def json_line(row: dict[str, Any]) -> str:
    """One JSON-lines record, non-finite values as null."""
    return json.dumps(clean(row), allow_nan=False) + "\n"


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename: never half written.
    The file gets the mode a plain open() would give it (0666 less the umask), not mkstemp's
    owner-only 0600, so colleagues sharing a runs folder can read it."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it: put it straight back
    os.umask(mask)
    return mask


def write_json(path: Path, data: dict[str, Any]) -> None:
    write_atomic(path, json.dumps(clean(data), indent=2, allow_nan=False) + "\n")


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object file, or None when it is missing or unreadable."""
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def read_line(line: str) -> dict[str, Any]:
    """One JSON-lines record; {} for a torn or garbled line."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError:
        return {}
    return row if isinstance(row, dict) else {}


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every complete JSON line of ``path``; a torn or garbled line (a run died mid-write) is
    skipped, and a missing file reads as no lines."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    return [row for row in map(read_line, text.splitlines()) if row]


def keep_rows(path: Path, keep: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    """Rewrite a JSON-lines file atomically with only the rows ``keep`` accepts (truncating a run
    for a resume); returns them."""
    rows = [r for r in read_jsonl(path) if keep(r)]
    write_lines(path, rows)
    return rows


def write_lines(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    write_atomic(path, "".join(map(json_line, rows)))


class LineWriter:
    """Appends JSON lines to one file, each flushed as soon as it is written."""

    def __init__(self, path: Path) -> None:
        self._file = open(path, "a")  # noqa: SIM115 - closed in close()

    def append(self, row: dict[str, Any]) -> None:
        self._file.write(json_line(row))
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class RunWriter:
    """Appends a run's log steps: a row to metrics.jsonl, a spectrum to spectrum.jsonl."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._metrics, self._spectrum = LineWriter(path / METRICS), LineWriter(path / SPECTRUM)

    def append_metrics(self, row: dict[str, Any]) -> None:
        self._metrics.append(row)

    def append_spectrum(self, step: int, eigenvalues: list[float]) -> None:
        self._spectrum.append({"step": step, "eigenvalues": eigenvalues})

    def close(self) -> None:
        self._metrics.close()
        self._spectrum.close()
