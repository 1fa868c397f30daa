"""The ``"grouped"`` row order of the panel layout: panels of rows kept by the same blocks.

A panel's lanes share one column list, the union of the kept columns of every block that
keeps any of its rows (:mod:`tvm_bsp.kernels.layout`); a lane whose row a listed block does
not keep multiplies zeros. At high row rates a block keeps a few rows of its stripe, so
cutting a stripe into ``P`` consecutive rows of some fixed order puts rows of different
blocks side by side and the panel pays every block's columns on all ``P`` lanes.

This order packs each row stripe into panels by the rows' *signatures* (the set of blocks
that keep the row, over blocks with at least one kept column):

1. rows of equal signature fill whole panels (no zero but the rows' own stored zeros);
2. the rows left over (fewer than ``P`` per signature) are packed greedily: a panel starts
   from the heaviest left-over row and takes, one at a time, the row adding the fewest new
   columns to its union (ties: the row sharing the most columns);
3. a local search swaps rows between the left-over panels, or moves a row into a panel with
   a free lane, while that lowers the stripe's stored columns.

Rows kept by no block (they store no column) take the free lanes of the left-over panels,
then fill panels of their own, so a stripe has few more panels than ``ceil(rows / P)``
(every panel costs its loop, reduction and store whatever its columns). Inside a panel
the rows ascend, so a panel of ``P`` consecutive rows is recognisable by its first and last
lane (the mat-mat kernel's vector store). The cost of a panel is ``P`` times the column
count of its union, the multiply-adds a kernel does for it per frame.
"""

from __future__ import annotations

import weakref

import numpy as np

from tvm_bsp.bspc.matrix import BSPCMatrix

#: Passes of the local search (each tries every swap and move once); it usually settles in 2.
SEARCH_PASSES = 4


#: ``{matrix: {lanes: panels of every stripe}}``: packing, cost models and the tuner ask for
#: the same grouping several times per compile (weights are immutable; entries die with them).
_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def grouped_panels(matrix: BSPCMatrix, stripe: int, lanes: int) -> list[np.ndarray]:
    """The panels of one row stripe in the ``"grouped"`` order (see :func:`stripe_groups`)."""
    per_lanes = _CACHE.setdefault(matrix, {})
    if lanes not in per_lanes:
        stripes = [stripe_groups(matrix, s, lanes) for s in range(matrix.row_blocks)]
        for panels in stripes:
            for rows in panels:
                rows.flags.writeable = False  # shared by every caller
        per_lanes[lanes] = stripes
    return per_lanes[lanes][stripe]


def stripe_groups(matrix: BSPCMatrix, stripe: int, lanes: int) -> list[np.ndarray]:
    """The panels of one row stripe in the ``"grouped"`` order, computed (not cached).

    Parameters
    ----------
    matrix : BSPCMatrix
    stripe : int
        Row stripe index.
    lanes : int
        Panel height ``P``.

    Returns
    -------
    list of numpy.ndarray
        Each panel's rows (global row numbers, ascending, 1 to ``P`` of them); every row of
        the stripe is in exactly one panel.
    """
    P = lanes
    r0, r1 = int(matrix.row_bounds[stripe]), int(matrix.row_bounds[stripe + 1])
    masks, weights = _signatures(matrix, stripe, r0, r1)
    cost = _Cost(weights)
    by_sig: dict[int, list[int]] = {}
    for r in range(r0, r1):
        by_sig.setdefault(masks[r - r0], []).append(r)
    full: list[list[int]] = []
    left: list[int] = []
    idle = by_sig.pop(0, [])
    for _, rows in sorted(by_sig.items()):
        n = len(rows) // P * P
        full += [rows[i : i + P] for i in range(0, n, P)]
        left += rows[n:]
    rest = _greedy(left, masks, r0, cost, P)
    _local_search(rest, masks, r0, cost, P)
    for panel in rest:  # a free lane computes a dummy anyway: give it an idle row
        while len(panel) < P and idle:
            panel.append(idle.pop())
    idle.sort()
    idle_panels = [idle[i : i + P] for i in range(0, len(idle), P)]
    return [np.asarray(sorted(p), np.int64) for p in full + rest + idle_panels if p]


def _signatures(matrix: BSPCMatrix, stripe: int, r0: int, r1: int) -> tuple[list[int], list[int]]:
    """Per row of the stripe a bit mask of the blocks keeping it, and each bit's columns."""
    masks = np.zeros(r1 - r0, np.int64)
    weights: list[int] = []
    cb = matrix.col_blocks
    for b in range(stripe * cb, (stripe + 1) * cb):
        rows, cols, _ = matrix.block(b)
        if rows.size == 0 or cols.size == 0:
            continue
        masks[rows.astype(np.int64) - r0] |= 1 << len(weights)
        weights.append(int(cols.size))
    return [int(m) for m in masks], weights


class _Cost:
    """Stored columns of a union of blocks given as a bit mask (memoised)."""

    def __init__(self, weights: list[int]) -> None:
        self.weights = weights
        self.memo: dict[int, int] = {0: 0}

    def __call__(self, mask: int) -> int:
        value = self.memo.get(mask)
        if value is None:
            value = sum(w for i, w in enumerate(self.weights) if mask >> i & 1)
            self.memo[mask] = value
        return value


def _greedy(rows: list[int], masks: list[int], r0: int, cost: _Cost, P: int) -> list[list[int]]:
    """Pack left-over rows into panels, each grown by the row adding the fewest columns."""
    pool = sorted(rows, key=lambda r: (-cost(masks[r - r0]), r))
    panels: list[list[int]] = []
    while pool:
        panel = [pool.pop(0)]
        union = masks[panel[0] - r0]
        while len(panel) < P and pool:
            best = min(
                range(len(pool)),
                key=lambda i: (
                    cost(masks[pool[i] - r0] & ~union),
                    -cost(masks[pool[i] - r0] & union),
                    i,
                ),
            )
            row = pool.pop(best)
            panel.append(row)
            union |= masks[row - r0]
        panels.append(panel)
    return panels


def _local_search(panels: list[list[int]], masks: list[int], r0: int, cost: _Cost, P: int) -> None:
    """Swap rows between panels (or move one into a free lane) while the cost drops."""
    for _ in range(SEARCH_PASSES):
        improved = False
        for i in range(len(panels)):
            for j in range(i + 1, len(panels)):
                improved |= _improve_pair(panels, i, j, masks, r0, cost, P)
        if not improved:
            break
    panels[:] = [p for p in panels if p]


def _improve_pair(
    panels: list[list[int]], i: int, j: int, masks: list[int], r0: int, cost: _Cost, P: int
) -> bool:
    """Apply the best swap or move between panels ``i`` and ``j``; True if the cost dropped."""
    a, b = panels[i], panels[j]
    # a free lane is the candidate None (mask 0): swapping a row for it moves the row
    a_opts = a + ([None] if len(a) < P else [])
    b_opts = b + ([None] if len(b) < P else [])
    a_masks = [0 if r is None else masks[r - r0] for r in a_opts]
    b_masks = [0 if r is None else masks[r - r0] for r in b_opts]
    a_without = _unions_without(a_masks)
    b_without = _unions_without(b_masks)
    best = cost(_or(a_masks)) + cost(_or(b_masks))
    choice = None
    for xi, x in enumerate(a_opts):
        for yi, y in enumerate(b_opts):
            if x is None and y is None:
                continue
            value = cost(a_without[xi] | b_masks[yi]) + cost(b_without[yi] | a_masks[xi])
            if value < best:
                best, choice = value, (x, y)
    if choice is None:
        return False
    x, y = choice
    panels[i] = [r for r in a if r != x] + ([y] if y is not None else [])
    panels[j] = [r for r in b if r != y] + ([x] if x is not None else [])
    return True


def _or(values: list[int]) -> int:
    out = 0
    for v in values:
        out |= v
    return out


def _unions_without(values: list[int]) -> list[int]:
    """``[OR of values but values[k] for every k]`` by prefix and suffix ORs."""
    n = len(values)
    prefix, suffix = [0] * (n + 1), [0] * (n + 1)
    for k in range(n):
        prefix[k + 1] = prefix[k] | values[k]
        suffix[n - 1 - k] = suffix[n - k] | values[n - 1 - k]
    return [prefix[k] | suffix[k + 1] for k in range(n)]
