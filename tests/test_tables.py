"""What embedding models write, read by ``collapse inspect``: a Parquet or Arrow column of vectors
(and of labels), FILE:NAME to choose among several columns or tensors, and their errors."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from collapse_cli.errors import ConfigError
from collapse_cli.inspection import load_embeddings, load_labels
from collapse_cli.metrics import compute_metrics

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


def _z(n: int = 30, d: int = 5) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((n, d)).astype(np.float32)


def _table(z: np.ndarray, **more: object) -> object:
    return pa.table({"id": np.arange(len(z)), "embedding": pa.array(list(z)), **more})


def _write_ipc(table, path: Path, stream: bool) -> Path:
    with pa.OSFile(str(path), "wb") as sink:
        new = pa.ipc.new_stream if stream else pa.ipc.new_file
        with new(sink, table.schema) as writer:
            writer.write_table(table)
    return path


@pytest.mark.parametrize("kind", ["parquet", "arrow", "feather-stream", "fixed-size"])
def test_the_one_column_of_vectors_is_the_matrix(tmp_path: Path, kind: str):
    z = _z()
    table = _table(z, label=[f"c{i % 3}" for i in range(30)])
    if kind == "fixed-size":
        table = table.set_column(1, "embedding", pa.array(list(z), type=pa.list_(pa.float32(), 5)))
    path = tmp_path / f"z.{'parquet' if kind in ('parquet', 'fixed-size') else 'arrow'}"
    if path.suffix == ".parquet":
        pq.write_table(table, path)
    else:
        _write_ipc(table, path, stream=kind == "feather-stream")
    loaded = load_embeddings(path)
    assert loaded.dtype == torch.float32 and torch.equal(loaded, torch.from_numpy(z))
    assert compute_metrics(loaded)[0] == compute_metrics(torch.from_numpy(z))[0]
    labels = load_labels(f"{path}:label", 30)
    assert labels.tolist() == [i % 3 for i in range(30)]


def test_name_picks_one_column_or_tensor_when_there_are_several(tmp_path: Path, cli):
    z = _z()
    pq.write_table(_table(z, other=pa.array(list(2 * z))), tmp_path / "two.parquet")
    with pytest.raises(ConfigError, match=r"holds 2 columns of vectors \(embedding, other\); "
                       r"name one: .*two.parquet:embedding"):  # fmt: skip
        load_embeddings(tmp_path / "two.parquet")
    assert torch.equal(load_embeddings(f"{tmp_path}/two.parquet:other"), torch.from_numpy(2 * z))
    torch.save({"a": torch.ones(4, 2), "b": torch.zeros(4, 2)}, tmp_path / "two.pt")
    assert torch.equal(load_embeddings(f"{tmp_path}/two.pt:b"), torch.zeros(4, 2))
    result = cli("inspect", f"{tmp_path}/two.parquet:embedding", "--labels", tmp_path / "l.npy")
    assert result.exit_code == 2 and "labels" in result.output  # the labels file is missing
    np.save(tmp_path / "l.npy", np.arange(30) % 2)
    result = cli("inspect", f"{tmp_path}/two.parquet:embedding", "--labels", tmp_path / "l.npy",
                 "--save")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (tmp_path / "two-inspect" / "inspect.json").is_file()


def test_float_columns_side_by_side_are_a_matrix(tmp_path: Path):
    z = _z()
    pq.write_table(pa.table({f"d{j}": z[:, j] for j in range(5)}), tmp_path / "wide.parquet")
    assert torch.equal(load_embeddings(tmp_path / "wide.parquet"), torch.from_numpy(z))


@pytest.mark.parametrize(
    ("table", "name", "message"),
    [
        ({"id": [1, 2], "text": ["a", "b"]}, "", r"holds no column of vectors \(id \(int64\), "),
        ({"v": [[1.0, 2.0], [3.0]]}, "", r"z.parquet:v: rows of different lengths \(row 0 has 2 "),
        ({"v": [[1.0, 2.0], None]}, "", r"1 empty \(null\) rows, the first row 1"),
        ({"v": [["a"], ["b"]]}, "", r"its vectors hold string, not numbers"),
        ({"v": [[1.0], [2.0]]}, ":w", r"no column 'w'; it has v \(list<.*: double>\)"),
        ({"v": [[1.0], [2.0]], "id": [1, 2]}, ":id", r"holds int64, not vectors"),
    ],
)
def test_unusable_tables_are_one_line_errors_naming_the_columns(tmp_path, table, name, message):
    pq.write_table(pa.table(table), tmp_path / "z.parquet")
    with pytest.raises(ConfigError, match=message) as caught:
        load_embeddings(f"{tmp_path}/z.parquet{name}")
    assert "\n" not in str(caught.value)


def test_labels_from_a_table_of_several_columns_need_a_name(tmp_path: Path):
    pq.write_table(_table(_z(), label=[1] * 30), tmp_path / "z.parquet")
    with pytest.raises(ConfigError, match=r"holds 3 columns .*; name one: .*z.parquet:id"):
        load_labels(tmp_path / "z.parquet", 30)
    with pytest.raises(ConfigError, match=r"a .npy file holds one array; drop ':x'"):
        np.save(tmp_path / "a.npy", np.ones((3, 2)))
        load_embeddings(f"{tmp_path}/a.npy:x")


def test_without_pyarrow_the_error_says_how_to_install_it(cli, tmp_path, monkeypatch):
    pq.write_table(_table(_z()), tmp_path / "z.parquet")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import fails as if not installed
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    result = cli("inspect", tmp_path / "z.parquet")
    assert result.exit_code == 2 and "needs pyarrow: pip install pyarrow" in result.output
