"""Export pruned weights as BSPC files plus a JSON index.

:func:`export_bspc` writes, into one directory,

``<name>.npz``
    each pruned weight as a BSPC matrix (:func:`tvm_bsp.bspc.save_bspc`), e.g.
    ``gru.weight_ih_l0.npz``;
``index.json``
    ``{"format": "tvm_bsp.bspc-index", "version": 1, "tensors": {name: entry}, "total": {...}}``
    where an entry holds ``file`` (relative), ``shape``, ``grid``, ``dtype``, ``spec`` (the
    pruning spec's dictionary, or ``null`` for raw masks), ``kept`` (mask count), ``nnz``
    (stored values), ``compression`` (dense size over kept weights) and ``storage_ratio`` (dense
    bytes over BSPC bytes); ``total`` sums ``size`` and ``kept`` over tensors and gives the overall
    ``compression``.

Every file is written atomically and the index last, so an index always describes complete
files. :func:`load_bspc_dir` reads a directory back.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tvm_bsp.bspc.io import atomic_write, load_bspc, save_bspc
from tvm_bsp.bspc.matrix import BSPCMatrix
from tvm_bsp.prune.admm import BSPPruner
from tvm_bsp.prune.config import BSPSpec, spec_to_dict
from tvm_bsp.prune.masked import split_name

INDEX_NAME = "index.json"
INDEX_FORMAT = "tvm_bsp.bspc-index"
INDEX_VERSION = 1

Grid = tuple[int, int]


class NotBSPError(ValueError):
    """A weight cannot be stored as BSPC: its mask is not BSP-structured on its grid."""


def export_bspc(
    model: nn.Module,
    pruner_or_masks: BSPPruner | Mapping[str, Any],
    out_dir: str | os.PathLike,
    *,
    grid: Grid | Mapping[str, Grid] | None = None,
    strict: bool = True,
) -> dict[str, Path]:
    """Write every pruned weight of ``model`` as a BSPC ``.npz`` and an ``index.json``.

    Parameters
    ----------
    model : torch.nn.Module
        The pruned model (masked or squashed); weights are read as the model uses them.
    pruner_or_masks : BSPPruner or mapping
        A pruner after :meth:`~tvm_bsp.prune.admm.BSPPruner.hard_prune` (masks and grids come
        from its :class:`~tvm_bsp.prune.config.BSPSpec` specs), or ``{name: bool mask}``
        (numpy or torch) with ``grid``.
    out_dir : path-like
        Output directory (created if missing).
    grid : (int, int) or mapping, optional
        ``(row_blocks, col_blocks)`` for raw masks, one for all or ``{name: grid}``. Ignored
        with a pruner.
    strict : bool
        Refuse a weight with non-zeros outside its mask (they would be silently dropped).

    Returns
    -------
    dict
        ``{name: path of its .npz}``; the index is ``out_dir / "index.json"``.

    Raises
    ------
    NotBSPError
        If a weight was pruned with a non-BSP spec (ESE balanced, magnitude) or its mask is not
        BSP-structured on its grid (the message names the weight and the first bad block).
    ValueError
        If the pruner is still in the ADMM phase, a grid is missing, or (``strict``) a weight has
        non-zeros outside its mask.
    """
    masks, grids, specs = _masks_and_grids(pruner_or_masks, grid)
    matrices: dict[str, BSPCMatrix] = {}
    for name, mask in masks.items():
        module, attr = split_name(model, name)
        weight = _as_numpy(getattr(module, attr))
        if weight.shape != mask.shape:
            raise ValueError(f"{name}: mask shape {mask.shape} != weight shape {weight.shape}")
        if strict and np.any(weight[~mask] != 0):
            raise ValueError(
                f"{name}: the weight has {int(np.count_nonzero(weight[~mask]))} non-zeros outside "
                "its mask; export would drop them (hard-prune first, or strict=False)"
            )
        rb, cb = grids[name]
        try:
            matrices[name] = BSPCMatrix.from_dense(weight, mask, rb, cb)
        except ValueError as err:
            raise NotBSPError(
                f"{name} cannot be stored as BSPC on a {rb}x{cb} grid: {err}"
            ) from None

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    tensors: dict[str, Any] = {}
    used: set[str] = set()
    for name, matrix in matrices.items():
        fname = _file_name(name, used)
        paths[name] = save_bspc(matrix, out / fname)
        kept = int(masks[name].sum())
        size = matrix.shape[0] * matrix.shape[1]
        tensors[name] = {
            "file": fname,
            "shape": list(matrix.shape),
            "grid": [matrix.row_blocks, matrix.col_blocks],
            "dtype": str(matrix.values.dtype),
            "spec": spec_to_dict(specs[name]) if specs.get(name) is not None else None,
            "size": size,
            "kept": kept,
            "nnz": matrix.nnz,
            "compression": _ratio(size, kept),
            "storage_ratio": matrix.storage_ratio,
        }
    size = sum(t["size"] for t in tensors.values())
    kept = sum(t["kept"] for t in tensors.values())
    index = {
        "format": INDEX_FORMAT,
        "version": INDEX_VERSION,
        "tensors": tensors,
        "total": {"size": size, "kept": kept, "compression": _ratio(size, kept)},
    }
    text = json.dumps(index, indent=1).encode()
    atomic_write(out / INDEX_NAME, lambda f: f.write(text))
    return paths


def load_bspc_dir(out_dir: str | os.PathLike) -> tuple[dict[str, BSPCMatrix], dict[str, Any]]:
    """Read a directory written by :func:`export_bspc`.

    Returns
    -------
    (dict, dict)
        ``{name: BSPCMatrix}`` (each file validated by :func:`tvm_bsp.bspc.load_bspc`) and the
        parsed index.

    Raises
    ------
    FileNotFoundError
        If the index or a file it names is missing.
    ValueError
        If the index is malformed (:func:`read_index`) or an entry's shape is not its file's.
    tvm_bsp.bspc.BSPCFormatError
        If a file is not a valid BSPC file (:func:`tvm_bsp.bspc.load_bspc`).
    """
    root = Path(out_dir)
    index = read_index(root)
    matrices = {}
    for name, entry in index["tensors"].items():
        try:
            matrices[name] = load_bspc(root / entry["file"])
        except FileNotFoundError as err:
            raise FileNotFoundError(f"{root / INDEX_NAME}: entry {name!r}: {err}") from None
        shape = entry.get("shape")
        if shape is not None and list(shape) != list(matrices[name].shape):
            raise ValueError(
                f"{root / INDEX_NAME}: entry {name!r} says shape {shape}, its file holds "
                f"{matrices[name].shape}"
            )
    return matrices, index


def read_index(out_dir: str | os.PathLike) -> dict[str, Any]:
    """Read and check the ``index.json`` of an export directory (no ``.npz`` is opened).

    Returns
    -------
    dict
        The index; ``index["tensors"]`` maps each name to an entry whose ``file`` is a plain
        file name inside the directory.

    Raises
    ------
    FileNotFoundError
        If there is no index.
    ValueError
        If the index is not valid JSON, not an export index of this version, or an entry lacks
        its ``file``, names a file outside the directory or has a bad ``shape`` (each message
        names the entry).
    """
    where = Path(out_dir) / INDEX_NAME
    if not where.is_file():
        raise FileNotFoundError(f"no BSPC export index {where}")
    try:
        index = json.loads(where.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{where} is not valid JSON: {err}") from None
    if not isinstance(index, dict) or index.get("format") != INDEX_FORMAT:
        raise ValueError(f"{where} is not a {INDEX_FORMAT} file")
    if index.get("version") != INDEX_VERSION:
        raise ValueError(
            f"{where}: version {index.get('version')!r} unsupported (this reader knows "
            f"{INDEX_VERSION})"
        )
    if "tensors" not in index:
        raise ValueError(f"{where} has no 'tensors'")
    tensors = index["tensors"]
    if not isinstance(tensors, dict):
        raise ValueError(f"{where}: tensors must be an object {{name: entry}}, got "
                         f"{type(tensors).__name__}")  # fmt: skip
    for name, entry in tensors.items():
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: entry {name!r} must be an object, got {entry!r}")
        if "file" not in entry:
            raise ValueError(f"{where}: entry {name!r} has no 'file'")
        fname = entry["file"]
        if not isinstance(fname, str) or Path(fname).name != fname or fname in ("", ".", ".."):
            raise ValueError(f"{where}: entry {name!r} names a file outside the directory: "
                             f"{fname!r}")  # fmt: skip
        shape = entry.get("shape")
        if shape is not None and not (
            isinstance(shape, list)
            and len(shape) == 2
            and all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape)
        ):
            raise ValueError(f"{where}: entry {name!r} has a bad shape {shape!r}")
    return index


def _masks_and_grids(
    source: BSPPruner | Mapping[str, Any], grid: Grid | Mapping[str, Grid] | None
) -> tuple[dict[str, np.ndarray], dict[str, Grid], dict[str, Any]]:
    if isinstance(source, BSPPruner):
        if source.phase in (None, "admm"):
            raise ValueError(
                f"the pruner is in the {source.phase!r} phase: nothing is pruned yet "
                "(call hard_prune() before exporting)"
            )
        for name, spec in source.specs.items():
            if not isinstance(spec, BSPSpec):
                raise NotBSPError(
                    f"{name} was pruned with {type(spec).__name__}, which is not block-structured; "
                    "only BSPSpec weights can be stored as BSPC"
                )
        masks = {n: _as_mask(m) for n, m in source.masks().items()}
        return masks, {n: s.grid for n, s in source.specs.items()}, dict(source.specs)
    if not isinstance(source, Mapping) or not source:
        raise ValueError("pruner_or_masks must be a BSPPruner or a non-empty {name: mask} mapping")
    if grid is None:
        raise ValueError("raw masks need grid=(row_blocks, col_blocks) or {name: grid}")
    masks = {str(n): _as_mask(m) for n, m in source.items()}
    if isinstance(grid, Mapping):
        missing = [n for n in masks if n not in grid]
        if missing:
            raise ValueError(f"no grid for {missing}")
        grids = {n: (int(grid[n][0]), int(grid[n][1])) for n in masks}
    else:
        grids = dict.fromkeys(masks, (int(grid[0]), int(grid[1])))
    return masks, grids, {}


def _as_mask(mask: Any) -> np.ndarray:
    arr = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    if arr.dtype != np.bool_ or arr.ndim != 2:
        raise ValueError(f"a mask must be a 2-D boolean array, got {arr.dtype} {arr.shape}")
    return arr


def _as_numpy(weight: torch.Tensor) -> np.ndarray:
    w = weight.detach().cpu()
    if w.dtype not in (torch.float32, torch.float64):
        w = w.float()
    return w.numpy()


def _file_name(name: str, used: set[str]) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", name).strip(".") or "weight"
    fname, k = f"{stem}.npz", 1
    while fname in used or fname == INDEX_NAME:
        fname, k = f"{stem}-{k}.npz", k + 1
    used.add(fname)
    return fname


def _ratio(size: int, kept: int) -> float | None:
    # JSON has no infinity: an all-pruned tensor reports null.
    return size / kept if kept else None
