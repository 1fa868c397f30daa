"""Files of a corpus: atomic writes, int16 audio in ``.npz``, JSON-lines manifests.

Everything is written to a temporary file in the destination folder and renamed into place
(``os.replace``), so a reader or a resumed run never sees a half-written file. Audio is
stored as int16 PCM in a compressed ``.npz`` (keys ``audio`` and ``sample_rate``; no
pickled objects). Manifests are JSON lines; :func:`read_jsonl` skips a torn last line left
by an interrupted append.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Open a temporary file next to ``path`` for writing; rename it to ``path`` on success.

    The temporary file is named ``.{name}.<random>.tmp`` and removed if the block raises.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600 files; use the usual mode
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and an atomic rename."""
    with atomic_file(path) as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 ``text`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def dumps(obj: object) -> str:
    """Canonical JSON (sorted keys, no spaces) used for manifests and hashes."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def to_int16(audio: np.ndarray) -> np.ndarray:
    """Quantise float audio in ``[-1, 1]`` to int16 (clipping outside)."""
    return np.clip(np.round(np.asarray(audio) * 32767.0), -32768, 32767).astype(np.int16)


def save_audio(path: str | os.PathLike, audio: np.ndarray, sample_rate: int) -> None:
    """Store int16 (or float in ``[-1, 1]``) audio as a compressed ``.npz``, atomically."""
    samples = audio if audio.dtype == np.int16 else to_int16(audio)
    buf = io.BytesIO()
    np.savez_compressed(buf, audio=samples, sample_rate=np.int32(sample_rate))
    atomic_write_bytes(path, buf.getvalue())


def load_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Load audio written by :func:`save_audio`.

    Returns
    -------
    (numpy.ndarray, int)
        int16 samples and the sampling rate.
    """
    with np.load(path, allow_pickle=False) as data:
        return data["audio"], int(data["sample_rate"])


def append_jsonl(path: str | os.PathLike, record: dict) -> None:
    """Append one JSON record as a line and flush it to the OS."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(dumps(record) + "\n")
        f.flush()


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Read JSON lines, skipping blank and unparsable (torn) lines; missing file -> ``[]``."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def write_jsonl(path: str | os.PathLike, records: Iterable[dict]) -> None:
    """Write JSON lines atomically (canonical form, one record a line)."""
    atomic_write_text(path, "".join(dumps(r) + "\n" for r in records))
