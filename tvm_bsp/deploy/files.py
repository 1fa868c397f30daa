"""Atomic file output for deployment artifacts (standard library only: it ships to devices)."""

from __future__ import annotations

import os
import tempfile
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
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=suffix, dir=dest.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
