"""Text data (``data: {name: text}``): sentences or tab-separated pairs from a file, or by default
the docstrings of Python's standard library; held-out pairs for recall@1.

A batch of text is a (B, L) uint8 tensor of UTF-8 bytes, zero-padded, so the loop, the views and
the objectives handle it like any other tensor and the text encoder (`sentence_transformer`)
decodes and tokenises it. Integer batches are never augmented (views.py): the two views of a
two-view loss are the same sentences, and the encoder's dropout makes them differ (SimCSE).
"""

from __future__ import annotations

import ast
import functools
import re
import sysconfig
from pathlib import Path

import torch

from .data import DATASETS, Data, Dataset, Fraction
from .errors import ConfigError
from .registry import PositiveInt

MAX_BYTES = 256  # a sentence is cut at this many UTF-8 bytes (the tokenizer cuts it further)

# The default corpus: the docstrings of every top-level module of the standard library, in
# sorted file order and ast.walk order. It depends on the Python version, nothing else.
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
MIN_WORDS, MAX_WORDS = 4, 40


# ---------------------------------------------------------------------------- bytes
def encode_texts(texts: list[str], max_bytes: int = MAX_BYTES) -> torch.Tensor:
    """(n, L) uint8: each text's UTF-8 bytes, cut at ``max_bytes`` on a character boundary,
    zero-padded to the longest (L ≥ 1). `decode_texts` inverts it."""
    raw = [t.encode("utf-8")[:max_bytes].decode("utf-8", "ignore").encode("utf-8") for t in texts]
    out = torch.zeros(len(raw), max([len(r) for r in raw] + [1]), dtype=torch.uint8)
    for i, r in enumerate(raw):
        if r:
            out[i, : len(r)] = torch.frombuffer(bytearray(r), dtype=torch.uint8)
    return out


def decode_texts(x: torch.Tensor) -> list[str]:
    """The texts of a (B, L) byte tensor (any device, any integer dtype); a zero row is ''."""
    rows = x.to("cpu", torch.uint8).numpy()
    return [r.tobytes().rstrip(b"\0").decode("utf-8", "ignore") for r in rows]


# ---------------------------------------------------------------------------- documents
# A document is a list of sentences that belong together: the sentences of one docstring, the
# two sentences of one line of a pair file, or one line of a sentence file. Held-out pairs are
# the first two sentences of documents that have two.
Document = list[str]


def read_documents(path: Path) -> list[Document]:
    """The documents of a file: one sentence per line, or, when any line holds a tab, one pair
    of tab-separated sentences per line. Blank lines are skipped; a pair line without exactly
    two non-empty sentences is an error naming its line."""
    if not path.is_file():
        raise ConfigError(f"path: {path}: {'is a folder' if path.is_dir() else 'no such file'}")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise ConfigError(f"path: {path}: not UTF-8 text (byte {e.start})") from None
    usable = [(i, ln.strip()) for i, ln in enumerate(lines, 1) if ln.strip()]
    if not usable:
        raise ConfigError(f"path: {path}: no usable lines (the file is empty or blank)")
    if not any("\t" in ln for _, ln in usable):
        return [[ln] for _, ln in usable]
    docs = []
    for i, _ in usable:
        fields = [f.strip() for f in lines[i - 1].split("\t")]  # the raw line: a tab may end it
        if len(fields) != 2 or not all(fields):
            n = len(fields)
            got = "an empty sentence" if n == 2 else f"{n} field" + "s" * (n != 1)
            raise ConfigError(
                f"path: {path}: line {i} has {got}; a pair file (a line with a tab makes it "
                "one) needs two tab-separated sentences on every line"
            )
        docs.append(fields)
    return docs


def docstring_sentences(doc: str) -> Document:
    """The prose sentences of a cleaned docstring: paragraphs with indented lines or ``>>>``
    (code, parameter lists) are skipped; a sentence starts with a capital letter, ends with
    . ! or ? and has MIN_WORDS to MAX_WORDS words."""
    out = []
    for para in doc.split("\n\n"):
        lines = para.splitlines()
        if not lines or any(ln.startswith((" ", "\t", ">>>")) for ln in lines):
            continue
        for s in SENTENCE_END.split(" ".join(ln.strip() for ln in lines)):
            if MIN_WORDS <= len(s.split()) <= MAX_WORDS and s[0].isupper() and s[-1] in ".!?":
                out.append(s)
    return out


@functools.cache
def stdlib_documents() -> list[Document]:
    """The docstrings of the standard library's top-level modules (their modules, classes and
    functions), parsed with ast (nothing is imported), as sentence lists; parsed once per
    process (about a second)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    docs = []
    for file in sorted(root.glob("*.py")):
        try:
            tree = ast.parse(file.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, OSError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                sentences = docstring_sentences(ast.get_docstring(node, clean=True) or "")
                if sentences:
                    docs.append(sentences)
    if not docs:
        raise ConfigError(
            f"data: text: no docstrings found under {root} (this Python has no standard library "
            "sources); give data.path"
        )
    return docs


def split_documents(
    docs: list[Document], test_fraction: float, max_test: int, seed: int
) -> tuple[list[str], list[tuple[str, str]]]:
    """(training sentences, held-out pairs). round(test_fraction · P) of the P documents with
    two sentences, at most ``max_test``, drawn from ``seed``, give the pairs (their first two
    sentences); every sentence of the other documents that is not in a pair trains, once."""
    pairable = [i for i, d in enumerate(docs) if len(d) >= 2]
    n_test = min(round(test_fraction * len(pairable)), max_test)
    # recall@1 needs at least two pairs to choose between
    n_test = max(n_test, 2) if test_fraction > 0 and len(pairable) >= 2 else 0
    order = torch.randperm(len(pairable), generator=torch.Generator().manual_seed(seed))
    held = sorted(pairable[int(k)] for k in order[:n_test])
    pairs = [(docs[i][0], docs[i][1]) for i in held]
    in_pairs = {s for p in pairs for s in p}
    held_set = set(held)
    train = dict.fromkeys(
        s for i, d in enumerate(docs) if i not in held_set for s in d if s not in in_pairs
    )  # ordered and without repeats
    return list(train), pairs


@DATASETS.register("text")
class Text(Dataset):
    """Sentences or sentence pairs from a file, or the standard library's docstrings.

    ``path``: one sentence per line, or two tab-separated per line (pairs); by default the
    docstrings of Python's standard library. A share ``test_fraction`` of the pairs (the lines
    of a pair file; the first two sentences of a docstring), at most ``max_test``, is held out
    of training: recall_at_1 is how often a held-out sentence's nearest partner (cosine) is its
    own. A file of single sentences has no pairs and no recall_at_1. Samples are UTF-8 bytes
    cut at ``max_bytes``.
    """

    def __init__(
        self,
        path: str | None = None,
        test_fraction: Fraction = 0.2,
        max_test: PositiveInt = 256,
        max_bytes: PositiveInt = MAX_BYTES,
        seed: int = 0,
    ) -> None:
        docs = read_documents(Path(path)) if path is not None else stdlib_documents()
        self.sentences, self.pairs = split_documents(docs, test_fraction, max_test, seed)
        if len(self.sentences) < 2:
            where = path or "the standard library's docstrings"
            raise ValueError(
                f"path: {where} leaves {len(self.sentences)} training sentence(s) after the "
                "held-out pairs; a run needs at least 2"
            )
        self.max_bytes = max_bytes
        self.n = len(self.sentences)
        self._x = encode_texts(self.sentences, max_bytes)  # (n, L) uint8
        self.dim = self._x.shape[1]

    def materialize(self) -> Data:
        pairs = None
        if self.pairs:
            a, b = zip(*self.pairs, strict=True)
            pairs = (encode_texts(list(a), self.max_bytes), encode_texts(list(b), self.max_bytes))
        return Data(self._x, pairs=pairs)
