"""The run folder's contract, shared by the write side and the read side: file names, atomic
writes, appending and truncating JSON lines, ``meta.json``'s fields, creating, listing and
resolving folders. Standard library only (DESIGN.md, "Run folder contract")."""

from .files import (
    LineWriter,
    RunWriter,
    json_line,
    keep_rows,
    read_json,
    read_jsonl,
    read_line,
    write_atomic,
    write_json,
    write_lines,
)
from .folders import (
    CHECKPOINT,
    CONFIG,
    META,
    METRICS,
    PLOTS,
    SPECTRUM,
    SUMMARY,
    create_run_dir,
    create_stamped,
    is_run_dir,
    list_runs,
    resolve_run,
    sanitize_name,
)
from .meta import ended, new_meta, now, process_fields, writer_state

__all__ = [
    "CHECKPOINT",
    "CONFIG",
    "META",
    "METRICS",
    "PLOTS",
    "SPECTRUM",
    "SUMMARY",
    "LineWriter",
    "RunWriter",
    "create_run_dir",
    "create_stamped",
    "ended",
    "is_run_dir",
    "json_line",
    "keep_rows",
    "list_runs",
    "new_meta",
    "now",
    "process_fields",
    "read_json",
    "read_jsonl",
    "read_line",
    "resolve_run",
    "sanitize_name",
    "write_atomic",
    "write_json",
    "write_lines",
    "writer_state",
]
