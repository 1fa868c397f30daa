"""Where a model's BSPC weights come from, resolved to ``{parameter name: BSPCMatrix}``.

``bspc`` argument of :func:`tvm_bsp.compile_model`:

``None``
    Weights under a pruning-mask parametrization (the masks the importer found) become BSPC;
    the others stay dense.
``"auto"``
    As ``None``, plus every weight that is at least half zeros (a pruned, squashed model):
    its non-zero pattern is the mask.
a directory
    BSPC files as :func:`tvm_bsp.prune.export.export_bspc` writes them (``index.json`` plus
    ``<name>.npz``), or plain ``<name>.npz`` files of :func:`tvm_bsp.bspc.save_bspc`.
a mapping
    ``{parameter name: BSPCMatrix or boolean mask}``.

Masks need a block grid: ``grid`` (one ``(row_blocks, col_blocks)`` or one per name) or, by
default, :func:`infer_grid`. A matrix given as BSPC keeps its structure; a mask takes the
model's values. Weights whose batch-norm was folded by the importer are row-scaled to match.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tvm_bsp.bspc.grid import stripe_bounds
from tvm_bsp.bspc.io import load_bspc
from tvm_bsp.bspc.matrix import BSPCMatrix
from tvm_bsp.frontend.model import RNNModel
from tvm_bsp.kernels.rnn_pack import bspc_scale_rows

Grid = tuple[int, int]
BSPCSource = None | str | os.PathLike | Mapping[str, Any]

_MAX_STRIPES = 64


def _candidates(length: int) -> list[int]:
    small = range(1, min(length, _MAX_STRIPES) + 1)
    divisors = [d for d in range(_MAX_STRIPES + 1, min(length, 512) + 1) if length % d == 0]
    return [*small, *divisors]


def infer_grid(mask: np.ndarray) -> Grid:
    """The block grid that stores a mask with the fewest values, then the fewest blocks.

    For a mask BSP pruning made on a grid, the stored count of that grid equals the kept
    count (nothing extra is stored), so the pruning grid, or a coarser one that is also
    exact, is found. Grids up to 64 stripes per dimension (and divisors up to 512) are tried.
    """
    mask = np.asarray(mask, bool)
    M, N = mask.shape
    col_cands, row_cands = _candidates(N), _candidates(M)
    rows_in = {
        cb: np.logical_or.reduceat(mask, stripe_bounds(N, cb)[:-1], axis=1).astype(np.int64)
        for cb in col_cands
    }
    best: tuple[int, int, Grid] | None = None
    for rb in row_cands:
        rstarts = stripe_bounds(M, rb)[:-1]
        cols_in = np.logical_or.reduceat(mask, rstarts, axis=0).astype(np.int64)
        for cb in col_cands:
            ncols = np.add.reduceat(cols_in, stripe_bounds(N, cb)[:-1], axis=1)
            nrows = np.add.reduceat(rows_in[cb], rstarts, axis=0)
            key = (int((ncols * nrows).sum()), rb * cb, (rb, cb))
            if best is None or key[:2] < best[:2]:
                best = key
    assert best is not None
    return best[2]


def _from_mask(weight: np.ndarray, mask: np.ndarray, grid: Grid | None) -> BSPCMatrix:
    mask = np.asarray(mask.detach().cpu().numpy() if hasattr(mask, "detach") else mask, bool)
    if mask.shape != weight.shape:
        raise ValueError(f"mask shape {mask.shape} differs from the weight's {weight.shape}")
    rb, cb = grid if grid is not None else infer_grid(mask)
    try:
        return BSPCMatrix.from_dense(weight, mask, rb, cb)
    except ValueError:  # not BSP on this grid: store the envelope of the kept weights
        return BSPCMatrix.from_dense(np.where(mask, weight, 0), None, rb, cb)


def _load_dir(path: Path) -> dict[str, BSPCMatrix]:
    if (path / "index.json").is_file():
        from tvm_bsp.prune.export import load_bspc_dir

        return dict(load_bspc_dir(path)[0])
    files = sorted(path.glob("*.npz"))
    if not files:
        raise FileNotFoundError(f"{path} holds no BSPC files (no index.json, no .npz)")
    return {f.stem: load_bspc(f) for f in files}


def _grid_for(grid: Grid | Mapping[str, Grid] | None, name: str) -> Grid | None:
    if grid is None or (isinstance(grid, tuple) and len(grid) == 2 and isinstance(grid[0], int)):
        return grid  # type: ignore[return-value]
    return dict(grid).get(name)  # type: ignore[arg-type]


def _row_scales(model: RNNModel) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for k, layer in enumerate(model.layers):
        for role, scale in layer.row_scale.items():
            out[layer.name(role, k)] = scale
    return out


def resolve_bspc(
    model: RNNModel, source: BSPCSource = None, grid: Grid | Mapping[str, Grid] | None = None
) -> dict[str, BSPCMatrix]:
    """Resolve a BSPC source against a model (see the module docstring).

    Returns
    -------
    dict
        ``{parameter name: BSPCMatrix}`` with values as the compiled model uses them.

    Raises
    ------
    ValueError
        If a name is not a weight of the model or a shape differs.
    """
    weights = model.weights()
    given: dict[str, Any]
    if source is None or source == "auto":
        given = dict(model.masks())
        if source == "auto":
            for name, w in weights.items():
                if name not in given and w.size and np.count_nonzero(w) <= w.size // 2:
                    given[name] = w != 0
    elif isinstance(source, str | os.PathLike):
        given = dict(_load_dir(Path(source)))
    elif isinstance(source, Mapping):
        given = dict(source)
    else:
        raise TypeError(f"bspc must be None, 'auto', a directory or a mapping, got {source!r}")
    unknown = sorted(set(given) - set(weights))
    if unknown:
        raise ValueError(
            f"BSPC names {unknown} are not weights of the model; weights: {sorted(weights)}"
        )
    scales = _row_scales(model)
    out: dict[str, BSPCMatrix] = {}
    for name, item in given.items():
        if isinstance(item, BSPCMatrix):
            if item.shape != weights[name].shape:
                raise ValueError(
                    f"BSPC matrix {name} is {item.shape}, the weight is {weights[name].shape}"
                )
            matrix = item if item.values.dtype == np.float32 else _as_float32(item)
            out[name] = bspc_scale_rows(matrix, scales[name]) if name in scales else matrix
        else:
            out[name] = _from_mask(weights[name], item, _grid_for(grid, name))
    return out


def _as_float32(m: BSPCMatrix) -> BSPCMatrix:
    return BSPCMatrix(
        m.shape,
        m.row_blocks,
        m.col_blocks,
        m.block_row_ptr,
        m.rows,
        m.block_col_ptr,
        m.cols,
        m.values.astype(np.float32),
        m.reorder,
    )
