"""A sweep's plan: its config and ``sweep:`` block read, the grid merged with ``--grid``, and
every point checked like an override and built as a run would build it, before anything is
created."""

from __future__ import annotations

import copy
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import rundir
from ..config import RunConfig, load_config, resolved
from ..errors import ConfigError
from ..reading.run import config_value
from ..yamlfile import read_yaml
from .executors import check_executor
from .grid import Grid, check_grid, check_seeds, grid_of_values, parse_grid_options, read_block

GridSpec = list[str] | dict[str, Any] | None  # ["key=v1,v2", ...] or {key: [v1, v2] or "v1,v2"}


@dataclass
class Plan:
    """A validated sweep, before anything is created."""

    name: str
    source: str  # where the config came from (errors and the index name it)
    config: dict[str, Any]  # the YAML without its sweep block, its name filled in
    overrides: list[str]  # applied to every run
    grid: dict[str, list[Any]]  # each swept key's values as the resolved configs hold them
    points: list[dict[str, Any]]  # each run: index, params, seed, overrides (its own)
    threads: int | None  # train.threads when the config sets it


def plan_sweep(
    config: str | Path | dict[str, Any],
    grid: GridSpec = None,
    seeds: int | None = None,
    overrides: list[str] | None = None,
    *,
    name: str | None = None,
) -> Plan:
    """Read the config and its ``sweep:`` block, merge ``grid`` into it (a key given here
    replaces the block's values) and check every point like an override, building its parts
    as a run would. Any problem is one ConfigError; nothing is created."""
    if isinstance(config, dict):
        doc, source, stem = copy.deepcopy(config), "config", "sweep"
    else:
        doc, source, stem = read_yaml(config), str(config), Path(config).stem
    block = doc.pop("sweep", None)
    yaml_grid, yaml_seeds = read_block(block, source) if block is not None else ({}, None)
    swept: Grid = {**yaml_grid, **_as_grid(grid)}
    overrides = list(overrides or [])
    check_grid(swept, overrides)
    overrides += sweep_figures(doc, swept, overrides)
    count = check_seeds(seeds, "--seeds") or yaml_seeds or 1
    if not swept and count == 1:
        raise ConfigError(
            "nothing to sweep: give --grid key=v1,v2 (or a sweep: block in the YAML), --seeds K, "
            "or both"
        )
    if not doc.get("name"):
        doc["name"] = rundir.sanitize_name(stem)
    base = _load(doc, overrides, source, "")
    values: dict[str, list[Any]] = {key: [] for key in swept}
    points: list[dict[str, Any]] = []
    seen: dict[str, str] = {}
    for combo in itertools.product(*swept.values()):
        own = [f"{key}={text}" for key, text in zip(swept, combo, strict=True)]
        where = ", ".join(own)
        cfg = _load(doc, overrides + own, source, where)
        _check_parts(cfg, where)
        params = {key: config_value(resolved(cfg), key) for key in swept}
        same = seen.setdefault(json.dumps(list(params.values())), where)
        if same != where:
            raise ConfigError(f"{source}: grid points {same} and {where} are the same run")
        for key, value in params.items():
            if value not in values[key]:
                values[key].append(value)
        for k in range(count):
            seed = base.seed + k
            points.append(
                {"index": len(points), "params": params, "seed": seed,
                 "overrides": [*own, f"seed={seed}"]}
            )  # fmt: skip
    name = rundir.sanitize_name(name or doc["name"])
    return Plan(name, source, doc, overrides, values, points, base.train.threads)


# A sweep's runs draw no figures at their end unless the config, an override or the grid says
# so: a short run's figures cost about as much as its training loop (docs/performance.md, i),
# and `collapse plot RUN` draws them on request. Added to the sweep's overrides, so sweep.json
# records it.
SWEEP_FIGURES = "log.figures=none"


def sweep_figures(doc: dict[str, Any], swept: Grid, overrides: list[str]) -> list[str]:
    """[SWEEP_FIGURES], or [] when log.figures (or its older spelling log.plots) is set."""
    keys = {"log.figures", "log.plots"}
    log = doc.get("log")
    given = {f"log.{k}" for k in log} if isinstance(log, dict) else set()
    given |= {o.partition("=")[0].strip() for o in overrides} | set(swept)
    return [] if given & keys else [SWEEP_FIGURES]


def check_sweep(
    config: str | Path | dict[str, Any],
    grid: GridSpec = None,
    seeds: int | None = None,
    overrides: list[str] | None = None,
    *,
    name: str | None = None,
    executor: str = "pool",
    slurm: list[str] | None = None,
    **_: Any,
) -> Plan:
    """What ``collapse sweep --dry-run`` checks: the executor's options and every point."""
    check_executor(executor, slurm or [])
    return plan_sweep(config, grid, seeds, overrides, name=name)


def _as_grid(grid: GridSpec) -> Grid:
    """``--grid`` strings, or a dict of Python values (a list, or a comma-separated string)."""
    if not grid:
        return {}
    if isinstance(grid, dict):
        return grid_of_values(grid)
    return parse_grid_options(list(grid))


def _load(doc: dict[str, Any], overrides: list[str], source: str, where: str) -> RunConfig:
    try:
        return load_config(doc, overrides, label=source)
    except ConfigError as e:
        raise ConfigError(f"grid point {where}: {e}" if where else str(e)) from None


def _check_parts(cfg: RunConfig, where: str) -> None:
    """What `collapse validate` checks beyond the schema: the device and every part built."""
    from .build import build, resolve_device

    try:
        resolve_device(cfg.device)
        build(cfg)
    except ConfigError as e:
        raise ConfigError(f"grid point {where}: {e}") from None
