"""Hostile BSPC files and export indexes: zip bombs, lying headers, junk, broken index.json.

Cases that could allocate a lot (or crash) run :func:`tvm_bsp.bspc.load_bspc` in a child
process whose address space is capped (``RLIMIT_AS``) a little above what it already uses, and
check the message the child prints.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tvm_bsp.bspc import BSPCFormatError, BSPCMatrix, load_bspc, save_bspc
from tvm_bsp.prune import bsp_mask
from tvm_bsp.prune.export import export_bspc, load_bspc_dir

ROOT = Path(__file__).resolve().parents[1]

# Child: cap the address space 160 MiB above its current size, load, report one line.
_CHILD = r"""
import resource, sys
from tvm_bsp.bspc import load_bspc
vm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmSize"))
limit = (vm + 160 * 1024) * 1024
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
try:
    m = load_bspc(sys.argv[1])
    print("LOADED", m.shape)
except BaseException as err:
    print(type(err).__name__ + ":", err)
"""


def _load_in_child(path: Path) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def _npy_header(descr: str, shape: tuple[int, ...]) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": descr, "fortran_order": False, "shape": shape}
    )
    return buf.getvalue()  # magic string included


def _write_zip(path: Path, members: dict[str, bytes], level: int = 6) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=level) as zf:
        for name, data in members.items():
            zf.writestr(name + ".npy", data)
    return path


def _members(matrix: BSPCMatrix) -> dict[str, bytes]:
    arrays = {
        "format": np.frombuffer(b"bspc", np.uint8),
        "version": np.array(1, np.int64),
        "shape": np.array(matrix.shape, np.int64),
        "grid": np.array([matrix.row_blocks, matrix.col_blocks], np.int64),
    }
    for name in ("block_row_ptr", "rows", "block_col_ptr", "cols", "values", "reorder"):
        arrays[name] = getattr(matrix, name)
    return {k: _npy(v) for k, v in arrays.items()}


@pytest.fixture
def matrix() -> BSPCMatrix:
    rng = np.random.default_rng(1)
    w = rng.standard_normal((48, 40)).astype(np.float32)
    return BSPCMatrix.from_dense(w, bsp_mask(w, 6, 4, 2, 2), 6, 4)


def test_zip_bomb_is_refused_before_inflating(tmp_path):
    # A structurally valid 8192 x 8192 matrix (1 x 1 grid, everything kept) of zeros:
    # 256 MiB of values in a 256 KB file.
    n = 8192
    idx = np.arange(n, dtype=np.int16)
    members = {
        "format": _npy(np.frombuffer(b"bspc", np.uint8)),
        "version": _npy(np.array(1, np.int64)),
        "shape": _npy(np.array([n, n], np.int64)),
        "grid": _npy(np.array([1, 1], np.int64)),
        "block_row_ptr": _npy(np.array([0, n], np.int16)),
        "rows": _npy(idx),
        "block_col_ptr": _npy(np.array([0, n], np.int16)),
        "cols": _npy(idx),
        "reorder": _npy(idx),
    }
    path = _write_zip(tmp_path / "bomb.npz", members, level=9)
    with (
        zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED, compresslevel=9) as zf,
        zf.open("values.npy", "w", force_zip64=True) as f,
    ):
        f.write(_npy_header("<f4", (n * n,)))
        chunk = bytes(1 << 24)
        for _ in range(n * n * 4 // len(chunk)):
            f.write(chunk)
    assert path.stat().st_size < 2_000_000
    out = _load_in_child(path)
    assert out.startswith("BSPCFormatError:"), out
    assert "values.npy" in out and "expands" in out, out


def test_declared_two_to_the_40_values_is_a_format_error(tmp_path, matrix):
    members = _members(matrix)
    members["values"] = _npy_header("<f4", (2**40,)) + bytes(64)
    out = _load_in_child(_write_zip(tmp_path / "liar.npz", members))
    assert out.startswith("BSPCFormatError:"), out
    assert "values.npy" in out and str(2**40) in out, out


def test_values_count_that_disagrees_with_the_blocks_is_named(tmp_path, matrix):
    members = _members(matrix)
    members["values"] = _npy(np.zeros(matrix.nnz + 7, np.float32))
    path = _write_zip(tmp_path / "w.npz", members)
    with pytest.raises(BSPCFormatError, match=rf"values.*{matrix.nnz + 7}.*{matrix.nnz}"):
        load_bspc(path)


def test_huge_grid_is_refused_without_allocating(tmp_path, matrix):
    members = _members(matrix)
    members["shape"] = _npy(np.array([2**40, 2**40], np.int64))
    members["grid"] = _npy(np.array([2**39, 2**39], np.int64))
    out = _load_in_child(_write_zip(tmp_path / "grid.npz", members))
    assert out.startswith("BSPCFormatError:"), out
    assert "block_row_ptr" in out, out


def test_absolute_size_cap(tmp_path, matrix):
    path = save_bspc(matrix, tmp_path / "w.npz")
    with pytest.raises(BSPCFormatError, match="max_bytes"):
        load_bspc(path, max_bytes=1000)
    assert load_bspc(path).shape == matrix.shape


def test_random_bytes_are_not_a_zip(tmp_path):
    path = tmp_path / "noise.npz"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(BSPCFormatError, match=r"not a BSPC file \(not a zip archive\)"):
        load_bspc(path)


def test_empty_file_is_not_a_zip(tmp_path):
    path = tmp_path / "empty.npz"
    path.write_bytes(b"")
    with pytest.raises(BSPCFormatError, match="not a zip archive"):
        load_bspc(path)


def test_plain_npy_is_not_a_bspc_file(tmp_path):
    path = tmp_path / "plain.npz"
    path.write_bytes(_npy(np.zeros(10, np.float32)))
    with pytest.raises(BSPCFormatError, match="not a zip archive"):
        load_bspc(path)


def test_structured_dtype_member_is_refused(tmp_path, matrix):
    members = _members(matrix)
    members["rows"] = _npy(np.zeros(3, dtype=[("a", "<i4"), ("b", "<f4")]))
    with pytest.raises(BSPCFormatError, match=r"rows\.npy"):
        load_bspc(_write_zip(tmp_path / "w.npz", members))


def test_bad_npy_header_is_named(tmp_path, matrix):
    members = _members(matrix)
    members["cols"] = b"\x93NUMPY\x01\x00\x10\x00{'descr': oops}  \n"
    with pytest.raises(BSPCFormatError, match=r"cols\.npy"):
        load_bspc(_write_zip(tmp_path / "w.npz", members))


def test_truncated_member_data_is_named(tmp_path, matrix):
    members = _members(matrix)
    members["values"] = members["values"][:-8]
    with pytest.raises(BSPCFormatError, match=r"values\.npy"):
        load_bspc(_write_zip(tmp_path / "w.npz", members))


def test_hand_written_members_round_trip(tmp_path, matrix):
    # The writer used by these tests builds a valid file: the refusals above are not artefacts.
    back = load_bspc(_write_zip(tmp_path / "w.npz", _members(matrix)))
    np.testing.assert_array_equal(back.to_dense(), matrix.to_dense())


# ---------------------------------------------------------------------- index.json
@pytest.fixture
def export_dir(tmp_path) -> Path:
    import torch

    rng = np.random.default_rng(2)
    w = rng.standard_normal((24, 16)).astype(np.float32)
    mask = bsp_mask(w, 3, 2, 2, 2)
    lin = torch.nn.Linear(16, 24, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(np.where(mask, w, 0)))
    export_bspc(lin, {"weight": mask}, tmp_path / "bspc", grid=(3, 2))
    return tmp_path / "bspc"


def _edit_index(root: Path, edit) -> None:
    index = json.loads((root / "index.json").read_text())
    edit(index)
    (root / "index.json").write_text(json.dumps(index))


def test_export_dir_round_trip(export_dir):
    matrices, index = load_bspc_dir(export_dir)
    assert index["tensors"]["weight"]["file"] == "weight.npz"
    assert list(matrices) == ["weight"] and matrices["weight"].shape == (24, 16)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda i: i.pop("tensors"), "'tensors'"),
        (lambda i: i.update(tensors=[1, 2]), "tensors must be an object"),
        (lambda i: i["tensors"].update(weight="w.npz"), "entry 'weight' must be an object"),
        (lambda i: i["tensors"]["weight"].pop("file"), "entry 'weight' has no 'file'"),
        (lambda i: i["tensors"]["weight"].update(file=7), "names a file outside"),
        (lambda i: i["tensors"]["weight"].update(file="../x.npz"), "names a file outside"),
        (lambda i: i["tensors"]["weight"].update(shape=[16, 24]), r"\[16, 24\].*\(24, 16\)"),
        (lambda i: i.update(version="1"), "version '1'"),
        (lambda i: i.update(format="other"), "not a tvm_bsp.bspc-index"),
    ],
)
def test_bad_index_is_a_clear_value_error(export_dir, edit, message):
    _edit_index(export_dir, edit)
    with pytest.raises(ValueError, match=message):
        load_bspc_dir(export_dir)


def test_index_naming_a_missing_file(export_dir):
    _edit_index(export_dir, lambda i: i["tensors"]["weight"].update(file="gone.npz"))
    with pytest.raises(FileNotFoundError, match=r"entry 'weight'.*gone\.npz"):
        load_bspc_dir(export_dir)


def test_index_that_is_not_json(export_dir):
    (export_dir / "index.json").write_bytes(b"\xff\xfe{not json")
    with pytest.raises(ValueError, match=r"index\.json is not valid JSON"):
        load_bspc_dir(export_dir)


def test_index_that_is_a_list(export_dir):
    (export_dir / "index.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"not a tvm_bsp\.bspc-index"):
        load_bspc_dir(export_dir)


def test_missing_index(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"index\.json"):
        load_bspc_dir(tmp_path)
