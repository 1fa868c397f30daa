"""Deployment artifacts on disk: atomic output, and checked library files.

:func:`atomic_output` writes a file so that a reader never sees a partial one.
:func:`check_library` checks an exported ``.so`` before it is handed to ``dlopen`` (a truncated
file mapped by ``dlopen`` kills the process with a bus error): the size and SHA-256 its export
recorded (:func:`library_record`, kept in the sidecar ``model.so.json``), the ELF header and
the bounds of every segment and section, the machine (an ``aarch64`` build on x86 is named as
such), that it is a TVM library, and the SHA-256 of its weights: TVM packs the Relax
executable with its constants into the symbol :data:`BLOB_SYMBOL`, and the export compiles
that blob's digest into the library as :data:`WEIGHTS_SYMBOL`, so corrupted constants are
refused even without a sidecar. Standard library only: it ships to devices.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_output(path: str | os.PathLike[str], suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` when the block succeeds.

    Parameters
    ----------
    path : str or os.PathLike
        Destination; parent directories are created.
    suffix : str
        Suffix of the temporary file (``.so`` for libraries: linkers look at it).

    Yields
    ------
    pathlib.Path
        Where the block writes. On success the file gets mode 0644 and replaces ``path`` in
        one rename, so a reader never sees a partial file; on any error it is removed and
        ``path`` is left as it was.
    """
    dest = Path(path).absolute()
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(dest, suffix)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=suffix, dir=dest.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _process_start() -> float:
    """When this process started (Linux: from /proc; elsewhere: when this module was imported)."""
    try:
        with open("/proc/self/stat", encoding="ascii") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/stat", encoding="ascii") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith("btime"))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return time.time()


_STARTED = _process_start()


def remove_stale_temporaries(dest: str | os.PathLike[str], suffix: str = ".tmp") -> list[Path]:
    """Remove temporaries of ``dest`` that an interrupted earlier write left behind.

    A temporary is ``.<name>.<8 random characters><suffix>`` beside ``dest`` (as
    :func:`atomic_output` and :func:`tvm_bsp.bspc.atomic_write` name them); only those last
    modified before this process started are removed, so a concurrent writer's survive.

    Returns
    -------
    list of pathlib.Path
        The files removed.
    """
    dest = Path(dest)
    pattern = re.compile(rf"\.{re.escape(dest.name)}\.[a-z0-9_]{{8}}{re.escape(suffix)}")
    removed = []
    try:
        candidates = list(dest.parent.iterdir())
    except OSError:
        return removed
    for p in candidates:
        if not pattern.fullmatch(p.name):
            continue
        try:
            if p.is_file() and p.stat().st_mtime < _STARTED:
                p.unlink()
                removed.append(p)
        except OSError:  # gone meanwhile, or not ours to remove
            continue
    return removed


def current_umask() -> int:
    """The process umask (read from /proc where possible: setting it is not thread-safe)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# --------------------------------------------------------------------------- checked libraries
#: Exported symbol holding the SHA-256 (hex) of the packed imports (VM bytecode + weights).
WEIGHTS_SYMBOL = "tvm_bsp_weights_sha256"
#: TVM's symbol of the packed imports: the Relax executable with its constants (the weights).
BLOB_SYMBOL = "__tvm_ffi__library_bin"
#: ELF ``e_machine`` values by the name ``os.uname().machine`` gives.
ELF_MACHINES = {3: "i386", 40: "arm", 62: "x86_64", 183: "aarch64", 243: "riscv64"}
_SHT_NOBITS, _SHT_DYNSYM, _PT_LOAD = 8, 11, 1


class LibraryCheckError(ValueError):
    """A library file that is truncated, corrupted, foreign or built for another machine."""


def host_machine() -> str:
    """This machine's ISA as ELF names it (``arm64`` is ``aarch64``)."""
    machine = os.uname().machine
    return "aarch64" if machine == "arm64" else machine


def weights_source(digest: str) -> str:
    """C (and C++) source of the exported :data:`WEIGHTS_SYMBOL` holding ``digest``."""
    return (
        '#ifdef __cplusplus\nextern "C" {\n#endif\n'
        f"extern const char {WEIGHTS_SYMBOL}[65];\n"
        f'const char {WEIGHTS_SYMBOL}[65] = "{digest}";\n'
        "#ifdef __cplusplus\n}\n#endif\n"
    )


def read_elf(data: bytes, where: str) -> tuple[str, dict[str, bytes]]:
    """Check an ELF shared library in memory: header, bounds of every segment and section.

    Parameters
    ----------
    data : bytes
        The file's contents.
    where : str
        The file's name, for messages.

    Returns
    -------
    machine : str
        ``x86_64``, ``aarch64``, ... (``e_machine``).
    symbols : dict
        The contents of the exported ``__tvm_ffi*`` / ``tvm_bsp*`` data and code symbols.

    Raises
    ------
    LibraryCheckError
        Not an ELF file, not a shared library, or a header pointing past the end (truncated).
    """
    size = len(data)
    if size < 64 or data[:4] != b"\x7fELF":
        raise LibraryCheckError(f"{where} is not a shared library (no ELF header, {size} bytes)")
    wide, end = {1: False, 2: True}.get(data[4]), {1: "<", 2: ">"}.get(data[5])
    if wide is None or end is None:
        raise LibraryCheckError(f"{where}: unknown ELF class {data[4]} / byte order {data[5]}")
    head = struct.unpack_from(end + ("HHIQQQIHHHHHH" if wide else "HHIIIIIHHHHHH"), data, 16)
    e_type, e_machine, phoff, shoff = head[0], head[1], head[4], head[5]
    phentsize, phnum, shentsize, shnum = head[8], head[9], head[10], head[11]
    machine = ELF_MACHINES.get(e_machine, f"machine {e_machine}")
    if e_type != 3:
        raise LibraryCheckError(f"{where} is an ELF file of type {e_type}, not a shared library")

    def need(offset: int, length: int, what: str) -> None:
        if offset + length > size:
            raise LibraryCheckError(
                f"{where} is truncated: its {what} ends at byte {offset + length}, the file "
                f"has {size} bytes"
            )

    need(phoff, phentsize * phnum, "program header table")
    need(shoff, shentsize * shnum, "section header table")
    ph = end + ("IIQQQQQQ" if wide else "IIIIIIII")
    for k in range(phnum):
        f = struct.unpack_from(ph, data, phoff + k * phentsize)
        p_type, p_offset, p_filesz = f[0], (f[2] if wide else f[1]), (f[5] if wide else f[4])
        if p_type == _PT_LOAD:
            need(p_offset, p_filesz, f"loadable segment {k}")
    sh = end + ("IIQQQQIIQQ" if wide else "IIIIIIIIII")
    sections = [struct.unpack_from(sh, data, shoff + k * shentsize) for k in range(shnum)]
    for k, s in enumerate(sections):
        if s[1] != _SHT_NOBITS:
            need(s[4], s[5], f"section {k}")
    return machine, _symbols(data, sections, wide, end)


def _symbols(data: bytes, sections: list, wide: bool, end: str) -> dict[str, bytes]:
    """Exported symbols named ``__tvm_ffi*`` / ``tvm_bsp*`` and their bytes in the file."""
    out: dict[str, bytes] = {}
    fmt, step = (end + "IBBHQQ", 24) if wide else (end + "IIIBBH", 16)
    for s in sections:
        if s[1] != _SHT_DYNSYM or not 0 < s[6] < len(sections):
            continue
        strtab = sections[s[6]]
        names = data[strtab[4] : strtab[4] + strtab[5]]
        for k in range(s[5] // step):
            f = struct.unpack_from(fmt, data, s[4] + k * step)
            name_at, value, length, shndx = (
                (f[0], f[4], f[5], f[3]) if wide else (f[0], f[1], f[2], f[5])
            )
            name = names[name_at : names.find(b"\0", name_at)].decode("ascii", "replace")
            if not name.startswith(("__tvm_ffi", "tvm_bsp")) or not 0 < shndx < len(sections):
                continue
            home = sections[shndx]  # the symbol's bytes: its section's file range
            start = home[4] + value - home[3]
            if home[1] != _SHT_NOBITS and home[4] <= start and start + length <= home[4] + home[5]:
                out[name] = data[start : start + length]
            else:
                out[name] = b""
    return out


def library_record(path: str | os.PathLike[str]) -> dict[str, object]:
    """What an export records of a library: size, SHA-256, machine, weights digest.

    The weights digest is the SHA-256 of TVM's packed imports (:data:`BLOB_SYMBOL`: the VM
    bytecode and its constants, i.e. the weights), ``None`` for a library without them.
    """
    data = Path(path).read_bytes()
    machine, symbols = read_elf(data, str(path))
    blob = symbols.get(BLOB_SYMBOL)
    return {
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "machine": machine,
        "weights_sha256": hashlib.sha256(blob).hexdigest() if blob else None,
    }


def check_library(
    path: str | os.PathLike[str],
    record: dict[str, object] | None,
    target: str | None = None,
    here: bool = True,
) -> list[str]:
    """Check a library before ``dlopen``: what its export recorded, ELF sanity, machine, weights.

    Parameters
    ----------
    path : path-like
        The ``.so``.
    record : dict or None
        The sidecar's ``library`` entry (:func:`library_record` at export), if any.
    target : str, optional
        The sidecar's deploy target name, for the message of a foreign machine.
    here : bool
        The library is to run on this machine (False for an upload to an RPC device: the
        machine is not checked).

    Returns
    -------
    list of str
        Warnings (what could not be verified).

    Raises
    ------
    LibraryCheckError
        Size or digest differ from the record, a broken or foreign file, another machine's
        build, corrupted weights, or a shared library that is not a TVM library.
    """
    where, data = str(path), Path(path).read_bytes()
    warnings = []
    if record is None:
        warnings.append(
            f"{where} has no size/digest record (exported before checked libraries, or its "
            "sidecar .so.json is missing): it cannot be verified"
        )
    else:
        if record.get("size") != len(data):
            raise LibraryCheckError(
                f"{where} has {len(data)} bytes, its export wrote {record.get('size')}: the file "
                "is truncated or was changed; export or copy it again"
            )
        if record.get("sha256") != hashlib.sha256(data).hexdigest():
            raise LibraryCheckError(
                f"{where} is corrupted: its SHA-256 differs from the one recorded at export "
                "(same size); export or copy it again"
            )
    machine, symbols = read_elf(data, where)
    host = host_machine()
    if here and machine != host:
        built = f"{machine} ({target})" if target else machine
        hint = (
            f"run it on the device, or here under qemu with `tvm-bsp deploy {where} --target "
            "arm64 ...`"
            if machine == "aarch64"
            else "run it on a machine of that kind"
        )
        raise LibraryCheckError(f"{where} is an {built} build; this machine is {host}: {hint}")
    if BLOB_SYMBOL not in symbols:
        raise LibraryCheckError(
            f"{where} is a shared library but not a TVM module library (no {BLOB_SYMBOL})"
        )
    digest = hashlib.sha256(symbols[BLOB_SYMBOL]).hexdigest()
    embedded = symbols.get(WEIGHTS_SYMBOL, b"").rstrip(b"\0").decode("ascii", "replace")
    recorded = record.get("weights_sha256") if record else None
    for what, want in (("compiled into the library", embedded), ("in its sidecar", recorded)):
        if want and want != digest:
            raise LibraryCheckError(
                f"{where}: the weights (constants) are corrupted: their SHA-256 differs from "
                f"the one {what}; export or copy it again"
            )
    if not embedded and record is not None and not recorded:
        warnings.append(f"{where}: no weights digest recorded; the constants are not verified")
    return warnings
