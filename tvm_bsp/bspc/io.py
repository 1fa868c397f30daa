"""Saving and loading BSPC matrices as ``.npz`` files: no pickle, atomic writes, versioned.

File contents (all plain numeric arrays): ``format`` (the string ``"bspc"`` as bytes),
``version``, ``shape`` (2), ``grid`` (``row_blocks, col_blocks``), ``block_row_ptr``, ``rows``,
``block_col_ptr``, ``cols``, ``values``, ``reorder``. Loading never unpickles, checks every
declared size before inflating anything (:mod:`tvm_bsp.bspc.npz`: zip bombs, lying headers),
checks the format tag and version, and validates every invariant before returning, so a corrupt
or hostile file raises :class:`~tvm_bsp.bspc.errors.BSPCFormatError` and never reaches a kernel.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from tvm_bsp.bspc.errors import BSPCFormatError
from tvm_bsp.bspc.matrix import BSPCMatrix
from tvm_bsp.bspc.npz import DEFAULT_MAX_BYTES, DEFAULT_MAX_RATIO, GuardedNpz

FORMAT_TAG = b"bspc"
FORMAT_VERSION = 1
_ARRAYS = ("block_row_ptr", "rows", "block_col_ptr", "cols", "values", "reorder")


def atomic_write(path: str | os.PathLike, write) -> Path:
    """Write a file atomically: ``write(fileobj)`` into a temporary file, then rename.

    Parameters
    ----------
    path : path-like
        Destination; its directory must exist.
    write : callable
        Called with a binary file object open for writing.

    Returns
    -------
    pathlib.Path
        The destination path, mode 0644 (less what the umask removes). On any error the
        destination is left untouched. Temporaries that an interrupted earlier write of the same
        path left behind are removed first (:func:`tvm_bsp.runtime.files.remove_stale_temporaries`).
    """
    from tvm_bsp.runtime.files import current_umask, remove_stale_temporaries

    path = Path(path)
    remove_stale_temporaries(path, ".tmp")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644 & ~current_umask())  # mkstemp makes 0600; exports are 0644
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_block_matrix(
    path: str | os.PathLike, matrix: Any, tag: bytes, version: int, arrays: dict[str, np.ndarray]
) -> Path:
    """Write a block matrix's header (format tag, version, shape, grid) and ``arrays``.

    The ``.npz`` of :func:`save_bspc` and of the int8 form
    (:func:`tvm_bsp.bspc.quant_io.save_quantized_bspc`), written atomically.
    """
    return atomic_write(
        path,
        lambda f: np.savez_compressed(
            f,
            format=np.frombuffer(tag, np.uint8),
            version=np.array(version, np.int64),
            shape=np.array(matrix.shape, np.int64),
            grid=np.array([matrix.row_blocks, matrix.col_blocks], np.int64),
            **arrays,
        ),
    )


def save_bspc(matrix: BSPCMatrix, path: str | os.PathLike) -> Path:
    """Save ``matrix`` to ``path`` (``.npz``), atomically. Returns the path."""
    arrays = {name: getattr(matrix, name) for name in _ARRAYS}
    return save_block_matrix(path, matrix, FORMAT_TAG, FORMAT_VERSION, arrays)


def load_bspc(
    path: str | os.PathLike,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_ratio: float = DEFAULT_MAX_RATIO,
) -> BSPCMatrix:
    """Load and validate a BSPC ``.npz`` file, trusting none of the sizes it declares.

    Every member's declared size is checked before it is inflated (:mod:`tvm_bsp.bspc.npz`),
    and against the structure: the pointer arrays must fit the grid, ``rows`` / ``cols`` the
    pointers, ``values`` the blocks' kept rows x kept columns and ``reorder`` the row count.

    Parameters
    ----------
    path : path-like
        The ``.npz`` written by :func:`save_bspc`.
    max_bytes : int
        Cap on the bytes the file's arrays may declare in total (default 2 GiB).
    max_ratio : float
        Cap on how many times an array over 8 MiB may expand from its compressed size
        (default 200; zeros compress about 1000x).

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    BSPCFormatError
        If the file is not a zip archive (random bytes, pickle), is truncated, lacks an array,
        holds pickled objects, declares sizes that disagree with its contents or structure or
        pass the caps, has another format tag or version, or breaks an invariant of the format.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no BSPC file at {path}")
    try:
        with GuardedNpz(path, max_bytes, max_ratio) as npz:
            missing = [k for k in ("format", "version", "shape", "grid", *_ARRAYS) if k not in npz]
            if missing:
                raise BSPCFormatError(f"not a BSPC file, missing arrays {missing}")
            return _read_matrix(npz)
    except BSPCFormatError as err:
        raise BSPCFormatError(f"{path}: {err}") from None
    except OSError as err:
        raise BSPCFormatError(f"{path}: unreadable ({err})") from None


def _small(npz: GuardedNpz, name: str, ndim: int, size: int) -> np.ndarray:
    member = npz.member(name)
    if len(member.shape) != ndim or member.count != size or member.dtype.kind not in "iu":
        what = "one integer" if ndim == 0 else f"{size} integers"
        raise BSPCFormatError(f"{name} must hold {what}, got {member.dtype} {member.shape}")
    return npz.read(name)


def _expect(npz: GuardedNpz, name: str, count: int, why: str) -> np.ndarray:
    member = npz.member(name)
    if len(member.shape) != 1 or member.count != count:
        raise BSPCFormatError(f"{name} declares shape {member.shape}, {why} needs ({count},)")
    return npz.read(name)


def _read_matrix(npz: GuardedNpz) -> BSPCMatrix:
    for name in ("format", "version", "shape", "grid", *_ARRAYS):
        npz.member(name)  # every header (and the size caps) checked before any large read
    fmt = npz.member("format")
    if fmt.dtype != np.uint8 or fmt.count != len(FORMAT_TAG):
        raise BSPCFormatError("format tag is not 'bspc'")
    if npz.read("format").tobytes() != FORMAT_TAG:
        raise BSPCFormatError("format tag is not 'bspc'")
    version = int(_small(npz, "version", 0, 1))
    if version != FORMAT_VERSION:
        raise BSPCFormatError(f"BSPC version {version}, this reader knows {FORMAT_VERSION}")
    for name in ("shape", "grid"):
        member = npz.member(name)
        if member.shape != (2,) or member.dtype.kind not in "iu":
            raise BSPCFormatError(f"{name} must hold two integers")
    M, N = (int(v) for v in npz.read("shape"))
    rb, cb = (int(v) for v in npz.read("grid"))
    if M < 1 or N < 1:
        raise BSPCFormatError(f"shape must be two positive integers, got {(M, N)}")
    if not (1 <= rb <= M and 1 <= cb <= N):
        raise BSPCFormatError(f"bad block grid {rb}x{cb} for a {M}x{N} matrix")
    grid = f"the {rb}x{cb} grid"
    rptr = _expect(npz, "block_row_ptr", rb * cb + 1, grid)
    cptr = _expect(npz, "block_col_ptr", rb * cb + 1, grid)
    reorder = _expect(npz, "reorder", M, f"a matrix of {M} rows")
    if rptr.dtype.kind not in "iu" or cptr.dtype.kind not in "iu":
        raise BSPCFormatError("block_row_ptr and block_col_ptr must be integer arrays")
    rows = _expect(npz, "rows", int(rptr[-1]), "block_row_ptr[-1]")
    cols = _expect(npz, "cols", int(cptr[-1]), "block_col_ptr[-1]")
    nrows, ncols = np.diff(rptr.astype(np.int64)), np.diff(cptr.astype(np.int64))
    if (nrows < 0).any() or (ncols < 0).any():
        raise BSPCFormatError("block_row_ptr and block_col_ptr must be non-decreasing")
    need = int(np.dot(nrows, ncols))
    declared = npz.member("values").count
    if declared != need:
        raise BSPCFormatError(
            f"values declares {declared} entries but the blocks' kept rows x kept columns "
            f"need {need}"
        )
    values = npz.read("values")
    return BSPCMatrix((M, N), rb, cb, rptr, rows, cptr, cols, values, reorder)
