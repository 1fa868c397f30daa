"""Stripe layout of an int8 BSPC matrix with ``"row"`` scales (kernel:
:mod:`tvm_bsp.kernels.cpu.int8_stripe`).

With one scale per output row the int32 sum of a row may run over all blocks of its block
row, so a panel spans the whole block row: panel = :data:`LANES` consecutive rows of a row
stripe (the last panel of a stripe may have fewer lanes) and the groups of every block of the
block row in which at least one of those rows is kept. Each row is in exactly one panel: the
kernel stores its accumulators once (one vector per frame) and applies the float epilogue
right there.

Per block row ``rb``:

``gcols[col_ptr[rb]:col_ptr[rb + 1]]``
    the kept columns of its blocks in column-block order, each block padded to a multiple of
    :data:`GROUP` by repeating its first kept column; the kernel gathers ``xq[n, gcols]`` into
    a stack buffer once per block row and frame.
``panel_ptr[rb]:panel_ptr[rb + 1]``
    its panels, in row order: panel ``p`` holds rows ``row0[p] .. row0[p] + nlanes[p] - 1``
    and the groups ``group_ptr[p]:group_ptr[p + 1]``.

Per group ``g``: ``goff[g]``, the offset of its 4 activations in the block row's gather
buffer, and 64 weight bytes at ``vals[64 g:]`` (byte ``4 v + k`` = lane ``v``, column
``k``; zero for a lane whose row is not kept in the group's block, and for padding).
``comp[16 p + v]`` is ``128 * sum`` of lane ``v``'s weights (``vpdpbusd`` multiplies unsigned
by signed bytes: the x86 kernel adds 128 to the activations and subtracts this). Threads take
contiguous block-row ranges ``thread_brows[t]:thread_brows[t + 1]`` balanced by groups.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tvm_bsp.bspc.quant import QuantizedBSPC
from tvm_bsp.bspc.quant_ops import check_accumulator_bound

#: Output rows (int32 lanes) per panel.
LANES = 16
#: Columns per int8 dot-product group (one 32-bit word of activations).
GROUP = 4
#: Activation offset of the unsigned-by-signed x86 dot product.
X86_OFFSET = 128


@dataclass(frozen=True)
class StripeLayout:
    """The packed arrays of an int8 BSPC matrix with ``"row"`` scales (module docstring).

    Attributes
    ----------
    shape : tuple of int
    max_cols : int
        Widest gather buffer of a block row.
    threads : int
    arrays : dict of str to numpy.ndarray
        ``thread_brows``, ``col_ptr``, ``gcols``, ``panel_ptr``, ``row0``, ``nlanes``,
        ``group_ptr``, ``goff``, ``comp`` (int32), ``vals`` (int8), ``scales`` (float32).
    """

    shape: tuple[int, int]
    max_cols: int
    threads: int
    arrays: dict[str, np.ndarray]


def pack_int8_stripes(matrix: QuantizedBSPC, threads: int = 1) -> StripeLayout:
    """Pack a ``"row"``-scaled int8 BSPC matrix into the stripe layout.

    Raises
    ------
    TypeError
        If ``matrix`` is not a :class:`~tvm_bsp.bspc.quant.QuantizedBSPC`.
    ValueError
        If its scales are not per row, or ``threads`` is not a positive integer.
    OverflowError
        If int32 accumulators could overflow.
    """
    if not isinstance(matrix, QuantizedBSPC):
        raise TypeError(f"expected a QuantizedBSPC, got {type(matrix).__name__}")
    if matrix.granularity != "row":
        raise ValueError(f"the stripe layout needs 'row' scales, got {matrix.granularity!r}")
    if isinstance(threads, bool) or not isinstance(threads, int | np.integer) or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    check_accumulator_bound(matrix)
    bounds = matrix.pattern().row_bounds.astype(np.int64)
    col_ptr, gcols, panel_ptr, row0, nlanes = [0], [], [0], [], []
    group_ptr, goff, vals, comp = [0], [], [], []
    work = np.zeros(matrix.row_blocks, np.int64)
    for rb in range(matrix.row_blocks):
        blocks = []  # (offset in the gather buffer, kept rows, padded int8 values)
        for cb in range(matrix.col_blocks):
            rows, cols, q = matrix.block(rb * matrix.col_blocks + cb)
            if not (rows.size and cols.size):
                continue
            width = -(-cols.size // GROUP) * GROUP
            padded = np.zeros((rows.size, width), np.int8)
            padded[:, : cols.size] = q
            blocks.append((len(gcols) - col_ptr[-1], rows, padded))
            gcols.extend(cols.tolist() + [int(cols[0])] * (width - cols.size))
        col_ptr.append(len(gcols))
        for r0 in range(int(bounds[rb]), int(bounds[rb + 1]), LANES):
            lanes = min(LANES, int(bounds[rb + 1]) - r0)
            lane_sum = np.zeros(LANES, np.int64)
            for offset, rows, padded in blocks:
                inside = (rows >= r0) & (rows < r0 + lanes)
                if not inside.any():
                    continue
                w = np.zeros((LANES, padded.shape[1]), np.int8)
                w[rows[inside] - r0] = padded[inside]
                lane_sum += w.astype(np.int64).sum(axis=1)
                groups = padded.shape[1] // GROUP
                vals.append(w.reshape(LANES, groups, GROUP).transpose(1, 0, 2).ravel())
                goff.extend(offset + GROUP * np.arange(groups))
            row0.append(r0)
            nlanes.append(lanes)
            group_ptr.append(len(goff))
            comp.append(X86_OFFSET * lane_sum)
            work[rb] += group_ptr[-1] - group_ptr[-2] + 1
        panel_ptr.append(len(row0))
    widths = np.diff(np.asarray(col_ptr))
    arrays = {
        "thread_brows": _balanced_cuts(work, threads),
        "col_ptr": np.asarray(col_ptr),
        "gcols": np.asarray(gcols),
        "panel_ptr": np.asarray(panel_ptr),
        "row0": np.asarray(row0),
        "nlanes": np.asarray(nlanes),
        "group_ptr": np.asarray(group_ptr),
        "goff": np.asarray(goff),
        "comp": np.concatenate(comp) if comp else np.zeros(0),
    }
    arrays = {k: _nonempty(v, np.int32) for k, v in arrays.items()}
    arrays["vals"] = _nonempty(np.concatenate(vals) if vals else np.zeros(0), np.int8)
    arrays["scales"] = _nonempty(matrix.scales, np.float32)
    return StripeLayout(
        shape=matrix.shape,
        max_cols=max(int(widths.max(initial=0)), GROUP),
        threads=threads,
        arrays=arrays,
    )


def _balanced_cuts(work: np.ndarray, parts: int) -> np.ndarray:
    """``parts + 1`` block-row boundaries splitting ``work`` into contiguous, balanced ranges."""
    total = np.concatenate([[0], np.cumsum(work)])
    goals = total[-1] * np.arange(parts + 1) / parts
    cuts = np.searchsorted(total, goals, side="left").clip(0, work.size)
    cuts[0], cuts[-1] = 0, work.size
    return np.maximum.accumulate(cuts)


def _nonempty(a: np.ndarray, dtype) -> np.ndarray:
    a = np.ascontiguousarray(np.asarray(a).astype(dtype))
    return a if a.size else np.zeros(1, dtype)
