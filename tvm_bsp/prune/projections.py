"""Pruning projections: the masks BSP, ESE and magnitude pruning keep.

Every function takes a 2-D weight (numpy array or torch tensor) and returns a boolean mask of
the same shape and kind (numpy in, numpy out; torch in, torch out). Each is the Euclidean
projection used by ADMM: keeping the largest-norm groups is the closest point of the
constraint set to ``w``.

Terms (RTMobile, arXiv 2002.11474, Sec. III-D): the matrix is cut into ``row_blocks``
horizontal stripes and ``col_blocks`` vertical stripes (the last stripe takes the remainder).
A *column segment* is one column restricted to a horizontal stripe; a *row segment* is one row
restricted to a vertical stripe.
"""

from __future__ import annotations

import math

import numpy as np

from tvm_bsp.bspc.grid import stripe_bounds


def column_block_mask(w, row_blocks: int, col_rate: float):
    """Step 1 of BSP, row-based column-block pruning.

    Within each horizontal stripe of rows, keep the ``1 / col_rate`` fraction of its column
    segments (``round(N / col_rate)``, at least one) with the largest L2 norm.

    Parameters
    ----------
    w : numpy.ndarray or torch.Tensor
        Weight of shape ``(M, N)``.
    row_blocks : int
        Number of horizontal stripes.
    col_rate : float
        Column pruning rate, ``>= 1``.

    Returns
    -------
    mask : same kind as ``w``, bool
    """
    arr, to_kind = _as_array(w)
    return to_kind(_keep_top_segments(arr, row_blocks, col_rate, "col_rate"))


def row_mask(w, col_blocks: int, row_rate: float):
    """Step 2 of BSP, column-based row pruning.

    Within each vertical stripe of columns, keep the ``1 / row_rate`` fraction of its row
    segments (``round(M / row_rate)``, at least one) with the largest L2 norm.

    Parameters
    ----------
    w : numpy.ndarray or torch.Tensor
        Weight of shape ``(M, N)`` (in BSP, the weight already masked by step 1).
    col_blocks : int
        Number of vertical stripes.
    row_rate : float
        Row pruning rate, ``>= 1``.

    Returns
    -------
    mask : same kind as ``w``, bool
    """
    arr, to_kind = _as_array(w)
    return to_kind(_keep_top_segments(arr.T, col_blocks, row_rate, "row_rate").T)


def bsp_mask(w, row_blocks: int, col_blocks: int, col_rate: float, row_rate: float):
    """Block-based structured pruning: step 1 then step 2 on the ``row_blocks x col_blocks`` grid.

    The kept weights of every block form ``kept rows x kept columns``, the structure BSPC
    stores. The overall compression is close to ``col_rate * row_rate``; use
    :func:`achieved_rate` for the exact value (it can be higher when a kept row segment meets
    a block with no kept column).

    Parameters
    ----------
    w : numpy.ndarray or torch.Tensor
        Weight of shape ``(M, N)``.
    row_blocks, col_blocks : int
        The block grid.
    col_rate, row_rate : float
        Rates of step 1 and step 2, each ``>= 1``.

    Returns
    -------
    mask : same kind as ``w``, bool
    """
    arr, to_kind = _as_array(w)
    step1 = column_block_mask(arr, row_blocks, col_rate)
    step2 = row_mask(np.where(step1, arr, 0), col_blocks, row_rate)
    return to_kind(step1 & step2)


def balanced_mask(w, groups: int, rate: float):
    """ESE's load-balance-aware pruning.

    Rows are dealt to ``groups`` processing elements in turn (row ``i`` to group ``i % groups``)
    and every group keeps the same number of weights, its largest-magnitude ones, so all
    groups get equal work.

    Parameters
    ----------
    w : numpy.ndarray or torch.Tensor
        Weight of shape ``(M, N)``.
    groups : int
        Number of row groups (processing elements), ``1 <= groups <= M``.
    rate : float
        Pruning rate, ``>= 1``.

    Returns
    -------
    mask : same kind as ``w``, bool
    """
    arr, to_kind = _as_array(w)
    M, N = arr.shape
    if isinstance(groups, bool) or not isinstance(groups, int | np.integer) or not 1 <= groups <= M:
        raise ValueError(f"groups must be an integer in [1, {M}], got {groups!r}")
    per_group = min(_keep_count(M * N, rate, "rate") // groups or 1, (M // groups) * N)
    mask = np.zeros((M, N), bool)
    for g in range(groups):
        rows = np.arange(g, M, groups)
        flat = np.abs(arr[rows]).ravel()
        top = np.argsort(-flat, kind="stable")[:per_group]
        mask[rows[top // N], top % N] = True
    return to_kind(mask)


def magnitude_mask(w, rate: float):
    """Unstructured magnitude pruning: keep the ``round(size / rate)`` largest ``|w|``.

    Parameters
    ----------
    w : numpy.ndarray or torch.Tensor
    rate : float
        Pruning rate, ``>= 1``.

    Returns
    -------
    mask : same kind as ``w``, bool
    """
    arr, to_kind = _as_array(w)
    keep = _keep_count(arr.size, rate, "rate")
    top = np.argsort(-np.abs(arr).ravel(), kind="stable")[:keep]
    mask = np.zeros(arr.size, bool)
    mask[top] = True
    return to_kind(mask.reshape(arr.shape))


def achieved_rate(mask) -> float:
    """Exact compression of a mask: size over kept count (``inf`` if nothing is kept)."""
    arr, _ = _as_array(mask, allow_bool=True)
    kept = int(np.count_nonzero(arr))
    return arr.size / kept if kept else math.inf


def _keep_top_segments(arr: np.ndarray, stripes: int, rate: float, name: str) -> np.ndarray:
    """Per horizontal stripe of ``arr``, keep the largest-L2 columns (the top ``N / rate``)."""
    M, N = arr.shape
    bounds = stripe_bounds(M, stripes)
    keep = _keep_count(N, rate, name)
    norms = np.add.reduceat(arr.astype(np.float64) ** 2, bounds[:-1], axis=0)  # (stripes, N)
    top = np.argsort(-norms, axis=1, kind="stable")[:, :keep]
    kept = np.zeros_like(norms, dtype=bool)
    np.put_along_axis(kept, top, True, axis=1)
    return np.repeat(kept, np.diff(bounds), axis=0)


def _keep_count(total: int, rate: float, name: str) -> int:
    if isinstance(rate, bool) or not isinstance(rate, int | float | np.integer | np.floating):
        raise ValueError(f"{name} must be a number, got {rate!r}")
    if not math.isfinite(rate) or rate < 1:
        raise ValueError(f"{name} must be a finite number >= 1, got {rate}")
    return max(1, round(total / rate))


def _as_array(w, allow_bool: bool = False):
    """Return ``(numpy array, converter back to the caller's kind)``."""
    if hasattr(w, "detach"):
        import torch

        device = w.device
        arr = w.detach().cpu().numpy()

        def to_kind(m: np.ndarray):
            return torch.from_numpy(np.ascontiguousarray(m)).to(device)
    else:
        arr = np.asarray(w)

        def to_kind(m: np.ndarray):
            return m

    if arr.ndim != 2:
        raise ValueError(f"weight must be a 2-D matrix, got shape {arr.shape}")
    if arr.dtype.kind not in ("fb" if allow_bool else "f"):
        raise ValueError(f"weight must be a float array, got {arr.dtype}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError("weight has NaN or infinite entries")
    return arr, to_kind


#: RTMobile Table I: overall compression -> (column rate, row rate) the paper used.
PAPER_SPLITS: dict[int, tuple[float, float]] = {
    1: (1, 1),
    10: (10, 1),
    19: (16, 1.25),
    29: (16, 2),
    43: (16, 5),
    80: (20, 8),
    103: (16, 16),
    153: (20, 10),
    245: (20, 16),
    301: (20, 20),
}


def bsp_mask_at_rate(
    w, row_blocks: int, col_blocks: int, rate: float, col_rate: float, tol: float = 0.01
):
    """BSP mask whose achieved compression is ``rate`` (within ``tol`` relative, if reachable).

    Step 1 uses ``col_rate``; the row rate of step 2 is found by bisection, because the exact
    compression of :func:`bsp_mask` depends on how kept row segments meet kept columns.
    RTMobile's rates relate to their splits the same way (e.g. 80x from 20 x 8).

    Parameters
    ----------
    w : numpy.ndarray or torch.Tensor
    row_blocks, col_blocks : int
        The block grid.
    rate : float
        Target overall compression, ``>= col_rate`` (at ``rate == col_rate`` no row pruning).
    col_rate : float
        Step 1 column rate.
    tol : float
        Relative tolerance on the achieved rate.

    Returns
    -------
    mask : same kind as ``w``, bool
    """
    arr, to_kind = _as_array(w)
    if rate < col_rate:
        raise ValueError(f"rate {rate} is below the column rate {col_rate}")
    lo, hi = 1.0, float(rate)
    best = bsp_mask(arr, row_blocks, col_blocks, col_rate, lo)
    if achieved_rate(best) >= rate * (1 - tol):
        return to_kind(best)
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        mask = bsp_mask(arr, row_blocks, col_blocks, col_rate, mid)
        got = achieved_rate(mask)
        if abs(got - rate) < abs(achieved_rate(best) - rate):
            best = mask
        if abs(got - rate) <= tol * rate:
            break
        lo, hi = (mid, hi) if got < rate else (lo, mid)
    return to_kind(best)
