"""The tuning database: a directory of JSON files, one per workload, that the user keeps.

A *workload* is (kernel, matrix structure, batch, target, epilogue). Its key is the SHA-256 of
those: the structure fingerprint hashes the BSPC index arrays (shape, grid, kept rows and
columns, row reorder), not the values, so a re-trained matrix with the same mask reuses its
records. The file ``<key>.json`` holds::

    {"format": "tvm-bsp-tune", "version": 1, "workload": {...},
     "records": [{"config": {...}, "median_us": 12.3 | null, "measurements_us": [...],
                  "target": "...", "device_key": "..." | null, "time": "2026-...Z",
                  "error": null | "..."}, ...]}

Every record is appended under an exclusive lock by rewriting the file to a temporary name
and :func:`os.replace`-ing it into place, so a reader never sees a partial file and an
interrupted tuning run loses at most the candidate being measured. Failed candidates are
recorded with ``median_us: null`` and an ``error`` (resuming skips them too).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tvm_bsp.bspc.matrix import BSPCMatrix

__all__ = [
    "DB_FORMAT",
    "DB_VERSION",
    "TuningDatabase",
    "apply_best",
    "best_config",
    "config_key",
    "key_of",
    "structure_fingerprint",
    "utc_now",
    "workload",
    "workload_key",
]

DB_FORMAT = "tvm-bsp-tune"
DB_VERSION = 1
#: The kernel of a BSPC workload (see :func:`workload`).
WORKLOAD_KERNEL = "bspc_linear"


def structure_fingerprint(bspc: BSPCMatrix) -> str:
    """SHA-256 of a BSPC matrix's sparsity structure (index arrays and shape, not values).

    Parameters
    ----------
    bspc : BSPCMatrix

    Returns
    -------
    str
        Hex digest.
    """
    h = hashlib.sha256()
    h.update(json.dumps([list(bspc.shape), bspc.row_blocks, bspc.col_blocks]).encode())
    for name in ("block_row_ptr", "rows", "block_col_ptr", "cols", "reorder"):
        arr = np.ascontiguousarray(np.asarray(getattr(bspc, name), dtype=np.int64))
        h.update(name.encode())
        h.update(str(arr.shape).encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def _target_str(target: Any) -> str:
    from tvm_bsp.kernels.targets import resolve_target

    return str(resolve_target(target))


def _epilogue_str(epilogue: str | None) -> str:
    return "none" if epilogue in (None, "none") else str(epilogue)


def workload(bspc: BSPCMatrix, batch: int, target: Any, epilogue: str | None) -> dict[str, Any]:
    """The workload description stored in a database file (and hashed into its key).

    ``kernel`` names the kernel the configs belong to: ``"bspc_linear"``, the mat-mat kernel
    ``compile_model`` ships (knobs ``lanes``, ``frames``, ...); records of the former
    stand-alone template (``"bspc_spmm"``, knobs ``panel_rows``, ``batch_tile``, ...) have
    other keys and are never applied.
    """
    return {
        "kernel": WORKLOAD_KERNEL,
        "structure": structure_fingerprint(bspc),
        "shape": [int(s) for s in bspc.shape],
        "batch": int(batch),
        "target": _target_str(target),
        "epilogue": _epilogue_str(epilogue),
    }


def workload_key(bspc: BSPCMatrix, batch: int, target: Any, epilogue: str | None = None) -> str:
    """Key of a workload: hash of (structure fingerprint, batch, target, epilogue).

    Returns
    -------
    str
        32 hex digits; the database file is ``<key>.json``.
    """
    return key_of(workload(bspc, batch, target, epilogue))


def key_of(wl: Mapping[str, Any]) -> str:
    """Database key of any workload description: 32 hex digits of its sorted-JSON SHA-256."""
    return hashlib.sha256(json.dumps(dict(wl), sort_keys=True).encode()).hexdigest()[:32]


def config_key(config: Mapping[str, Any]) -> str:
    """Canonical text of a config (sorted JSON), to compare configs across runs."""
    return json.dumps(dict(config), sort_keys=True)


def utc_now() -> str:
    """The current UTC time as ISO 8601 text (seconds)."""
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class TuningDatabase:
    """A directory of per-workload JSON record files.

    Parameters
    ----------
    path : path-like
        The directory (created on the first write).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    # ------------------------------------------------------------------ files
    def file(self, key: str) -> Path:
        """Path of the record file of workload ``key``."""
        return self.path / f"{key}.json"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def load(self, key: str) -> dict[str, Any] | None:
        """The parsed file of workload ``key``, or ``None`` if there is none.

        Raises
        ------
        ValueError
            If the file exists but is not a tuning database file.
        """
        f = self.file(key)
        if not f.is_file():
            return None
        data = json.loads(f.read_text())
        if not isinstance(data, dict) or data.get("format") != DB_FORMAT:
            raise ValueError(f"{f} is not a {DB_FORMAT} file")
        if data.get("version") != DB_VERSION:
            raise ValueError(f"{f}: version {data.get('version')!r} unsupported")
        return data

    def records(self, key: str) -> list[dict[str, Any]]:
        """The records of workload ``key`` (empty if none)."""
        data = self.load(key)
        return list(data["records"]) if data else []

    def append(self, wl: Mapping[str, Any], record: Mapping[str, Any]) -> Path:
        """Append one record to the workload's file, atomically (lock + write + replace).

        Parameters
        ----------
        wl : mapping
            The workload description (:func:`workload`); its hash is the key.
        record : mapping
            JSON-serializable record.

        Returns
        -------
        pathlib.Path
            The workload's file.
        """
        key = key_of(wl)
        with self._locked():
            data = self.load(key) or {
                "format": DB_FORMAT,
                "version": DB_VERSION,
                "workload": dict(wl),
                "records": [],
            }
            data["records"].append(dict(record))
            dest = self.file(key)
            fd, tmp = tempfile.mkstemp(prefix=f".{key}.", suffix=".tmp", dir=self.path)
            try:
                with os.fdopen(fd, "w") as out:
                    json.dump(data, out, indent=1)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(tmp, dest)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        return dest

    def best(self, key: str) -> dict[str, Any] | None:
        """The successful record with the lowest median of workload ``key``, or ``None``."""
        ok = [r for r in self.records(key) if r.get("median_us") is not None]
        return min(ok, key=lambda r: float(r["median_us"])) if ok else None


def _as_db(db: TuningDatabase | str | os.PathLike[str]) -> TuningDatabase:
    return db if isinstance(db, TuningDatabase) else TuningDatabase(db)


def best_config(
    db: TuningDatabase | str | os.PathLike[str],
    bspc: BSPCMatrix,
    batch: int = 1,
    target: Any = "host",
    epilogue: str | None = None,
) -> dict[str, Any] | None:
    """The fastest measured config of a workload, or ``None`` if it was never tuned.

    Parameters
    ----------
    db : TuningDatabase or path-like
        The database directory.
    bspc : BSPCMatrix
    batch : int
    target : str, dict or tvm.target.Target
        As given to the tuner (``"host"``, ``"arm64"``, ...).
    epilogue : {None, "none", "sigmoid", "tanh"}

    Returns
    -------
    dict or None
        The knob config of the record with the lowest median.
    """
    record = _as_db(db).best(workload_key(bspc, batch, target, epilogue))
    return dict(record["config"]) if record else None


def apply_best(
    db: TuningDatabase | str | os.PathLike[str],
    bspc: BSPCMatrix,
    batch: int = 1,
    target: Any = "host",
    epilogue: str | None = None,
) -> dict[str, Any] | None:
    """The best config of a workload, validated against the current template, or ``None``.

    Meant for the build path (a fresh process): ``build_spmm(bspc, batch, target,
    config=apply_best(db, bspc, batch, target, epilogue), epilogue=epilogue)``; with ``None``
    the build falls back to the template's own choice.

    Parameters
    ----------
    db, bspc, batch, target, epilogue
        As in :func:`best_config`.

    Returns
    -------
    dict or None
        A full config of ``spmm_template(target).knobs(batch, bspc)``; ``None`` if the
        workload has no successful record or the record no longer fits the template's knobs.
    """
    config = best_config(db, bspc, batch, target, epilogue)
    if config is None:
        return None
    from tvm_bsp.kernels.knobs import resolve_config
    from tvm_bsp.kernels.matmat import spmm_template
    from tvm_bsp.kernels.targets import resolve_target

    knobs = spmm_template(resolve_target(target)).knobs(batch, bspc)
    try:
        return resolve_config(knobs, config)
    except ValueError:
        return None
