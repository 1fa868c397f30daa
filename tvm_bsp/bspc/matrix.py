"""The BSPC matrix: block-based structured pruning, compact format.

Layout
------
A weight ``W`` of shape ``(M, N)`` is cut into ``row_blocks x col_blocks`` blocks by
:func:`tvm_bsp.bspc.grid.stripe_bounds` (the last stripe takes the remainder). Blocks are
numbered row-major, ``b = rb * col_blocks + cb``. Inside a block the kept weights form a dense
sub-matrix ``kept rows x kept columns``; BSPC stores, for every block ``b``:

``rows[block_row_ptr[b]:block_row_ptr[b + 1]]``
    the kept rows (global row numbers, strictly increasing, inside the block's row stripe);
``cols[block_col_ptr[b]:block_col_ptr[b + 1]]``
    the kept columns (global column numbers, strictly increasing, inside the block's column
    stripe), shared by all kept rows of the block;
``values[value_ptr[b]:value_ptr[b + 1]]``
    the dense ``len(rows_b) x len(cols_b)`` values, row-major. ``value_ptr`` is not stored: it
    is the running sum of ``len(rows_b) * len(cols_b)``.

plus ``reorder``, a permutation of the ``M`` rows used to balance work across threads (see
:mod:`tvm_bsp.bspc.balance`). A kernel loads a block's ``x[cols_b]`` once and reuses it for all
the block's rows (redundant-load elimination), and writes results to the original rows.

Index arrays use the smallest signed integer type that holds their largest value (int16 for
the reference GRU's 3072 x 1024 matrices), because index bytes are part of the memory traffic
the format exists to cut. ``nnz`` counts stored values: a stored value may be zero when the
weight itself is zero inside a kept block row/column.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tvm_bsp.bspc.balance import balanced_row_order, row_work_from_blocks, stripe_sequence
from tvm_bsp.bspc.errors import BSPCFormatError
from tvm_bsp.bspc.grid import BlockGrid, stripe_bounds

FLOAT_DTYPES = (np.float32, np.float64)


def index_dtype(max_value: int) -> np.dtype:
    """Return the smallest signed integer dtype (int16 or int32) that holds ``max_value``."""
    if max_value <= np.iinfo(np.int16).max:
        return np.dtype(np.int16)
    if max_value <= np.iinfo(np.int32).max:
        return np.dtype(np.int32)
    raise ValueError(f"index value {max_value} does not fit in int32")


@dataclass(frozen=True, eq=False)
class BSPCMatrix(BlockGrid):
    """A BSP-pruned matrix in the BSPC format (see the module docstring for the layout).

    Build one with :meth:`from_dense`; the constructor validates every invariant.
    """

    shape: tuple[int, int]
    row_blocks: int
    col_blocks: int
    block_row_ptr: np.ndarray
    rows: np.ndarray
    block_col_ptr: np.ndarray
    cols: np.ndarray
    values: np.ndarray
    reorder: np.ndarray
    value_ptr: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dense(
        cls,
        weight: np.ndarray,
        mask: np.ndarray | None = None,
        row_blocks: int = 1,
        col_blocks: int = 1,
    ) -> BSPCMatrix:
        """Build a BSPC matrix from a dense weight and a BSP-structured mask.

        Parameters
        ----------
        weight : array_like
            2-D float32/float64 array (a torch tensor is accepted too); must be finite.
        mask : array_like of bool, optional
            Which weights are kept. Inside every block the kept positions must form a
            rectangle ``kept rows x kept columns`` (BSP structure). ``None`` keeps the
            non-zeros: each block stores the rows and columns that hold a non-zero, so zeros
            inside those rows/columns are stored explicitly.
        row_blocks, col_blocks : int
            The block grid: number of horizontal and vertical stripes.

        Returns
        -------
        BSPCMatrix

        Raises
        ------
        ValueError
            If the weight is not a finite 2-D float array, the mask has another shape or is not
            boolean, the grid does not fit, or a block of the mask is not a rectangle (the
            message names the first such block).
        """
        weight = _as_weight(weight)
        M, N = weight.shape
        rb_bounds = stripe_bounds(M, row_blocks)
        cb_bounds = stripe_bounds(N, col_blocks)
        structured = mask is not None
        mask = _as_mask(mask, weight.shape) if structured else weight != 0

        row_parts: list[np.ndarray] = []
        col_parts: list[np.ndarray] = []
        value_parts: list[np.ndarray] = []
        for rb in range(row_blocks):
            r0, r1 = rb_bounds[rb], rb_bounds[rb + 1]
            for cb in range(col_blocks):
                c0, c1 = cb_bounds[cb], cb_bounds[cb + 1]
                sub = mask[r0:r1, c0:c1]
                kept_rows = np.flatnonzero(sub.any(axis=1))
                kept_cols = np.flatnonzero(sub.any(axis=0))
                if structured and int(sub.sum()) != kept_rows.size * kept_cols.size:
                    raise ValueError(_not_rectangle_message(sub, rb, cb, r0, r1, c0, c1))
                row_parts.append(kept_rows + r0)
                col_parts.append(kept_cols + c0)
                value_parts.append(weight[np.ix_(kept_rows + r0, kept_cols + c0)].ravel())
        return cls.from_parts((M, N), row_blocks, col_blocks, row_parts, col_parts, value_parts)

    @classmethod
    def from_parts(
        cls,
        shape: tuple[int, int],
        row_blocks: int,
        col_blocks: int,
        row_parts: list[np.ndarray],
        col_parts: list[np.ndarray],
        value_parts: list[np.ndarray],
        reorder: np.ndarray | None = None,
    ) -> BSPCMatrix:
        """Assemble a matrix from per-block kept rows, kept columns and row-major values.

        ``reorder=None`` computes the load-balancing row order
        (:func:`tvm_bsp.bspc.balance.balanced_row_order`).
        """
        M, N = shape
        rows = np.concatenate([np.asarray(p, np.int64) for p in row_parts])
        cols = np.concatenate([np.asarray(p, np.int64) for p in col_parts])
        values = np.concatenate([np.asarray(v).ravel() for v in value_parts])
        if values.dtype not in FLOAT_DTYPES:
            values = values.astype(np.float32)
        block_row_ptr = np.concatenate([[0], np.cumsum([len(p) for p in row_parts])])
        block_col_ptr = np.concatenate([[0], np.cumsum([len(p) for p in col_parts])])
        if reorder is None:
            reorder = balanced_row_order(
                M, row_blocks, col_blocks, block_row_ptr, rows, block_col_ptr
            )
        row_t = index_dtype(max(M, N))
        return cls(
            shape=(int(M), int(N)),
            row_blocks=int(row_blocks),
            col_blocks=int(col_blocks),
            block_row_ptr=block_row_ptr.astype(index_dtype(int(block_row_ptr[-1]))),
            rows=rows.astype(row_t),
            block_col_ptr=block_col_ptr.astype(index_dtype(int(block_col_ptr[-1]))),
            cols=cols.astype(row_t),
            values=values,
            reorder=np.asarray(reorder).astype(index_dtype(M)),
        )

    def with_reorder(self, reorder: np.ndarray) -> BSPCMatrix:
        """Return a copy that uses ``reorder`` (any permutation of the rows) as its row order."""
        return BSPCMatrix(
            self.shape,
            self.row_blocks,
            self.col_blocks,
            self.block_row_ptr,
            self.rows,
            self.block_col_ptr,
            self.cols,
            self.values,
            np.asarray(reorder).astype(index_dtype(self.shape[0])),
        )

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Check every invariant of the format; raise :class:`BSPCFormatError` if one fails.

        Checked: shape and grid, index dtypes (integers), pointer arrays (length, start at 0,
        non-decreasing, end at the index array's length), kept rows/columns inside their
        block's stripes and strictly increasing, the number of values, finite float values,
        and that ``reorder`` is a permutation of the rows.
        """
        shape = tuple(self.shape)
        if len(shape) != 2 or not all(_is_int(s) and s >= 1 for s in shape):
            raise BSPCFormatError(f"shape must be two positive integers, got {self.shape!r}")
        M, N = (int(s) for s in shape)
        try:
            rb_bounds = stripe_bounds(M, self.row_blocks)
            cb_bounds = stripe_bounds(N, self.col_blocks)
        except ValueError as err:
            raise BSPCFormatError(f"bad block grid: {err}") from None
        nblocks = self.row_blocks * self.col_blocks
        for name in ("block_row_ptr", "rows", "block_col_ptr", "cols", "reorder"):
            arr = getattr(self, name)
            if not isinstance(arr, np.ndarray) or arr.ndim != 1 or arr.dtype.kind not in "iu":
                raise BSPCFormatError(f"{name} must be a 1-D integer array")
        rptr = _check_ptr(self.block_row_ptr, nblocks, self.rows.size, "block_row_ptr")
        cptr = _check_ptr(self.block_col_ptr, nblocks, self.cols.size, "block_col_ptr")
        block_rb = np.arange(nblocks) // self.col_blocks
        block_cb = np.arange(nblocks) % self.col_blocks
        _check_members(self.rows, rptr, rb_bounds[block_rb], rb_bounds[block_rb + 1], "rows")
        _check_members(self.cols, cptr, cb_bounds[block_cb], cb_bounds[block_cb + 1], "cols")
        if not isinstance(self.values, np.ndarray) or self.values.ndim != 1:
            raise BSPCFormatError("values must be a 1-D array")
        if self.values.dtype not in FLOAT_DTYPES:
            raise BSPCFormatError(f"values must be float32 or float64, got {self.values.dtype}")
        value_ptr = np.concatenate([[0], np.cumsum(np.diff(rptr) * np.diff(cptr))])
        if self.values.size != value_ptr[-1]:
            raise BSPCFormatError(
                f"values has {self.values.size} entries but the blocks' kept rows x kept "
                f"columns need {value_ptr[-1]}"
            )
        if not np.isfinite(self.values).all():
            bad = int(np.flatnonzero(~np.isfinite(self.values))[0])
            raise BSPCFormatError(f"values[{bad}] is not finite ({self.values[bad]})")
        if self.reorder.size != M or not np.array_equal(
            np.sort(self.reorder.astype(np.int64)), np.arange(M)
        ):
            raise BSPCFormatError(f"reorder must be a permutation of the {M} rows")
        object.__setattr__(self, "value_ptr", value_ptr.astype(np.int64))

    # ------------------------------------------------------------------ properties
    @property
    def nbytes(self) -> int:
        """Bytes of the values plus every index array (pointers, rows, columns, reorder)."""
        return int(
            sum(
                a.nbytes
                for a in (
                    self.values,
                    self.block_row_ptr,
                    self.rows,
                    self.block_col_ptr,
                    self.cols,
                    self.reorder,
                )
            )
        )

    @property
    def compression(self) -> float:
        """Dense size over stored values, ``M * N / nnz`` (``inf`` for an empty matrix)."""
        size = self.shape[0] * self.shape[1]
        return float(size) / self.nnz if self.nnz else float("inf")

    @property
    def storage_ratio(self) -> float:
        """Dense bytes (same value dtype) over :attr:`nbytes`."""
        return self.shape[0] * self.shape[1] * self.values.itemsize / self.nbytes

    def block(self, b: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return ``(kept_rows, kept_cols, values[len(rows), len(cols)])`` of block ``b``."""
        rows = self.rows[self.block_row_ptr[b] : self.block_row_ptr[b + 1]].astype(np.int64)
        cols = self.cols[self.block_col_ptr[b] : self.block_col_ptr[b + 1]].astype(np.int64)
        vals = self.values[self.value_ptr[b] : self.value_ptr[b + 1]]
        return rows, cols, vals.reshape(rows.size, cols.size)

    def row_work(self) -> np.ndarray:
        """Stored values per row (the multiply-adds a row costs), shape ``(M,)``."""
        return row_work_from_blocks(
            self.shape[0], self.block_row_ptr, self.rows, self.block_col_ptr
        )

    # ------------------------------------------------------------------ conversions
    def to_dense(self) -> np.ndarray:
        """Return the dense ``(M, N)`` matrix (zeros where pruned)."""
        dense = np.zeros(self.shape, self.values.dtype)
        for b in range(self.nblocks):
            rows, cols, vals = self.block(b)
            dense[np.ix_(rows, cols)] = vals
        return dense

    def to_coo(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return ``(row, col, value)`` of every stored value, in block order."""
        nrows = np.diff(self.block_row_ptr.astype(np.int64))
        ncols = np.diff(self.block_col_ptr.astype(np.int64))
        r_out, c_out = [], []
        for b in range(self.nblocks):
            if nrows[b] and ncols[b]:
                rows, cols, _ = self.block(b)
                r_out.append(np.repeat(rows, ncols[b]))
                c_out.append(np.tile(cols, nrows[b]))
        if not r_out:
            empty = np.zeros(0, np.int64)
            return empty, empty, self.values[:0]
        return np.concatenate(r_out), np.concatenate(c_out), self.values

    def to_scipy(self):
        """Return a ``scipy.sparse.csr_matrix`` holding the stored values (sorted indices)."""
        import scipy.sparse as sp

        r, c, v = self.to_coo()
        csr = sp.csr_matrix((v, (r, c)), shape=self.shape)
        csr.sort_indices()
        return csr

    def matvec(self, x: np.ndarray) -> np.ndarray:
        """Reference ``W @ x`` in numpy, walking rows in :attr:`reorder`'s stripe order.

        It mirrors what the kernels do: per block, ``x[cols]`` is gathered once and reused by
        every kept row, and results land in the original row order. ``x`` may be ``(N,)`` or
        ``(N, batch)``.
        """
        x = np.asarray(x)
        if x.shape[0] != self.shape[1]:
            raise ValueError(f"x has {x.shape[0]} rows, the matrix has {self.shape[1]} columns")
        y = np.zeros((self.shape[0], *x.shape[1:]), np.result_type(self.values, x))
        for rb in stripe_sequence(self):
            for b in range(rb * self.col_blocks, (rb + 1) * self.col_blocks):
                rows, cols, vals = self.block(b)
                if rows.size and cols.size:
                    x_block = x[cols]
                    y[rows] += vals @ x_block
        return y

    def __repr__(self) -> str:
        return (
            f"BSPCMatrix(shape={self.shape}, grid={self.row_blocks}x{self.col_blocks}, "
            f"nnz={self.nnz}, compression={self.compression:.2f}, nbytes={self.nbytes})"
        )


# ---------------------------------------------------------------------- helpers
def _is_int(v: object) -> bool:
    return isinstance(v, int | np.integer) and not isinstance(v, bool)


def _as_weight(weight: np.ndarray) -> np.ndarray:
    if hasattr(weight, "detach"):
        weight = weight.detach().cpu().numpy()
    weight = np.asarray(weight)
    if weight.ndim != 2:
        raise ValueError(f"weight must be a 2-D matrix, got {weight.ndim} dimensions")
    if weight.dtype not in FLOAT_DTYPES:
        raise ValueError(f"weight must be float32 or float64, got {weight.dtype}")
    if not np.isfinite(weight).all():
        i, j = np.argwhere(~np.isfinite(weight))[0]
        raise ValueError(f"weight[{i}, {j}] is not finite ({weight[i, j]})")
    return weight


def _as_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if hasattr(mask, "detach"):
        mask = mask.detach().cpu().numpy()
    mask = np.asarray(mask)
    if mask.shape != shape:
        raise ValueError(f"mask has shape {mask.shape}, the weight has {shape}")
    if mask.dtype != np.bool_:
        raise ValueError(f"mask must be boolean, got {mask.dtype}")
    return mask


def _not_rectangle_message(
    sub: np.ndarray, rb: int, cb: int, r0: int, r1: int, c0: int, c1: int
) -> str:
    rows_any, cols_any = sub.any(axis=1), sub.any(axis=0)
    missing = np.argwhere(np.outer(rows_any, cols_any) & ~sub)[0]
    return (
        f"mask is not BSP-structured: block ({rb}, {cb}) (rows {r0}:{r1}, columns {c0}:{c1}) "
        f"keeps row {r0 + missing[0]} and column {c0 + missing[1]} but not weight "
        f"[{r0 + missing[0]}, {c0 + missing[1]}]; kept weights of a block must form "
        f"kept rows x kept columns"
    )


def _check_ptr(ptr: np.ndarray, nblocks: int, length: int, name: str) -> np.ndarray:
    ptr = ptr.astype(np.int64)
    if ptr.size != nblocks + 1:
        raise BSPCFormatError(f"{name} has {ptr.size} entries, expected {nblocks + 1}")
    if ptr[0] != 0 or ptr[-1] != length:
        raise BSPCFormatError(f"{name} must start at 0 and end at {length}")
    if (np.diff(ptr) < 0).any():
        raise BSPCFormatError(f"{name} must be non-decreasing")
    return ptr


def _check_members(
    idx: np.ndarray, ptr: np.ndarray, lo: np.ndarray, hi: np.ndarray, name: str
) -> None:
    """Check that block ``b``'s slice of ``idx`` lies in ``[lo[b], hi[b])`` and increases."""
    counts = np.diff(ptr)
    idx = idx.astype(np.int64)
    owner = np.repeat(np.arange(counts.size), counts)
    outside = (idx < lo[owner]) | (idx >= hi[owner])
    if outside.any():
        k = int(np.flatnonzero(outside)[0])
        b = int(owner[k])
        raise BSPCFormatError(
            f"{name}[{k}] = {idx[k]} is outside block {b}'s stripe [{lo[b]}, {hi[b]})"
        )
    same_block = owner[1:] == owner[:-1]
    unsorted = same_block & (np.diff(idx) <= 0)
    if unsorted.any():
        k = int(np.flatnonzero(unsorted)[0]) + 1
        raise BSPCFormatError(
            f"{name} of block {int(owner[k])} must be strictly increasing (at index {k})"
        )
