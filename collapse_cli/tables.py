"""One column of a Parquet or Arrow (IPC, Feather) table as a NumPy array: a column of vectors
(a list or fixed-size-list column) as an (N, d) matrix, a column of labels as (N,). Needs pyarrow,
imported here only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError


def _read(path: Path, what: str) -> Any:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigError(
            f"{what} {path}: reading {path.suffix} needs pyarrow: pip install pyarrow"
        ) from None
    if path.suffix.lower() == ".parquet":
        return pq.read_table(path)
    try:
        with pa.memory_map(str(path)) as source:
            return pa.ipc.open_file(source).read_all()
    except pa.ArrowInvalid:  # the streaming format has no footer
        with pa.memory_map(str(path)) as source:
            return pa.ipc.open_stream(source).read_all()


def _is_vectors(kind: Any) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_list(kind) or pa.types.is_large_list(kind)) or bool(
        pa.types.is_fixed_size_list(kind)
    )


def _listing(table: Any) -> str:
    return ", ".join(f"{f.name} ({f.type})" for f in table.schema)


def read_table_column(path: Path, what: str, name: str | None) -> np.ndarray:
    """The column ``name`` of the table in ``path``, or the one that fits: for embeddings the
    single column of vectors (or, when every column is a float, the columns side by side), for
    labels the single column. Several candidates: a ConfigError naming them."""
    table = _read(path, what)  # first: it says how to install pyarrow when it is missing
    import pyarrow as pa

    if name is not None:
        if name not in table.column_names:
            raise ConfigError(f"{what} {path}: no column {name!r}; it has {_listing(table)}")
    elif what == "labels":
        if table.num_columns != 1:
            raise ConfigError(
                f"{what} {path}: holds {table.num_columns} columns ({_listing(table)}); "
                f"name one: {path}:{table.column_names[0]}"
            )
        name = table.column_names[0]
    else:
        vectors = [f.name for f in table.schema if _is_vectors(f.type)]
        if len(vectors) > 1:
            raise ConfigError(
                f"{what} {path}: holds {len(vectors)} columns of vectors ({', '.join(vectors)}); "
                f"name one: {path}:{vectors[0]}"
            )
        if not vectors:
            if table.num_columns and all(pa.types.is_floating(f.type) for f in table.schema):
                return np.column_stack([c.to_numpy() for c in table.columns])  # one per dim
            raise ConfigError(
                f"{what} {path}: holds no column of vectors ({_listing(table)}); give a list "
                "column (one vector per row), or float columns only"
            )
        name = vectors[0]
    column = table.column(name).combine_chunks()
    where = f"{what} {path}:{name}"
    if column.null_count:
        first = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
        raise ConfigError(f"{where}: {column.null_count} empty (null) rows, the first row {first}")
    if what == "labels" or not _is_vectors(column.type):
        if what != "labels":
            raise ConfigError(f"{where}: holds {column.type}, not vectors (a list column)")
        values = column.to_numpy(zero_copy_only=False)
        return values.astype(str) if values.dtype == object else values
    return _matrix(column, where)


def _matrix(column: Any, where: str) -> np.ndarray:
    """(N, d) from a list column whose rows all have d values."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(column)
    lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
    if n and (lengths != lengths[0]).any():
        row = int(np.flatnonzero(lengths != lengths[0])[0])
        raise ConfigError(
            f"{where}: rows of different lengths (row 0 has {lengths[0]} values, row {row} "
            f"{lengths[row]})"
        )
    flat = column.flatten()
    if not (pa.types.is_floating(flat.type) or pa.types.is_integer(flat.type)):
        raise ConfigError(f"{where}: its vectors hold {flat.type}, not numbers")
    values = flat.to_numpy(zero_copy_only=False, writable=True)  # torch wants writable memory
    return values.reshape(n, int(lengths[0]) if n else 0)
