"""Block grids: how a matrix dimension is cut into stripes.

A dimension of length ``n`` cut into ``k`` stripes gives ``k - 1`` stripes of ``n // k``
elements and a last stripe that takes the remainder, so 39 input columns in 4 stripes are
``9, 9, 9, 12``. Every stripe is non-empty, which requires ``1 <= k <= n``.
"""

from __future__ import annotations

import numpy as np


def stripe_bounds(length: int, stripes: int) -> np.ndarray:
    """Return the ``stripes + 1`` boundaries of a dimension cut into stripes.

    Parameters
    ----------
    length : int
        Size of the dimension (rows or columns of the matrix).
    stripes : int
        Number of stripes, ``1 <= stripes <= length``.

    Returns
    -------
    numpy.ndarray
        int64 array ``b`` with ``b[0] == 0``, ``b[-1] == length``; stripe ``s`` covers
        ``b[s]:b[s + 1]``. All stripes but the last have ``length // stripes`` elements.

    Raises
    ------
    ValueError
        If ``stripes`` is not an integer in ``[1, length]``.
    """
    length = _positive_int(length, "length")
    if isinstance(stripes, bool) or not isinstance(stripes, int | np.integer):
        raise ValueError(f"number of stripes must be an integer, got {stripes!r}")
    stripes = int(stripes)
    if not 1 <= stripes <= length:
        raise ValueError(
            f"cannot cut a dimension of {length} into {stripes} stripes: "
            f"need 1 <= stripes <= {length}"
        )
    width = length // stripes
    bounds = np.arange(stripes + 1, dtype=np.int64) * width
    bounds[-1] = length
    return bounds


def stripe_of(bounds: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Return the stripe number of each index for the given stripe bounds."""
    return np.searchsorted(bounds, index, side="right") - 1


def parse_grid(text: str) -> tuple[int, int]:
    """A block grid written ``ROWSxCOLS`` (``"24x16"``, any case, spaces around) as a pair.

    Raises
    ------
    ValueError
        Naming the text, for anything but two positive integers joined by ``x``.
    """
    rows, sep, cols = str(text).strip().lower().partition("x")
    rows, cols = rows.strip(), cols.strip()
    if not sep or not rows.isdigit() or not cols.isdigit() or int(rows) < 1 or int(cols) < 1:
        raise ValueError(f"grid {str(text).strip()!r} is not ROWSxCOLS with positive integers")
    return int(rows), int(cols)


def parse_grid_list(text: str) -> list[tuple[int, int]]:
    """A comma list of :func:`parse_grid` grids (``"6x4,12x8"``); a repeated grid is an error."""
    grids = [parse_grid(part) for part in str(text).split(",")]
    if len(set(grids)) != len(grids):
        raise ValueError(f"grid list {text!r} repeats a grid")
    return grids


def _positive_int(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


class BlockGrid:
    """Sizes of a block-pruned matrix in a ``row_blocks x col_blocks`` grid.

    A base of the frozen dataclasses :class:`~tvm_bsp.bspc.matrix.BSPCMatrix` and
    :class:`~tvm_bsp.bspc.quant.QuantizedBSPC`, which hold ``shape``, ``row_blocks``,
    ``col_blocks`` and ``values``.
    """

    shape: tuple[int, int]
    row_blocks: int
    col_blocks: int
    values: np.ndarray

    @property
    def row_bounds(self) -> np.ndarray:
        """Boundaries of the horizontal stripes (``row_blocks + 1`` entries)."""
        return stripe_bounds(self.shape[0], self.row_blocks)

    @property
    def col_bounds(self) -> np.ndarray:
        """Boundaries of the vertical stripes (``col_blocks + 1`` entries)."""
        return stripe_bounds(self.shape[1], self.col_blocks)

    @property
    def nblocks(self) -> int:
        """Number of blocks in the grid (empty ones included)."""
        return self.row_blocks * self.col_blocks

    @property
    def nnz(self) -> int:
        """Number of stored values."""
        return int(self.values.size)
