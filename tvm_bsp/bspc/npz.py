"""A guarded reader of ``.npz`` archives holding plain numeric arrays (no pickle, bounded memory).

:func:`numpy.load` trusts the sizes a file declares: a 1 MB zip bomb inflates to a gigabyte
before anything is checked, and a ``.npy`` header declaring ``2**40`` values makes it allocate
4 TiB (``MemoryError``). :class:`GuardedNpz` reads each member's ``.npy`` header itself and checks,
before allocating or inflating anything,

- that the header is a plain ``.npy`` header (at most 10 000 bytes, a literal dictionary) of a
  boolean, integer or float dtype (object dtypes, which need pickle, and structured dtypes are
  refused);
- that the declared values fill the member exactly (header + ``count * itemsize`` bytes equal
  the archive's ``file_size``);
- that a member declaring more than ``ratio_free_bytes`` expands at most ``max_ratio`` times
  (``file_size / compress_size``);
- that all members read so far declare at most ``max_bytes`` in total.

So a hostile file costs at most ``max_bytes`` of memory, and no more than ``max_ratio`` times its
own size beyond ``ratio_free_bytes`` per member. Every problem raises
:class:`~tvm_bsp.bspc.errors.BSPCFormatError` naming the member.
"""

from __future__ import annotations

import ast
import math
import os
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import numpy as np

from tvm_bsp.bspc.errors import BSPCFormatError

#: Default cap on the bytes all members of one file may declare (2 GiB).
DEFAULT_MAX_BYTES = 2 << 30
#: Default cap on ``file_size / compress_size`` of a member larger than ``RATIO_FREE_BYTES``.
DEFAULT_MAX_RATIO = 200.0
#: Members declaring at most this many bytes (8 MiB) are not subject to the ratio cap.
RATIO_FREE_BYTES = 8 << 20
_NPY_MAGIC = b"\x93NUMPY"
_MAX_HEADER = 10_000
_CHUNK = 16 << 20


def human_bytes(n: float) -> str:
    """``268435456`` -> ``"256.0 MiB"``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class Member:
    """What a member's ``.npy`` header declares.

    Attributes
    ----------
    name : str
        Array name (the member is ``name + ".npy"``).
    dtype : numpy.dtype
    shape : tuple of int
    fortran_order : bool
    count : int
        Number of values, ``prod(shape)``.
    nbytes : int
        Bytes of the values, ``count * dtype.itemsize``.
    """

    name: str
    dtype: np.dtype
    shape: tuple[int, ...]
    fortran_order: bool
    count: int
    nbytes: int


def _not_a_zip(head: bytes) -> str:
    if head.startswith(b"PK\x03\x04"):
        return "unreadable or truncated .npz (a zip archive without its central directory)"
    if head.startswith(b"\x80") or head[:1] in (b"(", b"]", b"}"):
        return "not a BSPC file (not a zip archive; it looks like pickled data, never loaded)"
    if head.startswith(_NPY_MAGIC):
        return "not a BSPC file (not a zip archive; it is a single .npy array)"
    return "not a BSPC file (not a zip archive)"


class GuardedNpz:
    """An ``.npz`` archive opened for guarded reading (see the module docstring).

    Parameters
    ----------
    path : path-like
        The archive.
    max_bytes : int
        Cap on the bytes the members read may declare in total.
    max_ratio : float
        Cap on the expansion ratio of a member declaring more than ``RATIO_FREE_BYTES``.

    Raises
    ------
    BSPCFormatError
        If the file is not a zip archive (random bytes, pickle, a single ``.npy``) or its
        central directory is unreadable.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_ratio: float = DEFAULT_MAX_RATIO,
    ) -> None:
        self.path = Path(path)
        self.max_bytes = int(max_bytes)
        self.max_ratio = float(max_ratio)
        self._members: dict[str, Member] = {}
        self._declared = 0
        with open(self.path, "rb") as f:
            head = f.read(8)
        if not zipfile.is_zipfile(self.path):
            raise BSPCFormatError(_not_a_zip(head))
        try:
            self._zip = zipfile.ZipFile(self.path)
        except (zipfile.BadZipFile, EOFError, OSError, ValueError) as err:
            raise BSPCFormatError(f"unreadable or truncated .npz ({err})") from None

    def __enter__(self) -> GuardedNpz:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the archive."""
        self._zip.close()

    def __contains__(self, name: str) -> bool:
        return f"{name}.npy" in self._zip.NameToInfo

    def member(self, name: str) -> Member:
        """Read and check the header of member ``name`` (no values are read).

        Raises
        ------
        BSPCFormatError
            If the header is not a plain numeric ``.npy`` header, the declared values do not fill
            the member, the member expands too much, or the running total passes ``max_bytes``.
        """
        if name in self._members:
            return self._members[name]
        info = self._info(name)
        try:
            with self._zip.open(info) as fp:
                member, header_size = _read_header(fp, name)
        except BSPCFormatError:
            raise
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError,
                RuntimeError, ValueError) as err:  # fmt: skip
            raise BSPCFormatError(f"{name}.npy: unreadable ({err})") from None
        if header_size + member.nbytes != info.file_size:
            raise BSPCFormatError(
                f"{name}.npy declares {member.count} {member.dtype} values "
                f"({human_bytes(member.nbytes)}) but the member holds "
                f"{max(info.file_size - header_size, 0)} bytes of data"
            )
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > RATIO_FREE_BYTES and ratio > self.max_ratio:
            raise BSPCFormatError(
                f"{name}.npy expands {ratio:.0f}x ({human_bytes(info.file_size)} from "
                f"{human_bytes(info.compress_size)}): refused above {self.max_ratio:g}x for "
                f"members over {human_bytes(RATIO_FREE_BYTES)} (a zip bomb?); "
                "load_bspc(max_ratio=...) raises the limit"
            )
        if self._declared + member.nbytes > self.max_bytes:
            raise BSPCFormatError(
                f"{name}.npy brings the declared size to "
                f"{human_bytes(self._declared + member.nbytes)}, above max_bytes="
                f"{self.max_bytes} ({human_bytes(self.max_bytes)}); "
                "load_bspc(max_bytes=...) raises the limit"
            )
        self._declared += member.nbytes
        self._members[name] = member
        return member

    def read(self, name: str) -> np.ndarray:
        """The array of member ``name`` (its header checked first by :meth:`member`)."""
        member = self.member(name)
        info = self._info(name)
        out = np.empty(member.count, member.dtype)
        view = memoryview(out).cast("B") if member.nbytes else memoryview(b"")
        try:
            with self._zip.open(info) as fp:
                _read_header(fp, name)
                done = 0
                while done < member.nbytes:
                    chunk = fp.read(min(_CHUNK, member.nbytes - done))
                    if not chunk:
                        raise BSPCFormatError(
                            f"{name}.npy is truncated: {done} of {member.nbytes} bytes of data"
                        )
                    view[done : done + len(chunk)] = chunk
                    done += len(chunk)
                if fp.read(1):  # also makes zipfile check the CRC
                    raise BSPCFormatError(f"{name}.npy holds more data than its header declares")
        except BSPCFormatError:
            raise
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError,
                RuntimeError, ValueError) as err:  # fmt: skip
            raise BSPCFormatError(f"{name}.npy: unreadable ({err})") from None
        order = "F" if member.fortran_order else "C"
        return out.reshape(member.shape, order=order)

    def _info(self, name: str) -> zipfile.ZipInfo:
        try:
            return self._zip.getinfo(f"{name}.npy")
        except KeyError:
            raise BSPCFormatError(f"no array {name!r} in the archive") from None


def _read_exact(fp, n: int, what: str, name: str) -> bytes:
    data = fp.read(n)
    if len(data) != n:
        raise BSPCFormatError(f"{name}.npy is truncated in its {what}")
    return data


def _read_header(fp, name: str) -> tuple[Member, int]:
    """Parse a ``.npy`` header from ``fp``; return the member and the header's size in bytes."""
    magic = _read_exact(fp, 8, "magic string", name)
    if magic[:6] != _NPY_MAGIC:
        raise BSPCFormatError(f"{name}.npy is not a .npy array (bad magic string)")
    major = magic[6]
    if major == 1:
        (hlen,) = struct.unpack("<H", _read_exact(fp, 2, "header length", name))
        size = 10
    elif major in (2, 3):
        (hlen,) = struct.unpack("<I", _read_exact(fp, 4, "header length", name))
        size = 12
    else:
        raise BSPCFormatError(f"{name}.npy has .npy format version {major}, known: 1, 2, 3")
    if hlen > _MAX_HEADER:
        raise BSPCFormatError(f"{name}.npy header is {hlen} bytes, more than {_MAX_HEADER}")
    text = _read_exact(fp, hlen, "header", name)
    try:
        header = ast.literal_eval(text.decode("utf-8" if major == 3 else "latin1"))
    except (ValueError, SyntaxError, UnicodeDecodeError, MemoryError, RecursionError) as err:
        raise BSPCFormatError(f"{name}.npy header is not a literal dictionary ({err})") from None
    if not isinstance(header, dict) or set(header) != {"descr", "fortran_order", "shape"}:
        raise BSPCFormatError(
            f"{name}.npy header must hold exactly descr, fortran_order and shape, got {header!r}"
        )
    return _member(name, header), size + hlen


def _member(name: str, header: dict) -> Member:
    descr, shape, fortran = header["descr"], header["shape"], header["fortran_order"]
    if not isinstance(descr, str):
        raise BSPCFormatError(f"{name}.npy has a structured dtype {descr!r}; expected a number")
    try:
        dtype = np.dtype(descr)
    except (TypeError, ValueError) as err:
        raise BSPCFormatError(f"{name}.npy has an unknown dtype {descr!r} ({err})") from None
    if dtype.hasobject:
        raise BSPCFormatError(
            f"{name}.npy holds Python objects (dtype {dtype}), which need pickle: refused to "
            "load pickled data"
        )
    if dtype.kind not in "biuf" or dtype.fields is not None or dtype.subdtype is not None:
        raise BSPCFormatError(f"{name}.npy has dtype {dtype}; expected bool, integer or float")
    if (
        not isinstance(shape, tuple)
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
        or not isinstance(fortran, bool)
    ):
        raise BSPCFormatError(f"{name}.npy has a bad shape {shape!r} or fortran_order {fortran!r}")
    count = math.prod(shape)
    return Member(name, dtype, shape, fortran, count, count * dtype.itemsize)
