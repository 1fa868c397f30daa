"""Weight layouts of the RNN kernels (built once at compile time; weights are constants).

Gate tiles (dense recurrent weights)
    ``U (G*H, K)`` with the gates stacked is stored as ``[Q, G, K, P]``,
    ``Q = ceil(H / P)``: tile ``q`` holds, for every gate ``g`` and column ``k``, the
    ``P``-vector ``U[g*H + q*P : g*H + q*P + P, k]`` (zero rows past ``H``). One tile is
    everything a thread needs to finish ``P`` hidden units of a step, so the gate math runs
    right after the product, with no barrier between them.
Row panels (dense input projections and heads)
    ``W (M, K)`` as ``[ceil(M/P), K, P]``: panel ``p`` holds ``W[p*P : p*P + P, k]`` per
    column (zero rows past ``M``), the layout of the CPU dense mat-mat kernel.
BSPC weights use the kernel-side panel layout of :mod:`tvm_bsp.kernels.layout`.

The helpers at the end derive BSPC matrices: a row range (the kaldi GRU multiplies the
candidate rows by another vector than the gate rows) and a per-row scaling (folded
batch-norm).
"""

from __future__ import annotations

import numpy as np

from tvm_bsp.bspc.grid import stripe_bounds
from tvm_bsp.bspc.matrix import BSPCMatrix


def pack_gate_tiles(weight: np.ndarray, gates: int, lanes: int) -> np.ndarray:
    """Pack stacked gate rows into tiles ``[Q, G, K, P]`` (flattened, float32).

    Parameters
    ----------
    weight : numpy.ndarray
        ``(gates * H, K)``.
    gates : int
        Number of stacked gates ``G``.
    lanes : int
        Units per tile ``P``.
    """
    weight = np.asarray(weight, np.float32)
    GH, K = weight.shape
    if GH % gates:
        raise ValueError(f"{GH} rows do not split into {gates} gates")
    H = GH // gates
    Q = -(-H // lanes)
    padded = np.zeros((gates, Q * lanes, K), np.float32)
    padded[:, :H] = weight.reshape(gates, H, K)
    tiles = padded.reshape(gates, Q, lanes, K).transpose(1, 0, 3, 2)
    return np.ascontiguousarray(tiles).ravel()


def pack_row_panels(weight: np.ndarray, lanes: int) -> np.ndarray:
    """Pack ``(M, K)`` into row panels ``[ceil(M/P), K, P]`` (flattened, float32)."""
    return pack_gate_tiles(weight, 1, lanes)


def pad_rows(vector: np.ndarray | None, rows: int, lanes: int) -> np.ndarray:
    """A ``(rows,)`` vector (zeros if ``None``) padded with zeros to a multiple of ``lanes``."""
    out = np.zeros(-(-rows // lanes) * lanes, np.float32)
    if vector is not None:
        out[:rows] = vector
    return out


def bspc_row_range(matrix: BSPCMatrix, lo: int, hi: int) -> BSPCMatrix:
    """Rows ``lo:hi`` of a BSPC matrix as a BSPC matrix.

    When the range starts and ends on row-stripe boundaries the blocks are reused as they
    are; otherwise the range is re-cut into about as many stripes per row as the original
    (each new block keeps the rows and columns holding a stored value), which is exact but
    can store a few more zeros.
    """
    M = matrix.shape[0]
    if not 0 <= lo < hi <= M:
        raise ValueError(f"row range {lo}:{hi} is outside 0:{M}")
    bounds = matrix.row_bounds
    if lo in bounds and hi in bounds:
        s0, s1 = int(np.flatnonzero(bounds == lo)[0]), int(np.flatnonzero(bounds == hi)[0])
        if np.array_equal(stripe_bounds(hi - lo, s1 - s0) + lo, bounds[s0 : s1 + 1]):
            return _slice_stripes(matrix, s0, s1, lo)
    dense = matrix.to_dense()[lo:hi]
    mask = _structure_mask(matrix)[lo:hi]
    stripes = max(1, min(hi - lo, round(matrix.row_blocks * (hi - lo) / M)))
    structured = mask if _is_bsp(mask, stripes, matrix) else None
    return BSPCMatrix.from_dense(dense, structured, stripes, matrix.col_blocks)


def bspc_scale_rows(matrix: BSPCMatrix, scale: np.ndarray) -> BSPCMatrix:
    """``diag(scale) @ matrix`` with the same structure."""
    scale = np.asarray(scale, matrix.values.dtype)
    if scale.shape != (matrix.shape[0],):
        raise ValueError(f"scale must have shape ({matrix.shape[0]},), got {scale.shape}")
    values = matrix.values.copy()
    for b in range(matrix.nblocks):
        rows, cols, _ = matrix.block(b)
        lo, hi = matrix.value_ptr[b], matrix.value_ptr[b + 1]
        values[lo:hi] *= np.repeat(scale[rows], cols.size)
    return BSPCMatrix(
        matrix.shape,
        matrix.row_blocks,
        matrix.col_blocks,
        matrix.block_row_ptr,
        matrix.rows,
        matrix.block_col_ptr,
        matrix.cols,
        values,
        matrix.reorder,
    )


def bspc_structure_mask(matrix: BSPCMatrix) -> np.ndarray:
    """Boolean ``(M, N)`` mask of the stored positions (kept rows x kept columns per block)."""
    return _structure_mask(matrix)


def _structure_mask(matrix: BSPCMatrix) -> np.ndarray:
    mask = np.zeros(matrix.shape, bool)
    for b in range(matrix.nblocks):
        rows, cols, _ = matrix.block(b)
        mask[np.ix_(rows, cols)] = True
    return mask


def _is_bsp(mask: np.ndarray, stripes: int, matrix: BSPCMatrix) -> bool:
    try:
        BSPCMatrix.from_dense(np.zeros(mask.shape, np.float32), mask, stripes, matrix.col_blocks)
    except ValueError:
        return False
    return True


def _slice_stripes(matrix: BSPCMatrix, s0: int, s1: int, lo: int) -> BSPCMatrix:
    cb = matrix.col_blocks
    rows, cols, vals = [], [], []
    for b in range(s0 * cb, s1 * cb):
        r, c, v = matrix.block(b)
        rows.append(r - lo)
        cols.append(c)
        vals.append(v)
    hi = int(matrix.row_bounds[s1])
    return BSPCMatrix.from_parts((hi - lo, matrix.shape[1]), s1 - s0, cb, rows, cols, vals)
