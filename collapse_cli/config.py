"""The YAML schema: loading, ``key.path=value`` overrides, validation and the resolved dump."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from .catalogue import KNN_K, REPRESENTATIONS
from .errors import ConfigError
from .registry import Registry
from .rundir import sanitize_name
from .verdict import DEFAULT_THRESHOLDS, STOP_VERDICTS
from .views import ViewsConfig
from .yamlfile import parse_scalar, read_yaml


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Component(BaseModel):
    """A component block: ``name`` plus that component's own parameters (checked later)."""

    model_config = ConfigDict(extra="allow")
    name: str

    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class VerdictConfig(_Strict):
    """Thresholds of the collapse verdict; the README explains the defaults."""

    complete_variance_ratio: float = Field(
        DEFAULT_THRESHOLDS["complete_variance_ratio"], gt=0, lt=1
    )
    complete_std_l2: float = Field(DEFAULT_THRESHOLDS["complete_std_l2"], gt=0, lt=1)
    dimensional_fraction: float = Field(DEFAULT_THRESHOLDS["dimensional_fraction"], gt=0, lt=1)


class StopOnConfig(_Strict):
    """train.stop_on: end a run once its verdict has held at ``patience`` + 1 log steps in a row
    (the step it first held and ``patience`` more); status ``stopped``. Off by default."""

    verdict: str
    patience: int = Field(0, ge=0)

    @field_validator("verdict")
    @classmethod
    def _verdict(cls, v: str) -> str:
        if v not in STOP_VERDICTS:
            raise ValueError(f"{v!r} is not a verdict to stop on; use {' or '.join(STOP_VERDICTS)}")
        return v


class TrainConfig(_Strict):
    steps: int = Field(500, gt=0)
    batch_size: int | None = Field(None, gt=0)
    checkpoint_every: int | None = Field(None, gt=0)
    deterministic: bool = False
    autocast: Literal["bf16"] | None = None
    threads: int | None = Field(None, gt=0)  # torch's CPU threads for the run; None: the default
    stop_on: StopOnConfig | None = None  # end a run that is dead (training/stopping.py)


class LidarConfig(_Strict):
    """``log.lidar``: LiDAR's probe set, drawn once from the run's seed (training/probes.py)."""

    samples: int = Field(256, ge=2)  # n surrogate classes: samples of the training data
    views: int = Field(8, ge=2)  # q augmented views of each


class LogConfig(_Strict):
    every: int = Field(50, gt=0)
    spectrum: bool = True
    knn_k: int = Field(KNN_K, gt=0)  # neighbours of knn_acc (labelled data with a held-out split)
    embeddings: int = Field(4096, ge=0)  # rows of embeddings.npy saved at the end; 0: none
    csv: bool = False  # also write metrics.csv at the end
    tensorboard: bool = False  # also write TensorBoard scalars (the tensorboard extra)
    verdict: VerdictConfig = VerdictConfig()
    # The standard figures: drawn into plots/ when the run ends, or none (`collapse plot RUN`
    # draws them later). A sweep's default is none (docs/performance.md, i).
    figures: Literal["end", "none"] = "end"
    lidar: LidarConfig | None = None  # LiDAR at log steps over its own probe set; None: off
    probe: Literal["linear"] | None = None  # probe_acc at log steps (labelled data); None: off
    # Where the metrics are measured, the first unprefixed (training/taps.py); None: the
    # objective's own representation, and the encoder's too where a projector follows it.
    at: list[str] | None = None

    @field_validator("at", mode="before")
    @classmethod
    def _at(cls, v: Any) -> Any:
        v = [v] if isinstance(v, str) else v
        if isinstance(v, list):
            for name in v:
                if name not in REPRESENTATIONS:
                    raise ValueError(
                        f"{name!r} is not a place to measure; use {', '.join(REPRESENTATIONS)}, "
                        "or a list of them"
                    )
            if not v:
                raise ValueError("an empty list measures nothing; leave log.at out for the default")
        return v

    @model_validator(mode="before")
    @classmethod
    def _figures(cls, data: Any) -> Any:
        """``log.plots: true | false``, the older spelling, reads as ``figures: end | none``
        (run folders and sweeps written before keep loading); true/false for ``figures`` too."""
        if not isinstance(data, dict) or not ({"plots", "figures"} & set(data)):
            return data
        data = dict(data)
        if isinstance(data.get("figures"), bool):
            data["figures"] = FIGURES_OF[data["figures"]]
        if "plots" in data:
            plots = data.pop("plots")
            if not isinstance(plots, bool):
                raise ValueError(
                    f"plots: {plots!r} is not true or false (plots is the older spelling of "
                    "figures: end | none)"
                )
            if data.setdefault("figures", FIGURES_OF[plots]) != FIGURES_OF[plots]:
                raise ValueError(
                    f"plots (the older spelling of figures) is {str(plots).lower()} but "
                    f"figures is {data['figures']}; give one of them"
                )
        return data

    @property
    def plots(self) -> bool:
        """The older spelling, for code that reads it: are the figures drawn at the end?"""
        return self.figures == "end"


FIGURES_OF = {True: "end", False: "none"}  # log.plots (and a boolean log.figures) → log.figures


class RunConfig(_Strict):
    name: str | None = None
    seed: int = 0
    device: str = "auto"
    data: Component
    encoder: Component
    loss: Component
    optimizer: Component
    views: ViewsConfig = ViewsConfig()
    train: TrainConfig = TrainConfig()
    log: LogConfig = LogConfig()
    # Where it was loaded from (a path, or "config" for a dict): errors found later name it.
    _source: str = PrivateAttr("config")

    @property
    def source(self) -> str:
        return self._source

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", v):
            raise ValueError(f"{v!r} is not a device; use auto, cpu, cuda or cuda:N")
        return v

    @field_validator("name")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}", v):
            raise ValueError(
                f"{v!r} is not a usable run name; use letters, digits, '.', '_' and '-' "
                "(no path separators), starting with a letter or digit"
            )
        return v


COMPONENT_BLOCKS = ("data", "encoder", "loss", "optimizer")


def registries() -> dict[str, Registry]:
    """The registry behind each component block (imports torch)."""
    from . import sentence_transformer, text  # noqa: F401 - register their names
    from .data import DATASETS
    from .encoders import ENCODERS
    from .objectives import OBJECTIVES
    from .optim import OPTIMIZERS

    return {"data": DATASETS, "encoder": ENCODERS, "loss": OBJECTIVES, "optimizer": OPTIMIZERS}


# --------------------------------------------------------------------------- loading


def apply_overrides(doc: dict[str, Any], overrides: list[str], source: str) -> dict[str, Any]:
    """Return a copy of ``doc`` with each ``key.path=value`` applied (values parsed as YAML)."""
    import copy

    doc = copy.deepcopy(doc)
    for item in overrides:
        key, sep, raw = item.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", p) for p in parts):
            raise ConfigError(f"override {item!r}: expected key.path=value, e.g. train.steps=2000")
        try:
            value = parse_scalar(raw)
        except yaml.YAMLError:
            raise ConfigError(f"override {item!r}: the value is not valid YAML") from None
        node = doc
        for i, p in enumerate(parts[:-1]):
            child = node.setdefault(p, {})
            if not isinstance(child, dict):
                here = ".".join(parts[: i + 1])
                raise ConfigError(f"override {item!r}: {here} is not a mapping in {source}")
            node = child
        node[parts[-1]] = value
    return doc


def load_config(
    source: str | Path | dict[str, Any] | RunConfig,
    overrides: list[str] | None = None,
    *,
    label: str | None = None,
) -> RunConfig:
    """Load, override and validate a config; every problem is a ConfigError naming its path.

    ``source`` is a YAML path, a dict of the YAML's shape, or an already loaded RunConfig,
    which is returned as it is when there are no overrides. ``label`` names a dict's origin in
    errors (a sweep's YAML file).
    """
    label = label or "config"
    if isinstance(source, RunConfig):
        if not overrides:
            return source
        source, label = resolved(source), source.source
    if isinstance(source, dict):
        doc, stem = source, "run"
    else:
        doc, label, stem = read_yaml(source), str(source), Path(source).stem
        if stem == "config" and Path(source).parent.name:  # runs/<id>/config.yaml repeats a run
            stem = "run"
    if "sweep" in doc:
        raise ConfigError(
            f"{label}: sweep: this config describes a sweep; run it with 'collapse sweep {label}' "
            "(collapse run and validate take one run: remove the sweep block for that)"
        )
    doc = apply_overrides(doc, overrides or [], label)
    try:
        cfg = RunConfig.model_validate(doc)
    except ValidationError as e:
        raise ConfigError(f"{label}: {_describe(e, RunConfig)}") from None
    if cfg.name is None:
        cfg.name = sanitize_name(stem)
    regs = registries()
    for block in COMPONENT_BLOCKS:
        spec: Component = getattr(cfg, block)
        reg = regs[block]
        reg.get(spec.name, where=f"{label}: {block}.name")
        _check_near_collapse(reg, spec, label)
        try:
            model = _params_model(reg, spec.name)
            params = model.model_validate(spec.params())
        except ValidationError as e:
            raise ConfigError(f"{label}: {_describe(e, model, prefix=block)}") from None
        setattr(cfg, block, Component(name=spec.name, **params.model_dump()))
    cfg._source = label
    return cfg


def resolved(cfg: RunConfig) -> dict[str, Any]:
    """The config with every default filled in, as plain YAML-able data."""
    return cfg.model_dump(mode="json")


# --------------------------------------------------------------------------- helpers


def _check_near_collapse(reg: Registry, spec: Component, label: str) -> None:
    """``encoder.init`` / ``encoder.eps`` on an encoder that cannot start near collapse: an
    error naming the encoder and those that can, rather than a bare unknown key."""
    if reg.kind != "encoder":
        return
    known = {p.name for p in reg.params(spec.name)}
    asked = [k for k in ("init", "eps") if k in spec.params() and k not in known]
    if asked:
        able = [n for n in reg.names() if "init" in {p.name for p in reg.params(n)}]
        raise ConfigError(
            f"{label}: encoder.{asked[0]}: the {spec.name} encoder cannot start near collapse "
            f"(init: near_collapse is for {', '.join(able)})"
        )


@cache
def _params_model(reg: Registry, name: str) -> type[BaseModel]:
    """A pydantic model of one component's parameters, built from its signature."""
    fields: dict[str, Any] = {}
    for p in reg.params(name):
        default = ... if p.required else p.default
        fields[p.name] = (p.annotation, default)
    return create_model(  # type: ignore[call-overload]
        f"{reg.kind}_{name}", __config__=ConfigDict(extra="forbid"), **fields
    )


def _describe(e: ValidationError, model: type[BaseModel], prefix: str = "") -> str:
    """One line for the first validation error: ``loss.temperature: must be > 0 (got 0)``."""
    errors = e.errors()
    err = errors[0]
    path = ".".join([prefix] * bool(prefix) + [str(p) for p in err["loc"]]) or "config"
    kind = err["type"]
    if kind == "extra_forbidden":
        allowed = _model_at(model, err["loc"][:-1])
        msg = "unknown key" + (f"; allowed: {', '.join(allowed.model_fields)}" if allowed else "")
    elif kind == "missing":
        msg = "missing (required)"
    elif kind in ("model_type", "dict_type", "model_attributes_type"):
        msg = f"must be a mapping (got {err['input']!r})"
    elif kind == "value_error":
        msg = str(err["ctx"]["error"])
    else:
        msg = err["msg"][0].lower() + err["msg"][1:] + f" (got {err['input']!r})"
    n = len(errors) - 1
    return f"{path}: {msg}" + (f" (and {n} more problem{'s' * (n > 1)})" if n else "")


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The nested pydantic model at ``loc`` (to list its keys), if there is one."""
    current: Any = model
    for p in loc:
        field = current.model_fields.get(str(p)) if isinstance(current, type) else None
        current = field.annotation if field else None
    if isinstance(current, type) and issubclass(current, BaseModel):
        return current
    return None
