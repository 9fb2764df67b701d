"""Reading an array or a column of labels from a file: .npy (never pickles), .pt/.pth (tensors
only, ``weights_only=True``), .csv/.tsv, .safetensors when that package is installed, and a
column of a Parquet or Arrow table when pyarrow is. ``FILE:NAME`` picks one tensor of a .pt or
.safetensors file, or one column of a table, when it holds several."""

from __future__ import annotations

import contextlib
import pickle
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import ConfigError

TABLES = (".parquet", ".arrow", ".feather", ".ipc")
FORMATS = (".npy", ".pt", ".pth", ".csv", ".tsv", ".safetensors", *TABLES)


def split_column(path: Path) -> tuple[Path, str | None]:
    """``FILE:NAME`` → (FILE, NAME) when FILE is a file and the whole is not; else (path, None)."""
    file, colon, name = str(path).rpartition(":")
    if colon and file and name and not path.exists() and Path(file).is_file():
        return Path(file), name
    return path, None


def read_array(path: Path, what: str) -> np.ndarray | torch.Tensor:
    """The raw array in a file; for labels, text cells that are not numbers stay strings."""
    path, name = split_column(path)
    if not path.is_file():
        raise ConfigError(f"{what} {path}: {'is a folder' if path.is_dir() else 'no such file'}")
    suffix = path.suffix.lower()
    if name is not None and suffix not in (".pt", ".pth", ".safetensors", *TABLES):
        raise ConfigError(f"{what} {path}: a {suffix} file holds one array; drop ':{name}'")
    try:
        if suffix == ".npy":
            return np.load(path, allow_pickle=False)  # a pickled (object) array is refused
        if suffix in (".pt", ".pth"):
            obj = torch.load(path, map_location="cpu", weights_only=True)
            return _single(obj, what, path, name)
        if suffix in (".csv", ".tsv"):
            return _read_text(path, "," if suffix == ".csv" else "\t", what)
        if suffix == ".safetensors":
            try:
                from safetensors.torch import load_file
            except ImportError:
                raise ConfigError(
                    f"{what} {path}: reading .safetensors needs the safetensors package: "
                    "pip install safetensors"
                ) from None
            return _single(load_file(path), what, path, name)
        if suffix in TABLES:
            from .tables import read_table_column

            return read_table_column(path, what, name)
    except ConfigError:
        raise
    except Exception as e:  # pickles, truncated or corrupt files
        text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if suffix == ".npy" and "pickle" in text.lower():
            text = "it holds pickled Python objects, never loaded here; np.save a numeric array"
        elif isinstance(e, pickle.UnpicklingError):
            text = "torch.load(weights_only=True) refused it; torch.save a plain tensor"
        raise ConfigError(f"{what} {path}: cannot read it: {text}") from None
    raise ConfigError(f"{what} {path}: unknown file type {suffix!r}; use {', '.join(FORMATS)}")


def _single(obj: Any, what: str, path: Path, name: str | None = None) -> torch.Tensor:
    """A tensor, or one tensor of a mapping (a saved dict, a safetensors file): the one there
    is, or the one ``name`` picks."""
    if isinstance(obj, dict):
        keys = [str(k) for k, v in obj.items() if isinstance(v, torch.Tensor)]
        if name is not None:
            if name not in keys:
                raise ConfigError(
                    f"{what} {path}: no tensor named {name!r}; it holds {', '.join(keys) or 'none'}"
                )
            return next(v for k, v in obj.items() if str(k) == name)
        if len(keys) != 1:
            listed = f" ({', '.join(keys)})" if keys else ""
            pick = f"; name one: {path}:{keys[0]}" if keys else ""
            raise ConfigError(f"{what} {path}: holds {len(keys)} tensors{listed}{pick}")
        return next(v for v in obj.values() if isinstance(v, torch.Tensor))
    if name is not None:
        raise ConfigError(f"{what} {path}: holds one tensor, not named ones; drop ':{name}'")
    if not isinstance(obj, torch.Tensor):
        raise ConfigError(f"{what} {path}: holds a {type(obj).__name__}, not a tensor")
    return obj


def _not_number(cells: list[str]) -> str | None:
    for c in cells:
        try:
            float(c)
        except ValueError:
            return c.strip()
    return None


def _read_text(path: Path, sep: str, what: str) -> np.ndarray:
    lines = path.read_text().splitlines()
    if what == "labels":  # one short column: numbers when every cell is one, else strings
        rows = [[c.strip() for c in ln.split(sep)] for ln in lines if ln.strip()]
        if len({len(r) for r in rows}) > 1:
            raise ConfigError(f"labels {path}: lines with different numbers of values")
        with contextlib.suppress(ValueError):
            return np.array(rows, dtype=np.float64)
        return np.array(rows, dtype=str)
    # Embeddings, read as float32: a first line with a cell that is not a number is a header.
    first = next((i for i, ln in enumerate(lines) if ln.strip()), 0)
    header = bool(lines) and _not_number(lines[first].split(sep)) is not None
    try:
        with warnings.catch_warnings():  # "input contained no data": reported as empty later
            warnings.simplefilter("ignore")
            skip = first + 1 if header else 0
            return np.loadtxt(path, np.float32, delimiter=sep, skiprows=skip, ndmin=2)
    except ValueError:  # find the line to name (slow, only on this path)
        width = None
    for i, cells in ((i, ln.split(sep)) for i, ln in enumerate(lines, 1) if ln.strip()):
        if header and i == first + 1:
            continue
        width = width or len(cells)
        if len(cells) != width:
            many = f"{len(cells)} value" + "s" * (len(cells) != 1)
            raise ConfigError(f"{what} {path}: line {i} has {many}, the lines before {width}")
        if (bad := _not_number(cells)) is not None:
            raise ConfigError(f"{what} {path}: line {i}: {bad!r} is not a number")
    raise ConfigError(f"{what} {path}: cannot read it as {sep!r}-separated numbers")


def load_labels(path: str | Path, n: int) -> torch.Tensor:
    """Class indices 0..K−1 (long, (n,)) from one label per row: integers, whole numbers or
    names, in any format of `load_embeddings`. A text file with n + 1 lines has a header."""
    path = Path(path)
    raw = read_array(path, "labels")
    if isinstance(raw, torch.Tensor):
        raw = (raw.double() if raw.is_floating_point() else raw).numpy()
    elif path.suffix.lower() in (".csv", ".tsv") and raw.shape[0] == n + 1:
        raw = raw[1:]  # the header line
        with contextlib.suppress(ValueError):
            raw = raw.astype(np.float64)
    try:
        return class_indices(raw, str(path), n)
    except (ValueError, TypeError) as e:
        raise ConfigError(str(e) if "labels" in str(e) else f"labels {path}: {e}") from None


def class_indices(arr: torch.Tensor | np.ndarray, path: str, n: int) -> torch.Tensor:
    """Class indices 0..K-1 from integer, integral float or string labels, one per sample."""
    a = np.asarray(arr)
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 1 or a.shape[0] != n:
        raise ValueError(f"labels: {path} has shape {a.shape}; expected ({n},), one per sample")
    if a.dtype.kind == "f" and not np.all(np.mod(a, 1) == 0):
        raise ValueError(f"labels: {path} holds non-integer numbers; labels name classes")
    _, index = np.unique(a, return_inverse=True)
    return torch.as_tensor(index.reshape(-1), dtype=torch.long)
