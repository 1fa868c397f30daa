"""int8 BSPC: a BSPC matrix's values as symmetric int8 with float32 scales.

Format
------
A :class:`QuantizedBSPC` keeps the BSPC index arrays unchanged (``block_row_ptr``, ``rows``,
``block_col_ptr``, ``cols``, ``reorder``; see :mod:`tvm_bsp.bspc.matrix`) and stores the values,
in the same block order, as ``int8`` in ``[-127, 127]`` (``-128`` is never used, so the
range is symmetric and a negation cannot overflow), with float32 scales at one of two
granularities:

``"row"``
    one scale per output row, ``scales.shape == (M,)``: a kernel accumulates the whole row in
    int32 over all its blocks and multiplies once at the end;
``"block_row"``
    one scale per kept row of a block, aligned with ``rows`` (``scales.shape == rows.shape``):
    a kernel converts each block row's int32 partial sum to float and adds those in float.

A stored value ``w`` with scale ``s`` becomes ``q = clip(rint(w / s), -127, 127)`` (round half
to even), with ``s = float32(max |w| / 127)`` over the values sharing the scale (``1.0`` when
they are all zero). So ``|w - s * q| <= s / 2`` for every value (in exact arithmetic; the
float32 dequantized value adds at most half an ulp of ``w``).

:func:`quantize_bspc` with ``granularity="auto"`` measures both and keeps ``"row"`` (one scale
per row, the cheaper kernel) unless ``"block_row"`` cuts the relative error
``||W - deq(q(W))||_F / ||W||_F`` by more than :data:`AUTO_MARGIN` (half) *and* its block rows
hold at least :data:`MIN_VALUES_PER_SCALE` values on average. A block-row scale costs 4 bytes
per kept block row and a float conversion per block row in the kernel: with one value per
block row (the reference GRU's 3072x39 input matrix at 19x and above) it stores the value
exactly and "wins" on error while taking 5 bytes per value, more than fp32. On the shipped Table
I matrices ``"row"`` gives relative errors of 0.3-0.8 %, ``"block_row"`` would lower them by
20-45 %, and block rows hold 1.6-4.8 values on average: ``"auto"`` picks ``"row"`` for all of
them (and ``scripts/int8_accuracy.py`` measures no PER gain from ``"block_row"``).

The products (activations quantized too, int32 accumulation) are in :mod:`tvm_bsp.bspc.quant_ops`,
saving and loading in :mod:`tvm_bsp.bspc.quant_io`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tvm_bsp.bspc.errors import BSPCFormatError
from tvm_bsp.bspc.grid import BlockGrid
from tvm_bsp.bspc.matrix import BSPCMatrix

QMAX = 127
"""Largest int8 magnitude used (symmetric range ``[-127, 127]``)."""
GRANULARITIES = ("row", "block_row")
AUTO_MARGIN = 0.5
"""``"auto"`` picks ``"block_row"`` only if its relative error is below ``(1 - AUTO_MARGIN)``
times the ``"row"`` one."""
MIN_VALUES_PER_SCALE = 8
"""``"auto"`` considers ``"block_row"`` only if its block rows average this many values (its
scales then cost at most half a byte per value)."""
_INDEX_FIELDS = ("block_row_ptr", "rows", "block_col_ptr", "cols", "reorder")


@dataclass(frozen=True, eq=False)
class QuantizedBSPC(BlockGrid):
    """A BSPC matrix with int8 values and float32 scales (see the module docstring).

    Build one with :func:`quantize_bspc`; the constructor validates every array.

    Attributes
    ----------
    shape : tuple of int
    row_blocks, col_blocks : int
    block_row_ptr, rows, block_col_ptr, cols, reorder : numpy.ndarray
        The BSPC index arrays, as in :class:`~tvm_bsp.bspc.matrix.BSPCMatrix`.
    values : numpy.ndarray of int8
        Quantized values in BSPC block order, each in ``[-127, 127]``.
    scales : numpy.ndarray of float32
        ``(M,)`` for ``"row"``, ``(len(rows),)`` for ``"block_row"``; finite and positive.
    granularity : str
        ``"row"`` or ``"block_row"``.
    """

    shape: tuple[int, int]
    row_blocks: int
    col_blocks: int
    block_row_ptr: np.ndarray
    rows: np.ndarray
    block_col_ptr: np.ndarray
    cols: np.ndarray
    values: np.ndarray
    scales: np.ndarray
    reorder: np.ndarray
    granularity: str
    value_ptr: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check every array; raise :class:`~tvm_bsp.bspc.errors.BSPCFormatError` if one is bad.

        Checked: the granularity; ``values`` a 1-D int8 array in ``[-127, 127]``; ``scales`` a
        1-D float32 array of the granularity's length, finite and positive; and every BSPC
        invariant of the index arrays and the number of values (by
        :meth:`BSPCMatrix.validate <tvm_bsp.bspc.matrix.BSPCMatrix.validate>`).
        """
        if self.granularity not in GRANULARITIES:
            raise BSPCFormatError(
                f"granularity must be one of {GRANULARITIES}, got {self.granularity!r}"
            )
        values = self.values
        if not isinstance(values, np.ndarray) or values.ndim != 1 or values.dtype != np.int8:
            raise BSPCFormatError(f"values must be a 1-D int8 array, got {_describe(values)}")
        if values.size and int(values.min()) < -QMAX:
            bad = int(np.flatnonzero(values < -QMAX)[0])
            raise BSPCFormatError(
                f"values[{bad}] = {int(values[bad])} is outside the symmetric range "
                f"[-{QMAX}, {QMAX}]"
            )
        for name in _INDEX_FIELDS:  # before they are used to count scales
            arr = getattr(self, name)
            if not isinstance(arr, np.ndarray) or arr.ndim != 1 or arr.dtype.kind not in "iu":
                raise BSPCFormatError(f"{name} must be a 1-D integer array")
        pattern = self.pattern()  # every index invariant and the value count
        scales = self.scales
        if not isinstance(scales, np.ndarray) or scales.ndim != 1 or scales.dtype != np.float32:
            raise BSPCFormatError(f"scales must be a 1-D float32 array, got {_describe(scales)}")
        need = self.shape[0] if self.granularity == "row" else self.rows.size
        what = "one per row" if self.granularity == "row" else "one per entry of rows"
        if scales.size != need:
            raise BSPCFormatError(
                f"scales has {scales.size} entries; granularity {self.granularity!r} needs "
                f"{need} ({what})"
            )
        bad = ~np.isfinite(scales) | (scales <= 0)
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise BSPCFormatError(f"scales[{k}] = {scales[k]} is not finite and positive")
        object.__setattr__(self, "value_ptr", pattern.value_ptr)

    # ------------------------------------------------------------------ properties
    @property
    def nbytes(self) -> int:
        """Bytes of the values (1 each), the scales and every index array."""
        arrays = [self.values, self.scales, *(getattr(self, n) for n in _INDEX_FIELDS)]
        return int(sum(a.nbytes for a in arrays))

    def row_work(self) -> np.ndarray:
        """Stored values per row (int8 multiply-adds a row costs), shape ``(M,)``."""
        return self.pattern().row_work()

    def value_entries(self) -> np.ndarray:
        """For every stored value, the index into ``rows`` of its block row (int64)."""
        nrows = np.diff(self.block_row_ptr.astype(np.int64))
        ncols = np.diff(self.block_col_ptr.astype(np.int64))
        per_entry = np.repeat(ncols, nrows)
        return np.repeat(np.arange(self.rows.size, dtype=np.int64), per_entry)

    def value_scales(self) -> np.ndarray:
        """The float32 scale of every stored value, in block order."""
        entries = self.value_entries()
        if self.granularity == "row":
            return self.scales[self.rows.astype(np.int64)[entries]]
        return self.scales[entries]

    def block(self, b: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return ``(kept_rows, kept_cols, int8 values[len(rows), len(cols)])`` of block ``b``."""
        r0, r1 = int(self.block_row_ptr[b]), int(self.block_row_ptr[b + 1])
        c0, c1 = int(self.block_col_ptr[b]), int(self.block_col_ptr[b + 1])
        rows = self.rows[r0:r1].astype(np.int64)
        cols = self.cols[c0:c1].astype(np.int64)
        vals = self.values[self.value_ptr[b] : self.value_ptr[b + 1]]
        return rows, cols, vals.reshape(rows.size, cols.size)

    # ------------------------------------------------------------------ conversions
    def pattern(self, values: np.ndarray | None = None) -> BSPCMatrix:
        """The float BSPC matrix with the same indices and ``values`` (default: zeros)."""
        if values is None:
            values = np.zeros(self.nnz, np.float32)
        return BSPCMatrix(
            self.shape,
            self.row_blocks,
            self.col_blocks,
            self.block_row_ptr,
            self.rows,
            self.block_col_ptr,
            self.cols,
            values,
            self.reorder,
        )

    def dequantize(self) -> BSPCMatrix:
        """The float32 BSPC matrix of the values ``scale * q`` (same indices and reorder)."""
        return self.pattern(self.values.astype(np.float32) * self.value_scales())

    def to_dense(self) -> np.ndarray:
        """The dense float32 ``(M, N)`` matrix of the dequantized values."""
        return self.dequantize().to_dense()

    def __repr__(self) -> str:
        return (
            f"QuantizedBSPC(shape={self.shape}, grid={self.row_blocks}x{self.col_blocks}, "
            f"nnz={self.nnz}, granularity={self.granularity!r}, nbytes={self.nbytes})"
        )


def quantize_values(values: np.ndarray, scales_per_value: np.ndarray) -> np.ndarray:
    """``clip(rint(values / scale), -127, 127)`` as int8, computed in float64."""
    ratio = np.asarray(values, np.float64) / np.asarray(scales_per_value, np.float64)
    return np.clip(np.rint(ratio), -QMAX, QMAX).astype(np.int8)


def _scales_from_amax(amax: np.ndarray) -> np.ndarray:
    scales = (np.asarray(amax, np.float64) / QMAX).astype(np.float32)
    scales[scales == 0] = 1.0  # all-zero groups, and amax so small that the scale underflows
    return scales


def _quantize_as(matrix: BSPCMatrix, granularity: str) -> QuantizedBSPC:
    M = matrix.shape[0]
    nrows = np.diff(matrix.block_row_ptr.astype(np.int64))
    ncols = np.diff(matrix.block_col_ptr.astype(np.int64))
    entries = np.repeat(np.arange(matrix.rows.size), np.repeat(ncols, nrows))
    magnitude = np.abs(matrix.values.astype(np.float64))
    if granularity == "row":
        group = matrix.rows.astype(np.int64)[entries]
        amax = np.zeros(M, np.float64)
    else:
        group = entries
        amax = np.zeros(matrix.rows.size, np.float64)
    np.maximum.at(amax, group, magnitude)
    scales = _scales_from_amax(amax)
    return QuantizedBSPC(
        shape=matrix.shape,
        row_blocks=matrix.row_blocks,
        col_blocks=matrix.col_blocks,
        block_row_ptr=matrix.block_row_ptr,
        rows=matrix.rows,
        block_col_ptr=matrix.block_col_ptr,
        cols=matrix.cols,
        values=quantize_values(matrix.values, scales[group]),
        scales=scales,
        reorder=matrix.reorder,
        granularity=granularity,
    )


def relative_error(matrix: BSPCMatrix, quantized: QuantizedBSPC) -> float:
    """``||W - deq(q(W))||_F / ||W||_F`` over the stored values (``0.0`` for a zero matrix)."""
    w = matrix.values.astype(np.float64)
    deq = quantized.values.astype(np.float64) * quantized.value_scales().astype(np.float64)
    norm = float(np.linalg.norm(w))
    return float(np.linalg.norm(w - deq)) / norm if norm else 0.0


def choose_granularity(matrix: BSPCMatrix) -> tuple[str, dict[str, float]]:
    """Measure both granularities on ``matrix`` and pick one (rule: module docstring).

    ``"block_row"`` is measured only where it is eligible (enough values per block row); the
    returned errors then hold both.

    Returns
    -------
    (str, dict)
        The granularity and ``{granularity: relative error}`` of both.
    """
    errors = {"row": relative_error(matrix, _quantize_as(matrix, "row"))}
    per_block_row = np.repeat(
        np.diff(matrix.block_col_ptr.astype(np.int64)),
        np.diff(matrix.block_row_ptr.astype(np.int64)),
    )
    block_rows = int(np.count_nonzero(per_block_row))  # those that store a value
    if matrix.nnz < MIN_VALUES_PER_SCALE * max(block_rows, 1):
        return "row", errors
    errors["block_row"] = relative_error(matrix, _quantize_as(matrix, "block_row"))
    finer = errors["block_row"] < (1.0 - AUTO_MARGIN) * errors["row"]
    return ("block_row" if finer else "row"), errors


def quantize_bspc(matrix: BSPCMatrix, granularity: str = "auto") -> QuantizedBSPC:
    """Quantize a BSPC matrix's values to int8 (symmetric, round to nearest, clamp to 127).

    Parameters
    ----------
    matrix : BSPCMatrix
        float32 or float64 values.
    granularity : {"auto", "row", "block_row"}
        Scale per output row, per kept row of each block, or the one :func:`choose_granularity`
        measures as better.

    Returns
    -------
    QuantizedBSPC
        Same indices and reorder as ``matrix``.

    Raises
    ------
    TypeError
        If ``matrix`` is not a :class:`BSPCMatrix`.
    ValueError
        If ``granularity`` is not one of the three.
    """
    if not isinstance(matrix, BSPCMatrix):
        raise TypeError(f"expected a BSPCMatrix, got {type(matrix).__name__}")
    if granularity == "auto":
        granularity, _ = choose_granularity(matrix)
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be 'auto', 'row' or 'block_row', got {granularity!r}")
    return _quantize_as(matrix, granularity)


def _describe(obj: object) -> str:
    if isinstance(obj, np.ndarray):
        return f"{obj.dtype} array of shape {obj.shape}"
    return type(obj).__name__
