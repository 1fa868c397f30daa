"""BSPC files: save/load round trip, atomic writes, hostile and broken files."""

from __future__ import annotations

import pickle
import zipfile

import numpy as np
import pytest

from tvm_bsp.bspc import BSPCFormatError, BSPCMatrix, load_bspc, save_bspc
from tvm_bsp.prune import bsp_mask


@pytest.fixture
def matrix() -> BSPCMatrix:
    rng = np.random.default_rng(0)
    w = rng.standard_normal((40, 39)).astype(np.float32)
    return BSPCMatrix.from_dense(w, bsp_mask(w, 5, 4, 3, 2), 5, 4)


def _arrays(path) -> dict[str, np.ndarray]:
    with np.load(path) as npz:
        return {k: npz[k] for k in npz.files}


def test_save_load_round_trip(tmp_path, matrix):
    path = save_bspc(matrix, tmp_path / "w.npz")
    back = load_bspc(path)
    np.testing.assert_array_equal(back.to_dense(), matrix.to_dense())
    np.testing.assert_array_equal(back.reorder, matrix.reorder)
    assert (back.row_blocks, back.col_blocks, back.shape) == (5, 4, (40, 39))
    assert back.rows.dtype == matrix.rows.dtype
    assert [p.name for p in tmp_path.iterdir()] == ["w.npz"]  # no temporary file left


def test_failed_write_keeps_the_old_file(tmp_path, matrix, monkeypatch):
    path = save_bspc(matrix, tmp_path / "w.npz")
    before = path.read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez_compressed", broken)
    with pytest.raises(OSError, match="disk full"):
        save_bspc(matrix, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["w.npz"]


def test_truncated_file_is_refused(tmp_path, matrix):
    path = save_bspc(matrix, tmp_path / "w.npz")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(BSPCFormatError, match="unreadable or truncated"):
        load_bspc(path)


def test_pickle_file_is_refused(tmp_path):
    path = tmp_path / "evil.npz"
    path.write_bytes(pickle.dumps({"values": [1.0]}))
    with pytest.raises(BSPCFormatError, match="pickle"):
        load_bspc(path)


def test_object_array_inside_npz_is_refused(tmp_path, matrix):
    path = save_bspc(matrix, tmp_path / "w.npz")
    arrays = _arrays(path)
    arrays["values"] = np.array([{"evil": 1}], dtype=object)
    np.savez(path, **arrays)
    with pytest.raises(BSPCFormatError, match="pickle"):
        load_bspc(path)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("rows", lambda a: (a["rows"] + 1000).astype(a["rows"].dtype), "outside"),
        ("cols", lambda a: a["cols"][::-1].copy(), "cols"),
        (
            "values",
            lambda a: np.where(np.arange(a["values"].size) == 0, np.nan, a["values"]),
            "not finite",
        ),
        ("version", lambda a: np.array(99), "version 99"),
        ("format", lambda a: np.frombuffer(b"csr!", np.uint8), "format tag"),
        ("grid", lambda a: np.array([1000, 4]), "grid"),
        ("shape", lambda a: np.array([40.0, 39.0]), "two integers"),
        ("reorder", lambda a: np.zeros_like(a["reorder"]), "permutation"),
    ],
)
def test_corrupt_arrays_are_refused_on_load(tmp_path, matrix, key, value, message):
    path = save_bspc(matrix, tmp_path / "w.npz")
    arrays = _arrays(path)
    arrays[key] = value(arrays)
    np.savez(path, **arrays)
    with pytest.raises(BSPCFormatError, match=message):
        load_bspc(path)


def test_missing_array_is_named(tmp_path, matrix):
    path = save_bspc(matrix, tmp_path / "w.npz")
    arrays = _arrays(path)
    del arrays["cols"]
    np.savez(path, **arrays)
    with pytest.raises(BSPCFormatError, match="cols"):
        load_bspc(path)


def test_not_a_zip_and_missing_file(tmp_path):
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(BSPCFormatError):
        load_bspc(junk)
    with pytest.raises(FileNotFoundError):
        load_bspc(tmp_path / "nope.npz")
    assert not zipfile.is_zipfile(junk)
