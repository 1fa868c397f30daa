"""The kernel-side packed layout of a BSPC matrix: row *panels*.

The BSPC format (:mod:`tvm_bsp.bspc.matrix`) stores every block's kept rows x kept columns.
Kernels consume a packed form of it, built once at compile time (weights are constants):

Panels
    Every row stripe's rows are put in an order (``row_order="reorder"``: the order of the
    matrix's ``reorder`` restricted to the stripe, i.e. rows of equal work side by side, heavy
    rows first; ``"natural"``: ascending row numbers) and cut into *panels* of ``P``
    consecutive rows of that order, ``P`` = ``panel_rows``; or (``"grouped"``,
    :mod:`tvm_bsp.kernels.panel_groups`) packed into panels of rows kept by the same blocks,
    each panel's rows ascending. A panel may have fewer than ``P`` real rows (the last of a
    stripe; any panel of ``"grouped"``); its other *lanes* are dummies that repeat lane 0
    (same row, same values, same bias), so they compute lane 0's result again and a kernel may
    store every lane without a guard (the duplicate store writes the same value). A panel
    never spans two stripes.
Columns of a panel
    For each block of the stripe, in column-block order, that keeps at least one row of the
    panel, the block's kept columns are appended to the panel's column list (so a column is
    listed once per block, not once per row: the block's ``x[cols]`` is loaded once per panel
    and broadcast to all ``P`` lanes, BSPC's redundant-load elimination). The list is padded
    with zero-valued entries to a multiple of ``k_split`` (a kernel with ``K`` independent
    accumulators unrolled ``U`` times packs with ``k_split = K * U`` and needs no remainder
    loop).
Values
    ``vals[e * P + i]`` is the weight of lane ``i``'s row at column ``cols[e]``, zero if the
    row is not kept in that block (column-major inside a panel: one contiguous ``P``-vector per
    column, so ``acc[0:P] += vals[e*P : e*P+P] * x[cols[e]]`` is one broadcast and one vector
    FMA per column).
Threads
    Row stripes go to threads by :func:`tvm_bsp.bspc.balance.thread_partition` (the
    longest-processing-time assignment that follows the reorder); the panels of thread ``t``'s
    stripes are stored contiguously, panels ``thread_ptr[t]:thread_ptr[t + 1]``. A thread owns
    whole stripes, so no two threads write the same output row.

Arrays (all ``int32`` or ``float32``, 1-D)

==============  ========================  ==================================================
name            length                    meaning
==============  ========================  ==================================================
``thread_ptr``  ``threads + 1``           panel range of each thread
``panel_ptr``   ``panels + 1``            column range of each panel in ``cols``
``panel_rows``  ``panels * P``            original row of each lane (dummies repeat lane 0)
``row_slot``    ``M``                     inverse: ``panel * P + lane`` of each row's real lane
``cols``        ``ncols``                 column numbers (padding entries point at column 0)
``vals``        ``ncols * P``             values, column-major inside a panel
``bias``        ``panels * P``            epilogue bias per lane (the lane's row's bias)
==============  ========================  ==================================================

``ncols`` is at least ``k_split`` so that no array is empty (an all-empty matrix gets one
padding group). Output rows with no stored value get ``act(bias)``.

Kernels using the layout: vectorized over the ``P`` lanes on the CPU (the mat-mat kernel
:mod:`tvm_bsp.kernels.cpu.linear`, the recurrent products of :mod:`tvm_bsp.kernels.cpu.products`),
one OpenCL thread per lane (:mod:`tvm_bsp.kernels.opencl.products`). Zero padding
(``padded_values / nnz``) grows with the row rate when ``P`` exceeds the kept rows of a block
and when a panel's rows are kept by different blocks (what ``"grouped"`` avoids);
:func:`panel_column_count` measures it without packing (:mod:`tvm_bsp.kernels.padding`
tabulates it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tvm_bsp.bspc.balance import thread_partition
from tvm_bsp.bspc.matrix import BSPCMatrix
from tvm_bsp.kernels.panel_groups import grouped_panels

ROW_ORDERS = ("reorder", "natural", "grouped")

#: Packed arrays that are kernel inputs, in the order kernels take them (see the module doc).
ARRAY_NAMES = ("thread_ptr", "panel_ptr", "panel_rows", "row_slot", "cols", "vals", "bias")


@dataclass(frozen=True, eq=False)
class PanelLayout:
    """A BSPC matrix packed into row panels (see the module docstring).

    Attributes
    ----------
    shape : tuple of int
        ``(M, N)`` of the matrix.
    panel_rows : int
        Lanes per panel, ``P``.
    k_split : int
        Every panel's column count is a multiple of this (accumulators x unroll).
    threads : int
        Number of thread groups the panels are split into.
    row_order : str
        One of :data:`ROW_ORDERS`.
    arrays : dict of str to numpy.ndarray
        The packed arrays named in :data:`ARRAY_NAMES`.
    """

    shape: tuple[int, int]
    panel_rows: int
    k_split: int
    threads: int
    row_order: str
    arrays: dict[str, np.ndarray]

    @property
    def npanels(self) -> int:
        """Number of panels."""
        return int(self.arrays["panel_ptr"].size - 1)

    @property
    def ncols(self) -> int:
        """Length of ``cols`` (stored columns over all panels, padding included)."""
        return int(self.arrays["cols"].size)

    @property
    def max_panel_cols(self) -> int:
        """Largest column count of one panel."""
        return int(np.diff(self.arrays["panel_ptr"]).max(initial=0))

    @property
    def padded_values(self) -> int:
        """Number of multiply-adds a kernel does per frame (stored values, padding included)."""
        return int(self.arrays["panel_ptr"][-1]) * self.panel_rows

    @property
    def full_panels(self) -> bool:
        """True when every panel has ``P`` distinct rows (no dummy lane anywhere)."""
        return bool(self.real_lanes().all())

    def real_lanes(self) -> np.ndarray:
        """Boolean mask over lanes: True for each row's real lane, False for dummies."""
        real = np.zeros(self.arrays["panel_rows"].size, bool)
        real[self.arrays["row_slot"]] = True
        return real


@dataclass(frozen=True)
class PanelShape:
    """The compile-time facts of a panel layout a kernel depends on.

    Array lengths are not among them: kernels take the arrays with symbolic sizes, so one
    PrimFunc serves every matrix of the same shape and knobs (and generated kernels are
    cached).
    """

    rows: int
    lanes: int
    k_split: int
    threads: int

    @classmethod
    def of(cls, layout: PanelLayout) -> PanelShape:
        """The facts of ``layout``."""
        return cls(layout.shape[0], layout.panel_rows, layout.k_split, layout.threads)


def pack_panels(
    matrix: BSPCMatrix,
    panel_rows: int = 16,
    k_split: int = 1,
    threads: int = 1,
    row_order: str = "reorder",
    bias: np.ndarray | None = None,
) -> PanelLayout:
    """Pack a BSPC matrix into the panel layout.

    Parameters
    ----------
    matrix : BSPCMatrix
        The sparse weight, ``(M, N)``.
    panel_rows : int
        Lanes per panel ``P`` (>= 1).
    k_split : int
        Pad every panel's column list to a multiple of this (>= 1): a kernel's accumulator
        count times its unroll factor.
    threads : int
        Split the stripes into this many balanced groups (>= 1).
    row_order : {"reorder", "natural", "grouped"}
        How a stripe's rows are put into panels (see the module docstring).
    bias : numpy.ndarray, optional
        ``(M,)`` bias added before the epilogue's activation; stored per lane.

    Returns
    -------
    PanelLayout

    Raises
    ------
    ValueError
        On a bad knob value or a bias of the wrong shape.
    """
    _check_positive(panel_rows=panel_rows, k_split=k_split, threads=threads)
    _check_order(row_order)
    M, _ = matrix.shape
    bias_rows = check_bias(bias, M)
    P = panel_rows
    reorder = matrix.reorder.astype(np.int64)

    thread_ptr = [0]
    panel_ptr = [0]
    lane_rows: list[np.ndarray] = []
    col_parts: list[np.ndarray] = []
    val_parts: list[np.ndarray] = []
    for stripes in thread_partition(matrix, threads):
        for s in stripes:
            chunks = stripe_panels(matrix, int(s), P, row_order, reorder)
            panels = _pack_stripe(matrix, int(s), chunks, P, k_split)
            for chunk, (pcols, pvals) in zip(chunks, panels, strict=True):
                col_parts.append(pcols)
                val_parts.append(pvals)
                panel_ptr.append(panel_ptr[-1] + pcols.size)
                lanes = np.full(P, chunk[0], np.int64)  # dummies repeat lane 0
                lanes[: chunk.size] = chunk
                lane_rows.append(lanes)
        thread_ptr.append(len(panel_ptr) - 1)

    cols = np.concatenate(col_parts) if col_parts else np.zeros(0, np.int64)
    vals = np.concatenate(val_parts) if val_parts else np.zeros((0, P), np.float32)
    if cols.size == 0:  # keep every array non-empty: one padding group
        cols = np.zeros(k_split, np.int64)
        vals = np.zeros((k_split, P), np.float32)
    panel_rows_arr = np.concatenate(lane_rows)
    row_slot = np.empty(M, np.int64)
    row_slot[panel_rows_arr[::-1]] = np.arange(panel_rows_arr.size)[::-1]  # first lane wins
    lane_bias = bias_rows[panel_rows_arr]
    arrays = {
        "thread_ptr": np.asarray(thread_ptr, np.int32),
        "panel_ptr": np.asarray(panel_ptr, np.int32),
        "panel_rows": panel_rows_arr.astype(np.int32),
        "row_slot": row_slot.astype(np.int32),
        "cols": cols.astype(np.int32),
        "vals": np.ascontiguousarray(vals, np.float32).ravel(),
        "bias": lane_bias,
    }
    return PanelLayout(matrix.shape, P, k_split, threads, row_order, arrays)


def panel_column_count(matrix: BSPCMatrix, panel_rows: int, row_order: str = "reorder") -> int:
    """Columns the panel layout would store for ``P = panel_rows`` (before ``k_split`` padding).

    ``panel_column_count(...) * panel_rows`` is the number of multiply-adds per frame; it costs
    a fraction of :func:`pack_panels` (no values are copied), so cost models can compare
    panel heights and row orders.
    """
    return panel_counts(matrix, panel_rows, row_order)[0]


def panel_counts(
    matrix: BSPCMatrix, panel_rows: int, row_order: str = "reorder"
) -> tuple[int, int]:
    """``(panel_column_count(...), number of panels)`` of the layout for ``P = panel_rows``."""
    _check_positive(panel_rows=panel_rows)
    _check_order(row_order)
    M, _ = matrix.shape
    reorder = matrix.reorder.astype(np.int64)
    panel_of_row = np.empty(M, np.int64)
    count = 0
    for s in range(matrix.row_blocks):
        for chunk in stripe_panels(matrix, s, panel_rows, row_order, reorder):
            panel_of_row[chunk] = count
            count += 1
    nrows = np.diff(matrix.block_row_ptr.astype(np.int64))
    ncols = np.diff(matrix.block_col_ptr.astype(np.int64))
    owner = np.repeat(np.arange(matrix.nblocks), nrows)
    keep = ncols[owner] > 0
    pairs = np.unique(
        np.stack([owner[keep], panel_of_row[matrix.rows.astype(np.int64)[keep]]]), axis=1
    )
    return (int(ncols[pairs[0]].sum()) if pairs.size else 0), count


def stripe_panels(
    matrix: BSPCMatrix,
    stripe: int,
    panel_rows: int,
    row_order: str = "reorder",
    reorder: np.ndarray | None = None,
) -> list[np.ndarray]:
    """The rows of each panel of one row stripe, in lane order (1 to ``P`` rows per panel).

    ``"reorder"`` and ``"natural"`` cut the stripe's rows in that order into ``P``-row
    panels (the last one may be short); ``"grouped"`` is
    :func:`tvm_bsp.kernels.panel_groups.grouped_panels`. ``reorder`` may pass
    ``matrix.reorder`` as int64 to save the conversion per stripe.
    """
    _check_order(row_order)
    if row_order == "grouped":
        return grouped_panels(matrix, stripe, panel_rows)
    r0, r1 = int(matrix.row_bounds[stripe]), int(matrix.row_bounds[stripe + 1])
    if row_order == "reorder":
        reorder = matrix.reorder.astype(np.int64) if reorder is None else reorder
        order = reorder[(reorder >= r0) & (reorder < r1)]
    else:
        order = np.arange(r0, r1, dtype=np.int64)
    return [order[i : i + panel_rows] for i in range(0, order.size, panel_rows)]


def _check_order(row_order: str) -> None:
    if row_order not in ROW_ORDERS:
        raise ValueError(f"row_order must be one of {ROW_ORDERS}, got {row_order!r}")


def _pack_stripe(
    matrix: BSPCMatrix, stripe: int, chunks: list[np.ndarray], P: int, k_split: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Return ``(cols, vals[ncols, P])`` of each panel (rows ``chunks[p]``) of one stripe."""
    r0 = int(matrix.row_bounds[stripe])
    r1 = int(matrix.row_bounds[stripe + 1])
    lane = np.empty(r1 - r0, np.int64)  # panel * P + lane of each row of the stripe
    for p, chunk in enumerate(chunks):
        lane[chunk - r0] = p * P + np.arange(chunk.size)
    npanels = len(chunks)
    cols: list[list[np.ndarray]] = [[] for _ in range(npanels)]
    vals: list[list[np.ndarray]] = [[] for _ in range(npanels)]
    first = stripe * matrix.col_blocks
    for b in range(first, first + matrix.col_blocks):
        rows, bcols, bvals = matrix.block(b)
        if rows.size == 0 or bcols.size == 0:
            continue
        lanes = lane[rows - r0]
        for p in np.unique(lanes // P):
            sel = lanes // P == p
            panel = np.zeros((bcols.size, P), np.float32)
            panel[:, lanes[sel] - p * P] = bvals[sel].T
            cols[p].append(bcols)
            vals[p].append(panel)
    out = []
    for p in range(npanels):
        c = np.concatenate(cols[p]) if cols[p] else np.zeros(0, np.int64)
        v = np.concatenate(vals[p]) if vals[p] else np.zeros((0, P), np.float32)
        v[:, chunks[p].size :] = v[:, :1]  # dummy lanes repeat lane 0
        pad = -c.size % k_split
        if pad:
            c = np.concatenate([c, np.zeros(pad, np.int64)])
            v = np.concatenate([v, np.zeros((pad, P), np.float32)])
        out.append((c, v))
    return out


def check_bias(bias: np.ndarray | None, M: int) -> np.ndarray:
    """A validated float32 ``(M,)`` bias (zeros for ``None``); raise on a bad shape or NaN."""
    if bias is None:
        return np.zeros(M, np.float32)
    bias = np.asarray(bias, np.float32)
    if bias.shape != (M,):
        raise ValueError(f"bias must have shape ({M},), got {bias.shape}")
    if not np.isfinite(bias).all():
        raise ValueError("bias has NaN or infinite entries")
    return bias


def _check_positive(**knobs: int) -> None:
    for name, value in knobs.items():
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def panel_layout_matvec(layout: PanelLayout, x: np.ndarray) -> np.ndarray:
    """Numpy reference of ``W @ x`` computed from the packed arrays (no epilogue, no bias).

    Parameters
    ----------
    layout : PanelLayout
    x : numpy.ndarray
        ``(batch, N)``.

    Returns
    -------
    numpy.ndarray
        ``(batch, M)``.
    """
    a = layout.arrays
    P = layout.panel_rows
    vals = a["vals"].reshape(-1, P)
    gathered = x[:, a["cols"]]  # (batch, ncols)
    out = np.zeros((x.shape[0], layout.npanels * P), np.float64)
    ptr = a["panel_ptr"]
    for p in range(layout.npanels):
        lo, hi = ptr[p], ptr[p + 1]
        out[:, p * P : (p + 1) * P] = gathered[:, lo:hi] @ vals[lo:hi]
    return out[:, a["row_slot"]].astype(np.float32)
