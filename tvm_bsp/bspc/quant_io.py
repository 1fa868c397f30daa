"""Saving and loading int8 BSPC matrices as ``.npz``: no pickle, atomic writes, versioned.

File contents (plain numeric arrays): ``format`` (``"bspc-int8"`` as bytes), ``version``,
``shape`` (2), ``grid`` (``row_blocks, col_blocks``), ``granularity`` (0 = ``"row"``,
1 = ``"block_row"``), ``block_row_ptr``, ``rows``, ``block_col_ptr``, ``cols``, ``values``
(int8), ``scales`` (float32), ``reorder``. Loading reads through
:class:`~tvm_bsp.bspc.npz.GuardedNpz` (every declared size checked before anything is
inflated), checks the tag, version and every array's declared length against the structure,
and validates the result, so a bad file raises :class:`~tvm_bsp.bspc.errors.BSPCFormatError`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from tvm_bsp.bspc.errors import BSPCFormatError
from tvm_bsp.bspc.io import save_block_matrix
from tvm_bsp.bspc.npz import DEFAULT_MAX_BYTES, DEFAULT_MAX_RATIO, GuardedNpz
from tvm_bsp.bspc.quant import GRANULARITIES, QuantizedBSPC

FORMAT_TAG = b"bspc-int8"
FORMAT_VERSION = 1
_ARRAYS = ("block_row_ptr", "rows", "block_col_ptr", "cols", "values", "scales", "reorder")
_HEADER = ("format", "version", "shape", "grid", "granularity")


def save_quantized_bspc(matrix: QuantizedBSPC, path: str | os.PathLike) -> Path:
    """Save ``matrix`` to ``path`` (``.npz``), atomically. Returns the path."""
    arrays = {name: getattr(matrix, name) for name in _ARRAYS}
    arrays["granularity"] = np.array(GRANULARITIES.index(matrix.granularity), np.int64)
    return save_block_matrix(path, matrix, FORMAT_TAG, FORMAT_VERSION, arrays)


def load_quantized_bspc(
    path: str | os.PathLike,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_ratio: float = DEFAULT_MAX_RATIO,
) -> QuantizedBSPC:
    """Load and validate an int8 BSPC ``.npz`` written by :func:`save_quantized_bspc`.

    Parameters
    ----------
    path : path-like
    max_bytes, max_ratio
        Caps on the declared sizes, as in :func:`tvm_bsp.bspc.io.load_bspc`.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    BSPCFormatError
        If the file is not an int8 BSPC archive of this version, lacks an array, declares
        sizes that disagree with its structure or pass the caps, or breaks an invariant.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no int8 BSPC file at {path}")
    try:
        with GuardedNpz(path, max_bytes, max_ratio) as npz:
            missing = [k for k in (*_HEADER, *_ARRAYS) if k not in npz]
            if missing:
                raise BSPCFormatError(f"not an int8 BSPC file, missing arrays {missing}")
            return _read(npz)
    except BSPCFormatError as err:
        raise BSPCFormatError(f"{path}: {err}") from None
    except OSError as err:
        raise BSPCFormatError(f"{path}: unreadable ({err})") from None


def _integers(npz: GuardedNpz, name: str, count: int) -> np.ndarray:
    member = npz.member(name)
    if member.dtype.kind not in "iu" or member.count != count or len(member.shape) > 1:
        raise BSPCFormatError(
            f"{name} must hold {count} integer(s), got {member.dtype} {member.shape}"
        )
    return npz.read(name).reshape(-1).astype(np.int64)


def _vector(npz: GuardedNpz, name: str, count: int, why: str) -> np.ndarray:
    member = npz.member(name)
    if len(member.shape) != 1 or member.count != count:
        raise BSPCFormatError(f"{name} declares shape {member.shape}, {why} needs ({count},)")
    return npz.read(name)


def _read(npz: GuardedNpz) -> QuantizedBSPC:
    for name in (*_HEADER, *_ARRAYS):
        npz.member(name)  # every header and the size caps checked before any large read
    fmt = npz.member("format")
    if fmt.dtype != np.uint8 or fmt.count != len(FORMAT_TAG):
        raise BSPCFormatError("format tag is not 'bspc-int8'")
    if npz.read("format").tobytes() != FORMAT_TAG:
        raise BSPCFormatError("format tag is not 'bspc-int8'")
    version = int(_integers(npz, "version", 1)[0])
    if version != FORMAT_VERSION:
        raise BSPCFormatError(f"int8 BSPC version {version}, this reader knows {FORMAT_VERSION}")
    M, N = (int(v) for v in _integers(npz, "shape", 2))
    rb, cb = (int(v) for v in _integers(npz, "grid", 2))
    code = int(_integers(npz, "granularity", 1)[0])
    if not 0 <= code < len(GRANULARITIES):
        raise BSPCFormatError(f"granularity code {code}, known: 0 (row), 1 (block_row)")
    granularity = GRANULARITIES[code]
    if M < 1 or N < 1:
        raise BSPCFormatError(f"shape must be two positive integers, got {(M, N)}")
    if not (1 <= rb <= M and 1 <= cb <= N):
        raise BSPCFormatError(f"bad block grid {rb}x{cb} for a {M}x{N} matrix")
    grid = f"the {rb}x{cb} grid"
    rptr = _vector(npz, "block_row_ptr", rb * cb + 1, grid)
    cptr = _vector(npz, "block_col_ptr", rb * cb + 1, grid)
    if rptr.dtype.kind not in "iu" or cptr.dtype.kind not in "iu":
        raise BSPCFormatError("block_row_ptr and block_col_ptr must be integer arrays")
    nrows, ncols = np.diff(rptr.astype(np.int64)), np.diff(cptr.astype(np.int64))
    if (nrows < 0).any() or (ncols < 0).any() or rptr[0] != 0 or cptr[0] != 0:
        raise BSPCFormatError("block_row_ptr and block_col_ptr must start at 0 and not decrease")
    rows = _vector(npz, "rows", int(rptr[-1]), "block_row_ptr[-1]")
    cols = _vector(npz, "cols", int(cptr[-1]), "block_col_ptr[-1]")
    reorder = _vector(npz, "reorder", M, f"a matrix of {M} rows")
    values = _vector(npz, "values", int(np.dot(nrows, ncols)), "the blocks' kept rows x columns")
    n_scales = M if granularity == "row" else rows.size
    scales = _vector(npz, "scales", n_scales, f"granularity {granularity!r}")
    return QuantizedBSPC(
        (M, N), rb, cb, rptr, rows, cptr, cols, values, scales, reorder, granularity
    )
