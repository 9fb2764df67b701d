"""The grid of a sweep as text: ``--grid key=v1,v2`` options and a YAML's ``sweep:`` block read
into one ordered mapping from a config key to its values, each value the override text that
``key=value`` would carry (so a grid value is parsed exactly as an override is)."""

from __future__ import annotations

import re
from typing import Any

import yaml

from ..errors import ConfigError
from ..yamlfile import parse_scalar

Grid = dict[str, list[str]]  # config key -> its values as override text, in the order given

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_PAIRS = {"[": "]", "{": "}"}
BLOCK_KEYS = ("grid", "seeds")  # what a YAML's sweep: block may hold


def split_values(raw: str) -> list[str]:
    """``0.05,0.1`` -> ["0.05", "0.1"]; commas inside brackets, braces or quotes belong to
    their value: ``[64, 64],[128]`` -> ["[64, 64]", "[128]"]."""
    values, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(raw):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in _PAIRS:
            depth += 1
        elif ch in _PAIRS.values():
            depth -= 1
        elif ch == "," and depth == 0:
            values.append(raw[start:i].strip())
            start = i + 1
    values.append(raw[start:].strip())
    return values


def parse_grid_options(items: list[str]) -> Grid:
    """``--grid key=v1,v2`` options as a Grid; a malformed one is a one-line ConfigError."""
    grid: Grid = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        where = f"--grid {item}"
        if not sep or not _KEY.fullmatch(key):
            raise ConfigError(f"{where}: expected key.path=v1,v2,..., e.g. optimizer.lr=1e-3,1e-2")
        if key in grid:
            raise ConfigError(f"{where}: {key} is swept twice; give all its values in one --grid")
        values = split_values(raw)
        for value in values:
            if not value:
                raise ConfigError(f"{where}: an empty value (two commas, or one at an end)")
            try:
                parse_scalar(value)
            except yaml.YAMLError:
                raise ConfigError(f"{where}: {value!r} is not valid YAML") from None
        grid[key] = values
    return grid


def grid_of_values(values: dict[str, Any]) -> Grid:
    """A grid given as Python values, ``{"optimizer.lr": [1e-3, 1e-2]}`` (a string value is
    read as a ``--grid`` option's comma-separated values)."""
    grid: Grid = {}
    for key, vals in values.items():
        if isinstance(vals, str):
            grid |= parse_grid_options([f"{key}={vals}"])
            continue
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            raise ConfigError(f"grid key {key!r}: not a config key (e.g. optimizer.lr)")
        if not isinstance(vals, (list, tuple)) or not vals:
            raise ConfigError(f"grid {key}: must be a non-empty list of values")
        grid[key] = [override_text(v) for v in vals]
    return grid


def override_text(value: Any) -> str:
    """A YAML value as the text of an override that parses back to the same value."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10**9).strip()
    return text[: -len("...")].strip() if text.endswith("\n...") else text


def read_block(block: Any, label: str) -> tuple[Grid, int | None]:
    """A YAML's ``sweep:`` block, ``{grid: {key: [values]}, seeds: K}``, as (grid, seeds)."""
    if not isinstance(block, dict):
        raise ConfigError(f"{label}: sweep: must be a mapping with grid and seeds")
    unknown = [k for k in block if k not in BLOCK_KEYS]
    if unknown:
        raise ConfigError(f"{label}: sweep.{unknown[0]}: unknown key; allowed: grid, seeds")
    raw_grid = block.get("grid") or {}
    if not isinstance(raw_grid, dict):
        raise ConfigError(f"{label}: sweep.grid: must map config keys to lists of values")
    grid: Grid = {}
    for key, values in raw_grid.items():
        where = f"{label}: sweep.grid.{key}"
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            raise ConfigError(f"{where}: not a config key (e.g. optimizer.lr)")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}: must be a non-empty list of values, e.g. [1.0e-3, 1.0e-2]")
        grid[key] = [override_text(v) for v in values]
    return grid, check_seeds(block.get("seeds"), f"{label}: sweep.seeds")


def check_seeds(seeds: Any, where: str) -> int | None:
    if seeds is None:
        return None
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ConfigError(f"{where}: must be a whole number of seeds ≥ 1 (got {seeds!r})")
    return seeds


def check_grid(grid: Grid, overrides: list[str]) -> None:
    """What a grid may not sweep: the seed (that is --seeds), the run's name, or a key an
    override also sets (which of the two would win is not what anyone means)."""
    fixed = {item.partition("=")[0].strip() for item in overrides}
    for key, values in grid.items():
        if key == "seed":
            raise ConfigError(
                "seed: not a grid key; the seeds are --seeds K (or sweep.seeds): seed = the "
                "config's seed + 0 … K−1"
            )
        if key == "name":
            raise ConfigError("name: not a grid key; every run of a sweep keeps the config's name")
        if key in fixed:
            raise ConfigError(f"{key}: both swept (--grid) and set by an override; give one")
        if len(set(values)) < len(values):
            raise ConfigError(f"{key}: a grid value is given twice ({', '.join(values)})")
