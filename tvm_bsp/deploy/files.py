"""Atomic file output for deployment artifacts (standard library only: it ships to devices)."""

from __future__ import annotations

import os
import re
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
