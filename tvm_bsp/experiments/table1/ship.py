"""Ship the models of a Table I run: the dense model and the BSP rows as pretrained files.

:func:`ship_run` turns a work directory of :func:`tvm_bsp.experiments.table1.run.run_experiment`
into a folder of :mod:`tvm_bsp.speech.pretrained` files (``dense.safetensors``,
``bsp-<rate>.safetensors``, pruned weights stored sparse) plus ``manifest.json`` (size and
SHA-256 of every file). Each file's ``info`` records how it was made (the command, seeds,
corpus settings, training history and wall time) and its PER on a fixed slice of the test split
(:data:`TEST_SLICE` utterances: generated alone, they equal the corpus's first ones), which the
tests check on every machine. :func:`shipped_dir` is where the package keeps them.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tvm_bsp.speech.storage import atomic_write_text

TEST_SLICE = 40
"""Utterances of the test split that shipped models are scored on in the tests."""
MANIFEST = "manifest.json"


def shipped_dir() -> Path:
    """The folder of the models shipped with the package (``tvm_bsp/pretrained/table1``)."""
    return Path(__file__).resolve().parents[2] / "pretrained" / "table1"


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 hex digest of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def ship_run(
    work: str | os.PathLike,
    out: str | os.PathLike,
    *,
    command: str,
    test_utts: Sequence[Any],
    rates: Sequence[float] | None = None,
    test_slice: int = TEST_SLICE,
) -> list[Path]:
    """Write the dense model and the finished BSP rows of ``work`` into ``out``.

    Parameters
    ----------
    work : path-like
        A Table I work directory with a finished dense model.
    out : path-like
        Output folder (created; existing files of the same names are replaced).
    command : str
        The command line that ships (recorded in every file, with the run's own commands
        from ``work/commands.txt`` when the run wrote one).
    test_utts : sequence
        The first :data:`TEST_SLICE` (or more) utterances of the run's test split.
    rates : sequence of float, optional
        BSP rows to ship (default: every finished one).
    test_slice : int
        How many of ``test_utts`` each file's recorded PER covers.

    Returns
    -------
    list of pathlib.Path
        The files written, manifest last.
    """
    from tvm_bsp.speech.model import load_model
    from tvm_bsp.speech.pretrained import save_pretrained
    from tvm_bsp.speech.prune_run import gru_weight_names
    from tvm_bsp.speech.train import evaluate_per

    work, out = Path(work), Path(out)
    settings = json.loads((work / "settings.json").read_text())
    dense_eval = json.loads((work / "dense" / "eval.json").read_text())
    decode = dense_eval["decode"]
    sample = list(test_utts[:test_slice])
    if len(sample) < test_slice:
        raise ValueError(f"need {test_slice} test utterances, got {len(sample)}")
    log = work / "commands.txt"  # every training invocation of the run (scripts/table1.py)
    history = log.read_text().splitlines() if log.exists() else []
    common = {"command": command, "run_commands": history, "settings": settings, "decode": decode}

    def slice_record(model: Any) -> dict[str, Any]:
        ids = [u.id for u in sample]
        return {"utterances": ids, "per": evaluate_per(model, sample, **decode)}

    dense, _ = load_model(work / "dense" / "model.pt")
    written = [
        save_pretrained(
            dense,
            out / "dense.safetensors",
            info={**common, "kind": "dense", "eval": dense_eval, "test_slice": slice_record(dense)},
        )
    ]
    for result_file in sorted((work / "rows").glob("bsp-*/result.json")):
        row = json.loads(result_file.read_text())
        if rates is not None and row["rate"] not in rates:
            continue
        model, _ = load_model(result_file.parent / "model.pt")
        params = dict(model.named_parameters())
        masks = {n: params[n].detach() != 0 for n in gru_weight_names(model)}
        info = {**common, "kind": "bsp", "row": row, "test_slice": slice_record(model)}
        written.append(
            save_pretrained(model, out / f"bsp-{row['rate']:g}.safetensors", masks=masks, info=info)
        )
    manifest = {p.name: {"bytes": p.stat().st_size, "sha256": file_sha256(p)} for p in written}
    manifest_path = out / MANIFEST
    atomic_write_text(manifest_path, json.dumps(manifest, indent=2) + "\n")
    return [*written, manifest_path]


def verify_shipped(folder: str | os.PathLike | None = None) -> dict[str, dict[str, Any]]:
    """Check every file of a shipped folder against its manifest (size and SHA-256).

    Raises
    ------
    ValueError
        If a file is missing, or its size or digest differs from the manifest.
    """
    root = Path(folder) if folder is not None else shipped_dir()
    manifest = json.loads((root / MANIFEST).read_text())
    for name, entry in manifest.items():
        path = root / name
        if not path.is_file():
            raise ValueError(f"shipped model {path} is missing")
        if path.stat().st_size != entry["bytes"] or file_sha256(path) != entry["sha256"]:
            raise ValueError(f"shipped model {path} does not match {root / MANIFEST}")
    return manifest
