"""The sidecar JSON next to an exported ``.so``: class names and how to decode the scores.

``tvm-bsp compile ... -o model.so`` writes ``model.so.json`` (never ``model.json``, which is the
config of a saved speech model)::

    {"format": "tvm_bsp.deploy.labels", "version": 1,
     "labels": ["aa", "ae", ...],        # one name per output class
     "head": "framewise" | "ctc",        # decoding rule
     "blank": null | 0,                  # CTC blank class
     "decode": {"smooth": 7, "min_run": 4},
     "frame_shift_ms": 10.0, "target": "arm64", "source": "OUT/model.pt",
     "library": {"size": 235168, "sha256": "...", "weights_sha256": "...",
                 "machine": "aarch64"}}     # written by the export: checked at load

An export alone (``CompiledModel.export``) writes only ``format``, ``version``, ``target`` and
``library``; the labels are then class numbers.

Imports only the standard library (the runner uses it on the device).
"""

from __future__ import annotations

import json
import numbers
import os
from pathlib import Path
from typing import Any

#: The sidecar's ``format`` (a file format name: it kept the module's old path when the module
#: moved to :mod:`tvm_bsp.runtime`, so earlier sidecars still read).
LABELS_FORMAT = "tvm_bsp.deploy.labels"
LABELS_VERSION = 1
#: Frame shift of the speech features (Kaldi default), for the real-time factor.
FRAME_SHIFT_MS = 10.0


def sidecar_path(so_path: str | os.PathLike[str]) -> Path:
    """``model.so`` -> ``model.so.json``."""
    so_path = Path(so_path)
    return so_path.with_name(so_path.name + ".json")


def make_labels(
    labels: list[str],
    head: str = "framewise",
    decode: dict[str, int] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Build a sidecar record (see the module docstring).

    Parameters
    ----------
    labels : list of str
        Class names in output order (for CTC, class 0 is the blank).
    head : {"framewise", "ctc"}
    decode : dict, optional
        ``{"smooth": int, "min_run": int}`` for framewise heads (default: no smoothing).
    **extra
        JSON-able fields stored as they are (``target``, ``source``, ...).
    """
    if head not in ("framewise", "ctc"):
        raise ValueError(f"head must be 'framewise' or 'ctc', got {head!r}")
    decode = dict(decode or {"smooth": 1, "min_run": 1})
    return {
        "format": LABELS_FORMAT,
        "version": LABELS_VERSION,
        "labels": [str(x) for x in labels],
        "head": head,
        "blank": 0 if head == "ctc" else None,
        "decode": check_decode(
            {"smooth": decode.get("smooth", 1), "min_run": decode.get("min_run", 1)}, "decode"
        ),
        "frame_shift_ms": FRAME_SHIFT_MS,
        **extra,
    }


def write_labels(so_path: str | os.PathLike[str], record: dict[str, Any]) -> Path:
    """Write the sidecar of ``so_path`` atomically; return its path.

    The ``library`` entry the export wrote (:func:`write_library_record`) is kept when
    ``record`` has none.
    """
    record = dict(record)
    if "library" not in record:
        kept = read_library_record(so_path)
        if kept is not None:
            record["library"] = kept
    return write_json(sidecar_path(so_path), record)


def write_library_record(
    so_path: str | os.PathLike[str], library: dict[str, Any], target: str | None = None
) -> Path:
    """Record what :func:`tvm_bsp.runtime.files.library_record` measured in the sidecar.

    An existing sidecar keeps its other entries; without one, a record without labels is
    written (:func:`read_labels` then uses class numbers).
    """
    path = sidecar_path(so_path)
    record: dict[str, Any] = {"format": LABELS_FORMAT, "version": LABELS_VERSION}
    if path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
            record = old if isinstance(old, dict) and old.get("format") == LABELS_FORMAT else record
        except (json.JSONDecodeError, UnicodeDecodeError):
            pass  # replaced by a fresh record
    record["library"] = dict(library)
    if target is not None:
        record.setdefault("target", target)
    return write_json(path, record)


def read_library_record(so_path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The sidecar's ``library`` entry (size, digests, machine), or ``None`` without one."""
    path = sidecar_path(so_path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get("library"), dict):
        return None
    return {"target": record.get("target"), **record["library"]}


def write_json(path: str | os.PathLike[str], record: Any) -> Path:
    """Write ``record`` as indented JSON to ``path`` atomically; return the absolute path."""
    from tvm_bsp.runtime.files import atomic_output

    dest = Path(path).absolute()
    with atomic_output(dest) as tmp:
        tmp.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return dest


def read_labels(so_path: str | os.PathLike[str], classes: int) -> dict[str, Any]:
    """Read the sidecar of ``so_path``, or a default one when there is none.

    Parameters
    ----------
    so_path : path-like
        The ``.so`` (its sidecar is :func:`sidecar_path`), or the sidecar itself (``.json``).
    classes : int
        The module's output size; the sidecar must name that many classes.

    Returns
    -------
    dict
        The record; without a sidecar: class numbers as names, plain framewise decoding.

    Raises
    ------
    ValueError
        If the sidecar is not valid JSON, not ours, or names another number of classes.
    """
    path = Path(so_path)
    if path.suffix != ".json":
        path = sidecar_path(path)
    if not path.is_file():
        return make_labels([str(i) for i in range(classes)])
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from None
    ours = isinstance(record, dict) and record.get("format") == LABELS_FORMAT
    if ours and "labels" not in record:  # written by an export alone (the library record)
        return {**make_labels([str(i) for i in range(classes)]), **record}
    return check_labels(record, classes, str(path))


def check_labels(record: Any, classes: int, where: str) -> dict[str, Any]:
    """Check a labels record (sidecar, or ``meta()["labels"]`` of a module).

    Parameters
    ----------
    record : object
        The parsed record.
    classes : int
        The module's output size.
    where : str
        Where the record came from, for the error message.

    Returns
    -------
    dict
        ``record``.

    Raises
    ------
    ValueError
        If it is not ours or names another number of classes than ``classes``.
    """
    if not isinstance(record, dict) or record.get("format") != LABELS_FORMAT:
        raise ValueError(f"{where} is not a {LABELS_FORMAT} record")
    labels = record.get("labels")
    if not isinstance(labels, list) or len(labels) != classes:
        count = len(labels) if isinstance(labels, list) else "no"
        raise ValueError(f"{where} names {count} labels, the module has {classes} outputs")
    if "decode" in record and record["decode"] is not None:
        check_decode(record["decode"], f"{where}: decode")
    return record


#: Largest decoding window (frames, 100 s at 10 ms) for ``smooth`` and ``min_run``.
MAX_DECODE_FRAMES = 10_000


def check_decode(decode: Any, where: str) -> dict[str, int]:
    """Check ``{"smooth": int, "min_run": int}``: integers in ``[1, MAX_DECODE_FRAMES]``.

    Raises
    ------
    ValueError
        Naming the key and the value given (``decode.smooth = 10**12`` would allocate TiBs).
    """
    if not isinstance(decode, dict):
        raise ValueError(f"{where} must be an object {{smooth, min_run}}, got {decode!r}")
    out = dict(decode)
    for key in ("smooth", "min_run"):
        value = decode.get(key, 1)
        ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
        if not ok or not 1 <= value <= MAX_DECODE_FRAMES:
            raise ValueError(
                f"decode.{key} must be an integer in [1, {MAX_DECODE_FRAMES}] (frames), "
                f"got {value!r} ({where})"
            )
        out[key] = int(value)
    return out
