"""Config loading, overrides, validation errors and the component registries."""

from __future__ import annotations

from pathlib import Path

import pytest

from collapse_cli.config import apply_overrides, load_config, resolved
from collapse_cli.errors import ConfigError
from collapse_cli.registry import PositiveFloat, Registry

from .conftest import CONFIGS, write

GOOD = (CONFIGS / "infonce.yaml").read_text()


def test_shipped_configs_load_with_defaults_filled():
    cfg = load_config(CONFIGS / "infonce.yaml")
    data = resolved(cfg)
    assert data["name"] == "infonce"
    assert data["loss"] == {"name": "infonce_self", "temperature": 1.0}
    assert data["optimizer"]["lr"] == 1e-3  # torch's Adam default, filled in
    assert data["encoder"].items() >= {"name": "linear", "out_dim": 128, "bias": True}.items()
    assert data["train"]["steps"] == 500 and data["log"]["every"] == 50


# Each case: (config text or override list, words the one-line message must contain).
BAD_FILES = {
    "yaml syntax": ("seed: 0\nname: a: b\n", ["line 2", "invalid YAML"]),
    "empty file": ("", ["empty"]),
    "not a mapping": ("- a\n- b\n", ["mapping", "list"]),
    "unknown top key": (GOOD + "lossy: 1\n", ["lossy: unknown key", "allowed:"]),
    "missing block": (GOOD.replace("encoder:\n  name: linear\n  out_dim: 128\n", ""), ["encoder"]),
}
BAD_OVERRIDES = {
    "unknown nested key": (["train.stepz=3"], ["train.stepz: unknown key", "steps"]),
    "unknown component param": (["encoder.depth=3"], ["encoder.depth: unknown key", "out_dim"]),
    "wrong type": (["train.steps=many"], ["train.steps", "integer", "'many'"]),
    "fractional int": (["train.steps=1.5"], ["train.steps", "1.5"]),
    "negative lr": (["optimizer.lr=-1"], ["optimizer.lr", "greater than 0", "-1"]),
    "zero temperature": (["loss.temperature=0"], ["loss.temperature", "greater than 0"]),
    "zero dimensions": (["encoder.out_dim=0"], ["encoder.out_dim", "greater than 0"]),
    "unknown loss": (["loss.name=infonse"], ["loss.name", "'infonse' is not a loss", "variance"]),
    "unknown optimizer": (["optimizer.name=adamm"], ["did you mean 'adam'", "sgd"]),
    "bad device": (["device=gpu"], ["device", "'gpu'"]),
    "path in name": (["name=../escape"], ["name", "path separators"]),
    "block not a mapping": (["train=3"], ["train: must be a mapping"]),
    "malformed override": (["train.steps"], ["expected key.path=value"]),
    "override into scalar": (["seed.value=1"], ["seed is not a mapping"]),
    "bad activation": (["encoder.name=mlp", "encoder.activation=sigmoidal"], ["activation"]),
}


@pytest.mark.parametrize("case", BAD_FILES, ids=list(BAD_FILES))
def test_bad_config_files_name_the_problem(tmp_path: Path, case: str):
    text, words = BAD_FILES[case]
    path = write(tmp_path / "bad.yaml", text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    msg = str(info.value)
    assert msg.startswith(str(path)) and "\n" not in msg
    for w in words:
        assert w in msg, (w, msg)


@pytest.mark.parametrize("case", BAD_OVERRIDES, ids=list(BAD_OVERRIDES))
def test_bad_values_name_the_yaml_path(case: str):
    overrides, words = BAD_OVERRIDES[case]
    with pytest.raises(ConfigError) as info:
        load_config(CONFIGS / "infonce.yaml", overrides)
    msg = str(info.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, (w, msg)


def test_missing_file_is_a_config_error(tmp_path: Path):
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "nope.yaml")


def test_python_tags_are_rejected_by_the_safe_loader(tmp_path: Path):
    path = write(tmp_path / "evil.yaml", "seed: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(path)


def test_overrides_are_yaml_scalars_and_follow_the_path():
    cfg = load_config(
        CONFIGS / "infonce.yaml",
        [
            "train.steps=2000",
            "optimizer.lr=0.01",
            "optimizer.eps=1e-6",  # YAML 1.1 reads this as a string; the schema makes it a float
            "encoder.name=mlp",
            "encoder.out_dim=64",
            "encoder.hidden=[16, 8]",
            "train.batch_size=128",
            "log.verdict.dimensional_fraction=0.5",
        ],
    )
    assert cfg.train.steps == 2000 and cfg.train.batch_size == 128
    assert cfg.optimizer.params()["lr"] == 0.01 and cfg.optimizer.params()["eps"] == 1e-6
    assert (
        cfg.encoder.params().items()
        >= {
            "hidden": [16, 8],
            "out_dim": 64,
            "activation": "relu",
            "batch_norm": False,
            "bias": True,
        }.items()
    )
    assert cfg.log.verdict.dimensional_fraction == 0.5


def test_overrides_do_not_touch_the_original_document():
    doc = {"train": {"steps": 5}}
    out = apply_overrides(doc, ["train.steps=7", "log.every=2"], "x")
    assert doc == {"train": {"steps": 5}}
    assert out == {"train": {"steps": 7}, "log": {"every": 2}}


def test_dict_configs_are_accepted_and_named_run():
    import yaml

    cfg = load_config(yaml.safe_load(GOOD) | {"name": None})
    assert cfg.name == "run"


def test_run_name_defaults_to_the_file_stem(tmp_path: Path):
    path = write(tmp_path / "my exp.yaml", GOOD.replace("name: infonce\n", ""))
    assert load_config(path).name == "my-exp"


# --------------------------------------------------------------------------- registries


def test_registry_reads_the_schema_from_the_signature():
    reg = Registry("widget", injected=("in_dim",))

    @reg.register("box")
    def box(in_dim: int, width: PositiveFloat = 2.0, label: str = "a") -> tuple:
        """A box."""
        return (in_dim, width, label)

    assert reg.names() == ["box"]
    params = reg.params("box")
    assert [p.name for p in params] == ["width", "label"]
    assert params[0].default == 2.0 and not params[0].required
    assert reg.get("box").description == "A box."
    assert reg.build("box", 3, width=1.0) == (3, 1.0, "a")


def test_registry_rejects_duplicates_and_suggests_names():
    reg = Registry("widget")
    reg.register("sphere")(lambda: None)
    with pytest.raises(ValueError, match="twice"):
        reg.register("sphere")(lambda: None)
    with pytest.raises(ConfigError, match=r"did you mean 'sphere'\?\); choose from sphere"):
        reg.get("spere")


def test_every_registered_component_builds_with_its_defaults():
    from collapse_cli.config import registries

    regs = registries()
    assert {"gaussian"} <= set(regs["data"].names())
    assert {"linear", "mlp"} <= set(regs["encoder"].names())
    assert {"variance", "infonce_self"} <= set(regs["loss"].names())
    assert {"sgd", "adam", "adamw"} <= set(regs["optimizer"].names())
    for name in regs["optimizer"].names():
        import torch

        opt = regs["optimizer"].build(name, [torch.nn.Parameter(torch.zeros(1))])
        assert isinstance(opt, torch.optim.Optimizer)


# --------------------------------------------------------------------------- constructors
@pytest.mark.parametrize(
    ("build", "words"),
    [
        (lambda: _objective("infonce", temperature=0), "temperature: must be > 0, got 0"),
        (lambda: _objective("byol", momentum=1.5), "momentum: must be <= 1, got 1.5"),
        (lambda: _objective("barlow_twins", lambd=-1.0), "lambd: must be >= 0"),
        (lambda: _encoder("mlp")((4,), out_dim=0), "out_dim: must be > 0, got 0"),
        (lambda: _encoder("mlp")((4,), hidden=[8, -2]), r"hidden: every entry must be > 0"),
        (lambda: _encoder("cnn")((1, 8, 8), activation="elu"), "activation: must be one of relu"),
    ],
)
def test_constructors_check_their_own_hyperparameters(build, words: str):
    """A component built from Python, not YAML, still names the parameter it refuses."""
    with pytest.raises(ValueError, match=words):
        build()


def _objective(name: str, **params):
    from collapse_cli.objectives import OBJECTIVES

    return OBJECTIVES.get(name).factory(**params)


def _encoder(name: str):
    import collapse_cli.encoders as encoders

    return getattr(encoders, name)


def test_a_type_error_inside_a_component_is_reported_as_a_bug_not_as_config(tmp_path):
    from collapse_cli.errors import ComponentBug
    from collapse_cli.objectives import OBJECTIVES
    from collapse_cli.objectives.base import Objective
    from collapse_cli.training.build import build

    @OBJECTIVES.register("broken_for_test")
    class Broken(Objective):
        """A loss whose constructor has a bug."""

        def __init__(self, width: int = 2) -> None:
            super().__init__()
            self.width = len(width)  # TypeError: the component's own mistake

    try:
        cfg = load_config(
            {"data": {"name": "gaussian"}, "encoder": {"name": "linear"},
             "loss": {"name": "broken_for_test"}, "optimizer": {"name": "adam"}}
        )  # fmt: skip
        with pytest.raises(ComponentBug, match="loss 'broken_for_test' failed in its own code"):
            build(cfg)
    finally:
        OBJECTIVES._entries.pop("broken_for_test")
