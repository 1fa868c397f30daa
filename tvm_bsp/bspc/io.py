"""Saving and loading BSPC matrices as ``.npz`` files: no pickle, atomic writes, versioned.

File contents (all plain numeric arrays): ``format`` (the string ``"bspc"`` as bytes),
``version``, ``shape`` (2), ``grid`` (``row_blocks, col_blocks``), ``block_row_ptr``, ``rows``,
``block_col_ptr``, ``cols``, ``values``, ``reorder``. Loading never unpickles, checks the
format tag and version, and validates every invariant before returning, so a corrupt or
hostile file raises :class:`~tvm_bsp.bspc.errors.BSPCFormatError` and never reaches a kernel.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from tvm_bsp.bspc.errors import BSPCFormatError
from tvm_bsp.bspc.matrix import BSPCMatrix

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
        The destination path. On any error the destination is left untouched.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_bspc(matrix: BSPCMatrix, path: str | os.PathLike) -> Path:
    """Save ``matrix`` to ``path`` (``.npz``), atomically. Returns the path."""
    arrays = {name: getattr(matrix, name) for name in _ARRAYS}
    return atomic_write(
        path,
        lambda f: np.savez_compressed(
            f,
            format=np.frombuffer(FORMAT_TAG, np.uint8),
            version=np.array(FORMAT_VERSION, np.int64),
            shape=np.array(matrix.shape, np.int64),
            grid=np.array([matrix.row_blocks, matrix.col_blocks], np.int64),
            **arrays,
        ),
    )


def load_bspc(path: str | os.PathLike) -> BSPCMatrix:
    """Load and validate a BSPC ``.npz`` file.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    BSPCFormatError
        If the file is not a readable ``.npz`` (truncated, not a zip, pickled data), lacks an
        array, has another format tag or version, or breaks an invariant of the format.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no BSPC file at {path}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in ("format", "version", "shape", "grid", *_ARRAYS) if k not in npz]
            if missing:
                raise BSPCFormatError(f"{path}: not a BSPC file, missing arrays {missing}")
            data = {k: npz[k] for k in ("format", "version", "shape", "grid", *_ARRAYS)}
    except BSPCFormatError:
        raise
    except ValueError as err:  # numpy refuses pickled content / object arrays
        raise BSPCFormatError(f"{path}: refused to load pickled data ({err})") from None
    except (zipfile.BadZipFile, EOFError, OSError, KeyError) as err:
        raise BSPCFormatError(f"{path}: unreadable or truncated .npz ({err})") from None
    if data["format"].tobytes() != FORMAT_TAG:
        raise BSPCFormatError(f"{path}: format tag is not 'bspc'")
    version = int(data["version"])
    if version != FORMAT_VERSION:
        raise BSPCFormatError(f"{path}: BSPC version {version}, this reader knows {FORMAT_VERSION}")
    for name in ("shape", "grid"):
        if data[name].shape != (2,) or data[name].dtype.kind not in "iu":
            raise BSPCFormatError(f"{path}: {name} must hold two integers")
    shape = tuple(int(v) for v in data["shape"])
    row_blocks, col_blocks = (int(v) for v in data["grid"])
    try:
        return BSPCMatrix(shape, row_blocks, col_blocks, *(data[k] for k in _ARRAYS))
    except BSPCFormatError as err:
        raise BSPCFormatError(f"{path}: {err}") from None
