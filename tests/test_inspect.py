"""``collapse inspect``: every file format, every malformed input, the readings and verdicts."""

from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from collapse_cli.errors import ConfigError
from collapse_cli.inspection import inspect_embeddings, load_embeddings, load_labels
from collapse_cli.interpretation import spread
from collapse_cli.metrics import compute_metrics


def _matrix(n: int = 200, d: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g) @ torch.randn(d, d, generator=g)  # anisotropic


def _text(z: torch.Tensor, sep: str, header: bool) -> str:
    rows = [sep.join(repr(float(v)) for v in row) for row in z.tolist()]
    head = [sep.join(f"dim{j}" for j in range(z.shape[1]))] if header else []
    return "\n".join(head + rows) + "\n"


def _write(path: Path, z: torch.Tensor) -> Path:
    """Write z in the format that path's suffix names (``.dict.pt``: a dict of one tensor)."""
    kind = path.name.split(".", 1)[1]
    if kind == "npy":
        np.save(path, z.numpy())
    elif kind in ("pt", "pth"):
        torch.save(z, path)
    elif kind == "dict.pt":
        torch.save({"embeddings": z}, path)
    elif kind in ("csv", "tsv"):
        path.write_text(_text(z, "," if kind == "csv" else "\t", header=kind == "csv"))
    elif kind == "safetensors":
        pytest.importorskip("safetensors.torch").save_file({"z": z.contiguous()}, str(path))
    return path


FORMATS = ["npy", "pt", "pth", "dict.pt", "csv", "tsv", "safetensors"]


@pytest.mark.parametrize("kind", FORMATS)
def test_every_format_round_trips_to_the_same_metrics(tmp_path: Path, kind: str):
    z = _matrix()
    loaded = load_embeddings(_write(tmp_path / f"z.{kind}", z))
    assert loaded.dtype == torch.float32 and torch.equal(loaded, z)  # text: float32-exact
    report = inspect_embeddings(loaded)
    expected, eigs = compute_metrics(z)
    assert report.metrics == expected
    assert report.spectrum == eigs.tolist() and report.shape == (200, 16)
    # Independently of metrics.py: NumPy's sample variance and covariance spectrum.
    zn = z.double().numpy()
    assert report.metrics["variance"] == pytest.approx(np.var(zn, axis=0, ddof=1).mean(), 1e-12)
    np_eigs = np.sort(np.linalg.eigvalsh(np.cov(zn, rowvar=False)))[::-1]
    np.testing.assert_allclose(report.spectrum, np_eigs, rtol=1e-9)
    assert report.metrics["rank"] == np.linalg.matrix_rank(zn) == 16


def test_text_written_by_numpy_reads_back_as_the_float32_matrix(tmp_path: Path):
    z = _matrix(50, 6)
    np.savetxt(tmp_path / "z.csv", z.numpy(), delimiter=",", fmt="%.9g")  # 9 digits: exact
    assert torch.equal(load_embeddings(tmp_path / "z.csv"), z)


def test_half_precision_keeps_its_dtype_and_its_rank():
    z = torch.randn(2000, 32, generator=torch.Generator().manual_seed(6))
    report = inspect_embeddings(z.bfloat16())
    # The rank threshold bounds one rounding to 16 bits (metrics.rounding_bound), so a full-rank
    # cloud stays full rank.
    assert report.dtype == "bfloat16" and report.metrics["rank"] == 32


def test_cli_writes_json_and_png_next_to_the_input_when_asked(cli, tmp_path: Path):
    src = _write(tmp_path / "emb.npy", _matrix())
    shown = cli("inspect", src)  # the table only: nothing is written unless asked
    assert shown.exit_code == 0 and "verdict: healthy" in shown.output
    assert list(tmp_path.iterdir()) == [src]
    result = cli("inspect", src, "--save")
    assert result.exit_code == 0, result.output
    folder = tmp_path / "emb-inspect"
    assert str(folder) in result.output and "verdict: healthy" in result.output
    data = json.loads((folder / "inspect.json").read_text())
    assert data["source"] == str(src.resolve()) and data["shape"] == [200, 16]
    assert data["dtype"] == "float32" and data["verdict"] == "healthy"
    assert data["metrics"] == pytest.approx(compute_metrics(_matrix())[0])
    assert len(data["spectrum"]) == 16 and set(data["readings"]) == set(data["metrics"])
    png = (folder / "spectrum.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    import matplotlib.image

    assert matplotlib.image.imread(folder / "spectrum.png").shape[2] in (3, 4)
    again = cli("inspect", src, "--json", "--save")  # never silent about replacing its files
    assert again.exit_code == 0 and "replaced inspect.json and spectrum.png" in again.output
    assert json.loads(again.stdout)["metrics"] == data["metrics"]


def test_rank_32_in_128_shows_min_eig_as_structural_zero(cli, tmp_path: Path):
    torch.manual_seed(0)  # the article's demo 2: Linear(32, 128) on (512, 32) inputs
    z = torch.nn.Linear(32, 128)(torch.randn(512, 32)).detach()
    result = cli("inspect", _write(tmp_path / "z.pt", z), "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "0 (rank 32/128)" in result.output and "32/128" in result.output
    assert "λ₃₃…λ₁₂₈ are 0" in result.output
    assert "dimensional collapse" in result.output  # 32 of the 128 attainable directions


def _bad_files(tmp: Path) -> dict[str, tuple[list[str], str]]:
    """name -> (arguments after ``inspect``, a phrase the one-line error must contain)."""
    z = _matrix(20, 4)
    nan = z.clone()
    nan[3, 1], nan[5, 0], nan[7, 2] = float("nan"), float("nan"), float("inf")
    np.save(tmp / "vec.npy", np.ones(10))
    np.save(tmp / "cube.npy", np.ones((4, 3, 2)))
    np.save(tmp / "nan.npy", nan.numpy())
    np.save(tmp / "rows0.npy", np.ones((0, 8)))
    np.save(tmp / "cols0.npy", np.ones((5, 0)))
    np.save(tmp / "one.npy", np.ones((1, 8)))
    np.save(tmp / "obj.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    (tmp / "words.csv").write_text("a,b\n1,2\n3,abc\n")
    (tmp / "ragged.tsv").write_text("1\t2\n3\n")
    (tmp / "z.txt").write_text("1 2\n")
    torch.save([z], tmp / "list.pt")
    torch.save({"a": z, "b": z}, tmp / "two.pt")
    torch.save(pickle.loads(pickle.dumps(_Opaque())), tmp / "obj.pt")
    good = _write(tmp / "good.npy", z)
    np.save(tmp / "short.npy", np.arange(19) % 2)
    np.save(tmp / "half.npy", np.arange(20) / 2)
    np.save(tmp / "wide.npy", np.zeros((20, 2)))
    (tmp / "ragged.csv").write_text("1\n2,3\n")
    return {
        "1-D": (["vec.npy"], "found shape (10,)"),
        "3-D": (["cube.npy"], "found shape (4, 3, 2)"),
        "NaN and Inf": (["nan.npy"], "2 NaN and 1 infinite values (the first in row 3"),
        "no rows": (["rows0.npy"], "is empty, shape (0, 8)"),
        "no columns": (["cols0.npy"], "is empty, shape (5, 0)"),
        "one row": (["one.npy"], "N >= 2"),
        "pickled npy": (["obj.npy"], "pickled Python objects"),
        "non-numeric csv": (["words.csv"], "words.csv: line 3: 'abc' is not a number"),
        "ragged tsv": (["ragged.tsv"], "ragged.tsv: line 2 has 1 value, the lines before 2"),
        "missing": (["nope.npy"], "no such file"),
        "folder": (["."], "is a folder"),
        "unknown extension": (["z.txt"], "unknown file type '.txt'; use .npy"),
        "list in pt": (["list.pt"], "holds a list, not a tensor"),
        "two tensors": (["two.pt"], "holds 2 tensors (a, b)"),
        "pickled pt": (["obj.pt"], "weights_only=True) refused it"),
        "labels too short": ([good.name, "--labels", "short.npy"], "expected (20,)"),
        "labels not integers": ([good.name, "--labels", "half.npy"], "non-integer"),
        "labels 2-D": ([good.name, "--labels", "wide.npy"], "shape (20, 2)"),
        "labels ragged": ([good.name, "--labels", "ragged.csv"], "different numbers of values"),
        "labels missing": ([good.name, "--labels", "nope.csv"], "labels nope.csv: no such file"),
        "out is a file": ([good.name, "--out", "z.txt"], "is a file, not a folder"),
    }


class _Opaque:
    """Any object that is not a tensor: weights_only loading refuses to build it."""


def test_malformed_inputs_give_one_line_and_exit_code_2(cli, tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name, (args, phrase) in _bad_files(tmp_path).items():
        result = cli("inspect", *args)
        lines = [ln for ln in result.output.splitlines() if ln.strip()]
        assert result.exit_code == 2, (name, result.output)
        assert len(lines) == 1 and lines[0].startswith("error:"), (name, result.output)
        assert phrase in lines[0], (name, lines[0])
    assert not list(tmp_path.glob("*-inspect"))  # nothing written for a bad input


def test_missing_safetensors_package_says_how_to_install_it(cli, tmp_path, monkeypatch):
    (tmp_path / "z.safetensors").write_bytes(b"\0" * 16)
    monkeypatch.setitem(sys.modules, "safetensors", None)  # import fails as if not installed
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)
    result = cli("inspect", tmp_path / "z.safetensors")
    assert result.exit_code == 2 and "pip install safetensors" in result.output


def test_safetensors_with_several_tensors_lists_their_keys(tmp_path: Path):
    st = pytest.importorskip("safetensors.torch")
    st.save_file({"a": torch.ones(3, 2), "b": torch.ones(3, 2)}, str(tmp_path / "z.safetensors"))
    with pytest.raises(ConfigError, match=r"holds 2 tensors \(a, b\)"):
        load_embeddings(tmp_path / "z.safetensors")


# ---------------------------------------------------------------------------- verdicts


def test_verdict_complete_collapse_all_rows_one_point_plus_tiny_noise():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(1, 64, generator=g) + 1e-4 * torch.randn(500, 64, generator=g)
    report = inspect_embeddings(z)
    assert report.verdict == "complete collapse" and "std_l2" in report.reason
    assert "all rows point one way" in report.readings["std_l2"]
    assert "tight cloud" in report.readings["norm_mean"]
    assert report.readings["mean_cosine"] == "all rows point the same way"


def test_verdict_dimensional_collapse_rank_2_in_64_dims():
    g = torch.Generator().manual_seed(2)
    z = torch.randn(500, 2, generator=g) @ torch.randn(2, 64, generator=g)
    report = inspect_embeddings(z)
    assert report.verdict == "dimensional collapse" and report.metrics["rank"] == 2
    assert report.reference_rank == 64
    assert "collapsed to ≈ 2 directions" in report.readings["effective_rank"]
    assert report.readings["min_eig"].startswith("λ₃…λ₆₄ are 0")


def test_verdict_healthy_isotropic_gaussian():
    z = torch.randn(1000, 32, generator=torch.Generator().manual_seed(3))
    report = inspect_embeddings(z)
    assert report.verdict == "healthy"
    assert report.readings["effective_rank"].endswith(": spread")
    assert report.readings["uniformity"].startswith("close to uniform")
    assert report.readings["mean_cosine"].startswith("no common direction")


def test_spread_reading_bands():
    assert spread(30.6, 32, 0.25) == "96% of 32: spread"
    assert spread(1.2, 32, 0.25) == "collapsed to a line"
    assert spread(0.0, 32, 0.25) == "0: no spread, a point"
    assert spread(5.0, 32, 0.25) == "16% of 32: collapsed to ≈ 5 directions"
    assert spread(12.0, 32, 0.25) == "38% of 32: concentrated"


# ---------------------------------------------------------------------------- labels


def test_labels_give_knn_accuracy_well_above_chance(cli, tmp_path: Path):
    g = torch.Generator().manual_seed(4)
    y = torch.arange(400) % 2
    z = torch.randn(400, 8, generator=g) + 6.0 * torch.nn.functional.one_hot(y, 8)
    src = _write(tmp_path / "z.npy", z)
    names = ["label"] + ["cat" if v else "dog" for v in y.tolist()]  # a header, then names
    (tmp_path / "y.csv").write_text("\n".join(names) + "\n")
    assert torch.equal(load_labels(tmp_path / "y.csv", 400), 1 - y)  # classes sorted by name

    result = cli("inspect", src, "--labels", tmp_path / "y.csv", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["metrics"]["knn_acc"] > 0.95
    knn = data["knn"]
    assert knn["chance"] < 0.6 and knn["classes"] == 2 and knn["k"] == 20
    assert (knn["train"], knn["test"], knn["seed"]) == (320, 80, 0)
    assert "chance 0." in data["readings"]["knn_acc"]


def test_labels_that_carry_no_information_read_at_chance():
    g = torch.Generator().manual_seed(5)
    z, y = torch.randn(600, 8, generator=g), torch.randint(0, 2, (600,), generator=g)
    report = inspect_embeddings(z, y)
    assert report.metrics["knn_acc"] < 0.65 and report.readings["knn_acc"].endswith("at chance")
