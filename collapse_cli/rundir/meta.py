"""``meta.json``: who ran a run, where, with what, and how it ended; and whether its writer is
still alive. Standard library only (the caller names the device and the torch version)."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
from datetime import datetime
from typing import Any


def now() -> str:
    """The local time, to the second, with its UTC offset: how meta.json records moments."""
    return datetime.now().astimezone().isoformat(timespec="seconds")


def process_fields() -> dict[str, Any]:
    """Who is writing a run: this process's id and host, recorded in meta.json while it runs."""
    return {"pid": os.getpid(), "host": socket.gethostname()}


def new_meta(
    run_id: str,
    name: str | None,
    *,
    command: str,
    seed: int | None,
    device: str,
    device_name: str,
    versions: dict[str, str],
) -> dict[str, Any]:
    """The meta.json of a run that is starting now (status ``running``)."""
    return {
        "id": run_id,
        "name": name,
        "status": "running",
        **process_fields(),
        "started": now(),
        "ended": None,
        "command": command,
        "seed": seed,
        "device": device,
        "device_name": device_name,
        "versions": {"python": platform.python_version(), **versions},
        "git_commit": git_commit(),
    }


def ended(meta: dict[str, Any], status: str, **fields: Any) -> dict[str, Any]:
    """``meta`` marked as ended now with ``status`` (and e.g. ``error``), updated in place."""
    meta.update(status=status, ended=now(), **fields)
    return meta


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


def git_commit() -> str | None:
    """The commit of the repository the run was started in, with ``-dirty`` for local changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("-dirty" if dirty else "")
