"""Carry the finished rows of a Table I run across sessions as committable files.

A work directory's rows (``rows/<method>-<rate>/``: ``model.pt``, a pickle, plus
``result.json``) cannot be committed. :func:`save_rows` writes every finished row as a
:mod:`tvm_bsp.speech.pretrained` file ``<method>-<rate>.safetensors`` (GRU weights sparse, the
row's ``result.json`` and the run's ``settings.json`` in its ``info``) plus ``rows.json`` (size
and SHA-256 of every file). :func:`install_rows` puts them back into a work directory of the
same settings, where they count as finished rows (a gradual chain continues from them).
"""

from __future__ import annotations

import itertools
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from tvm_bsp.experiments.table1.ship import file_sha256
from tvm_bsp.speech.prune_run import METHODS, without_method_fields
from tvm_bsp.speech.storage import atomic_write_text

ROWS_MANIFEST = "rows.json"
ROWS_FORMAT = "tvm_bsp.experiments.table1.carry"
ROWS_VERSION = 1
LOCAL_FIELDS = ("bspc_dir", "carried_from")
"""Fields of a ``result.json`` that name paths of one work directory: not carried."""
_FILE_NAME = re.compile(r"^(?P<method>[a-z]+)-(?P<rate>[0-9][0-9.e+]*)\.safetensors$")


def save_rows(work: str | os.PathLike, out: str | os.PathLike) -> list[Path]:
    """Write every finished row of ``work`` to ``out`` (idempotent: same rows, same bytes).

    Parameters
    ----------
    work : path-like
        A Table I work directory (:func:`tvm_bsp.experiments.table1.run.run_experiment`).
    out : path-like
        Output folder (created). Rows listed by an earlier ``rows.json`` there that ``work``
        does not hold stay listed while their files are intact.

    Returns
    -------
    list of pathlib.Path
        The row files written, ``rows.json`` last.
    """
    from tvm_bsp.speech.model import load_model
    from tvm_bsp.speech.pretrained import save_pretrained
    from tvm_bsp.speech.prune_run import gru_weight_names

    work, out = Path(work), Path(out)
    settings = _work_settings(work)
    written: list[Path] = []
    for result_file in sorted((work / "rows").glob("*/result.json")):
        rdir = result_file.parent
        row = json.loads(result_file.read_text())
        if rdir.name != _row_name(row, result_file) or not (rdir / "model.pt").exists():
            raise ValueError(f"{rdir} is not a finished row of {work}")
        model, _ = load_model(rdir / "model.pt")
        params = dict(model.named_parameters())
        masks = {n: params[n].detach() != 0 for n in gru_weight_names(model)}
        stored = {k: v for k, v in row.items() if k not in LOCAL_FIELDS}
        info = {"kind": "row", "row": stored, "settings": settings}
        path = out / f"{rdir.name}.safetensors"
        written.append(save_pretrained(model, path, masks=masks, info=info))
    files = {p.name: {"bytes": p.stat().st_size, "sha256": file_sha256(p)} for p in written}
    if (out / ROWS_MANIFEST).exists():  # keep the intact rows an earlier session saved here
        for name, entry in _read_manifest(out).items():
            if name not in files and _intact(out / name, entry):
                files[name] = entry
    listed = dict(sorted(files.items()))
    manifest = {"format": ROWS_FORMAT, "version": ROWS_VERSION, "files": listed}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / ROWS_MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return [*written, out / ROWS_MANIFEST]


def install_rows(
    work: str | os.PathLike, src: str | os.PathLike, *, config: Any | None = None
) -> list[str]:
    """Install the rows of ``src`` (written by :func:`save_rows`) that ``work`` has not finished.

    Every file is checked before anything is written: its size and SHA-256 against
    ``rows.json``, its format (:func:`~tvm_bsp.speech.pretrained.load_pretrained`), and its
    run's settings against ``work/settings.json`` (which must exist: ``run_experiment``
    writes it). A row gets ``model.pt``, ``result.json`` (with ``carried_from``, the file) and,
    for BSP, its BSPC export ``bspc/`` rebuilt from the weights and the recorded grids.

    Parameters
    ----------
    work, src : path-like
        The work directory and a folder written by :func:`save_rows`.
    config : ExperimentConfig, optional
        When given, only rows of its methods are installed, and a row pruned with other
        method-specific settings (the BSP grid, ESE's groups) is refused.

    Returns
    -------
    list of str
        The installed rows' names (``"bsp-10"``, ...).

    Raises
    ------
    ValueError
        If a file does not match ``rows.json``, is not a carried row (``PretrainedFormatError``
        for a malformed file), or was made with other settings (named in the message).
    """
    from tvm_bsp.experiments.table1.work import write_json
    from tvm_bsp.prune import export_bspc
    from tvm_bsp.speech.model import save_model
    from tvm_bsp.speech.pretrained import load_pretrained

    work, src = Path(work), Path(src)
    settings = _work_settings(work)
    pending = []
    for name, entry in _read_manifest(src).items():
        match = _FILE_NAME.match(name)
        if match is None or match["method"] not in METHODS:
            raise ValueError(f"{src / ROWS_MANIFEST} lists {name!r}, not a <method>-<rate> file")
        if config is not None and match["method"] not in config.methods:
            continue
        rdir = work / "rows" / name.removesuffix(".safetensors")
        if (rdir / "result.json").exists():
            continue
        path = src / name
        if not _intact(path, entry):
            raise ValueError(f"{path} does not match {src / ROWS_MANIFEST} (size or SHA-256)")
        model, _, info = load_pretrained(path)
        row = info.get("row")
        if info.get("kind") != "row" or not isinstance(row, dict):
            raise ValueError(f"{path} is not a carried Table I row")
        if _row_name(row, path) != rdir.name:
            raise ValueError(f"{path} holds row {_row_name(row, path)!r}, not {rdir.name!r}")
        diff = _differing(_normal(info.get("settings")), _normal(settings))
        if config is not None:  # the settings only this method reads (the BSP grid, ...)
            wanted = config.prune.method_dict(row["method"])
            had = row.get("prune") if isinstance(row.get("prune"), dict) else {}
            diff += _differing({k: had.get(k) for k in wanted}, wanted, "prune.")
        if diff:
            raise ValueError(
                f"{path} was made with other settings than this run's (differing: "
                f"{', '.join(diff)}); use a work directory of those settings"
            )
        bsp = _bsp_masks(model, row, path) if row["method"] == "bsp" else None
        pending.append((rdir, path, model, row, bsp))
    installed = []
    for rdir, path, model, row, bsp in pending:
        bspc = None
        if bsp is not None:
            export_bspc(model, bsp[0], rdir / "bspc", grid=bsp[1])
            bspc = str(rdir / "bspc")
        extra = {"per": row.get("per"), "rate": row.get("achieved_rate"), "carried_from": str(path)}
        save_model(model, rdir / "model.pt", extra=extra)
        write_json(rdir / "result.json", {**row, "bspc_dir": bspc, "carried_from": str(path)})
        installed.append(rdir.name)
    return installed


def _work_settings(work: Path) -> dict[str, Any]:
    path = work / "settings.json"
    if not path.is_file():
        raise ValueError(f"{work} has no settings.json (run_experiment writes it)")
    settings = json.loads(path.read_text())
    if not isinstance(settings, dict):
        raise ValueError(f"{path} is not a settings object")
    return settings


def _row_name(row: dict[str, Any], where: Path) -> str:
    method, rate = row.get("method"), row.get("rate")
    if method not in METHODS or isinstance(rate, bool) or not isinstance(rate, int | float):
        raise ValueError(f"{where}: not a row result (method {method!r}, rate {rate!r})")
    return f"{method}-{rate:g}"


def _read_manifest(folder: Path) -> dict[str, dict[str, Any]]:
    path = folder / ROWS_MANIFEST
    if not path.is_file():
        raise ValueError(f"{folder} has no {ROWS_MANIFEST} (save_rows writes it)")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from None
    header = (manifest.get("format"), manifest.get("version")) if isinstance(manifest, dict) else 0
    if header != (ROWS_FORMAT, ROWS_VERSION):
        raise ValueError(f"{path} is not a {ROWS_FORMAT} manifest of version {ROWS_VERSION}")
    files = manifest.get("files")
    if not isinstance(files, dict) or not all(
        isinstance(e, dict) and isinstance(e.get("bytes"), int) and isinstance(e.get("sha256"), str)
        for e in files.values()
    ):
        raise ValueError(f"{path}: 'files' must map names to {{bytes, sha256}}")
    return files


def _intact(path: Path, entry: dict[str, Any]) -> bool:
    return (
        path.is_file()
        and path.stat().st_size == entry["bytes"]
        and file_sha256(path) == entry["sha256"]
    )


def _normal(settings: Any) -> dict[str, Any]:
    """Settings as :func:`~tvm_bsp.experiments.table1.work.check_settings` compares them."""
    settings = dict(settings) if isinstance(settings, dict) else {}
    if isinstance(settings.get("prune"), dict):
        settings["prune"] = without_method_fields(settings["prune"])
    return settings


def _differing(had: dict[str, Any], want: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of the keys whose values differ (nested dictionaries key by key)."""
    diff = []
    for key in sorted(set(had) | set(want)):
        a, b = had.get(key), want.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            diff += _differing(a, b, f"{prefix}{key}.")
        elif a != b:
            diff.append(prefix + key)
    return diff


def _bsp_masks(model: Any, row: dict[str, Any], path: Path) -> tuple[dict, dict]:
    """The masks and grids of a carried BSP row's BSPC export, rebuilt from its kept weights.

    In every block of a matrix's recorded grid the mask keeps the rows and columns that hold a
    non-zero, so a kept weight that happens to be zero keeps the block a rectangle.
    """
    from tvm_bsp.bspc import stripe_bounds

    specs = row.get("specs") if isinstance(row.get("specs"), dict) else {}
    params = dict(model.named_parameters())
    masks, grids = {}, {}
    for name, spec in specs.items() or [("(none)", None)]:
        grid = (spec.get("row_blocks"), spec.get("col_blocks")) if isinstance(spec, dict) else (0,)
        if name not in params or not all(isinstance(g, int) and g >= 1 for g in grid):
            raise ValueError(f"{path}: the row's specs give no BSP grid of a weight {name!r}")
        kept = params[name].detach().numpy() != 0
        mask = np.zeros_like(kept)
        rows, cols = stripe_bounds(kept.shape[0], grid[0]), stripe_bounds(kept.shape[1], grid[1])
        for r0, r1 in itertools.pairwise(rows):
            for c0, c1 in itertools.pairwise(cols):
                block = kept[r0:r1, c0:c1]
                mask[r0:r1, c0:c1] = np.outer(block.any(axis=1), block.any(axis=0))
        masks[name], grids[name] = mask, grid
    return masks, grids
