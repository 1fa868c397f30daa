"""Matrix reorder for load balance (RTMobile's "matrix reorder").

The work of a row is the number of values it stores. Kernels give whole row stripes to
threads (a stripe's blocks all write the same output rows, so one thread owns them, and a
block's ``x[cols]`` is loaded once for all its rows). The reorder therefore lists the row
stripes from the heaviest to the lightest and, inside each stripe, the rows from the heaviest
to the lightest: rows of equal work end up side by side. Threads then take stripes in that
order, each next stripe going to the least-loaded thread (longest-processing-time-first), which
is what :func:`thread_partition` returns and kernels execute.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from tvm_bsp.bspc.grid import stripe_bounds

if TYPE_CHECKING:
    from tvm_bsp.bspc.matrix import BSPCMatrix


def row_work_from_blocks(
    M: int,
    block_row_ptr: np.ndarray,
    rows: np.ndarray,
    block_col_ptr: np.ndarray,
) -> np.ndarray:
    """Stored values per row, from the block pointer arrays (shape ``(M,)``)."""
    work = np.zeros(M, np.int64)
    nrows = np.diff(np.asarray(block_row_ptr, np.int64))
    ncols = np.diff(np.asarray(block_col_ptr, np.int64))
    np.add.at(work, np.asarray(rows, np.int64), np.repeat(ncols, nrows))
    return work


def balanced_row_order(
    M: int,
    row_blocks: int,
    col_blocks: int,
    block_row_ptr: np.ndarray,
    rows: np.ndarray,
    block_col_ptr: np.ndarray,
) -> np.ndarray:
    """Return the load-balancing row permutation described in the module docstring.

    Parameters
    ----------
    M : int
        Number of rows.
    row_blocks, col_blocks : int
        The block grid.
    block_row_ptr, rows, block_col_ptr : numpy.ndarray
        The BSPC pointer and kept-row arrays (see :mod:`tvm_bsp.bspc.matrix`).

    Returns
    -------
    numpy.ndarray
        int64 permutation of ``range(M)``: stripes by descending work, rows inside a stripe by
        descending work; ties keep the original order.
    """
    del col_blocks  # the work already sums over all blocks of a row
    work = row_work_from_blocks(M, block_row_ptr, rows, block_col_ptr)
    bounds = stripe_bounds(M, row_blocks)
    stripe_work = np.add.reduceat(work, bounds[:-1])
    order: list[np.ndarray] = []
    for s in np.argsort(-stripe_work, kind="stable"):
        lo, hi = bounds[s], bounds[s + 1]
        order.append(lo + np.argsort(-work[lo:hi], kind="stable"))
    return np.concatenate(order)


def stripe_sequence(matrix: BSPCMatrix) -> np.ndarray:
    """Row stripes in the order the matrix's ``reorder`` visits them."""
    stripe = np.searchsorted(matrix.row_bounds, matrix.reorder.astype(np.int64), "right") - 1
    _, first = np.unique(stripe, return_index=True)
    return stripe[np.sort(first)]


def stripe_work(matrix: BSPCMatrix) -> np.ndarray:
    """Stored values per row stripe, shape ``(row_blocks,)``."""
    return np.add.reduceat(matrix.row_work(), matrix.row_bounds[:-1])


def thread_partition(matrix: BSPCMatrix, threads: int) -> list[np.ndarray]:
    """Assign row stripes to ``threads`` threads, balanced, following the reorder.

    Stripes are taken in :func:`stripe_sequence` order; each goes to the thread with the least
    work so far (ties to the lowest thread number).

    Returns
    -------
    list of numpy.ndarray
        ``threads`` arrays of stripe numbers (some may be empty if there are fewer stripes).
    """
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    work = stripe_work(matrix)
    load = np.zeros(threads, np.int64)
    owned: list[list[int]] = [[] for _ in range(threads)]
    for s in stripe_sequence(matrix):
        t = int(np.argmin(load))
        owned[t].append(int(s))
        load[t] += work[s]
    return [np.asarray(o, np.int64) for o in owned]


@dataclass(frozen=True)
class LoadBalance:
    """Max over mean work per thread (1.0 is perfect), before and after the reorder."""

    threads: int
    before: float
    after: float


def load_balance(matrix: BSPCMatrix, threads: int) -> LoadBalance:
    """Report the work imbalance across ``threads`` threads.

    *Before*: the row stripes in their natural order, split into ``threads`` contiguous chunks
    of (nearly) equal stripe count, a static schedule. *After*: :func:`thread_partition`.

    Parameters
    ----------
    matrix : BSPCMatrix
    threads : int

    Returns
    -------
    LoadBalance
    """
    work = stripe_work(matrix)
    chunks = np.array_split(np.arange(work.size), threads)
    before = np.array([work[c].sum() for c in chunks], np.float64)
    after = np.array([work[p].sum() for p in thread_partition(matrix, threads)], np.float64)
    return LoadBalance(threads, _imbalance(before), _imbalance(after))


def _imbalance(per_thread: np.ndarray) -> float:
    mean = per_thread.mean()
    return float(per_thread.max() / mean) if mean > 0 else 1.0
