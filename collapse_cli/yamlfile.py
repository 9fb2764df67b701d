"""Reading and writing YAML files (configs, a run's config.yaml): the safe loader only, and
every problem a one-line ConfigError naming the file. PyYAML, no torch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Parse a YAML file with the safe loader into a mapping, or raise ConfigError."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read it ({e.__class__.__name__})") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{path}: {where}invalid YAML: {problem}") from None
    if doc is None:
        raise ConfigError(
            f"{path}: the file is empty; a config needs data, encoder, loss, optimizer"
        )
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: a config must be a mapping of keys, not a {type(doc).__name__}")
    return doc


def dump_yaml(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None)


def parse_scalar(raw: str) -> Any:
    """An override's or a grid's value as YAML reads it (``1e-3``, ``[64, 64]``, ``null``);
    an empty value is null. Raises yaml.YAMLError."""
    return yaml.safe_load(raw) if raw.strip() else None
