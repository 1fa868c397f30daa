"""Zero padding of the panel layout: multiply-adds per frame over stored non-zeros.

A kernel over the panel layout (:mod:`tvm_bsp.kernels.layout`) does one multiply-add per
panel lane and stored column, ``padded_values`` per frame; the BSPC matrix stores ``nnz``
values. Their ratio is the work the layout adds: dummy lanes of short panels, lanes whose row
a listed block does not keep, and the ``k_split`` padding of each panel's column list.
:func:`padding_ratio` measures it for one matrix and layout choice, :func:`layer_padding` for
the BSPC weights of a layer as the CPU kernels pack them (recurrent weights in the recurrent
product's row order, the others in the mat-mat kernel's).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from tvm_bsp.bspc.matrix import BSPCMatrix
from tvm_bsp.kernels.layout import pack_panels, panel_column_count
from tvm_bsp.kernels.rnn_knobs import RNNKnobs


@dataclass(frozen=True)
class Padding:
    """Multiply-adds and non-zeros of one or more packed matrices.

    Attributes
    ----------
    macs : int
        Multiply-adds per frame (stored panel values, padding included).
    nnz : int
        Stored values of the BSPC matrices.
    """

    macs: int
    nnz: int

    @property
    def ratio(self) -> float:
        """``macs / nnz`` (1.0 for an empty matrix)."""
        return self.macs / self.nnz if self.nnz else 1.0

    def __add__(self, other: Padding) -> Padding:
        return Padding(self.macs + other.macs, self.nnz + other.nnz)


def padding_ratio(
    matrix: BSPCMatrix, lanes: int, row_order: str = "reorder", k_split: int = 1
) -> Padding:
    """Multiply-adds per frame of ``matrix`` packed into ``lanes``-row panels.

    Parameters
    ----------
    matrix : BSPCMatrix
    lanes : int
        Panel height ``P``.
    row_order : str
        A row order of :func:`tvm_bsp.kernels.layout.pack_panels`.
    k_split : int
        The kernels' ``k_split`` (each panel's columns padded to a multiple of it); 1 counts
        the columns alone (no values are packed then).

    Returns
    -------
    Padding
    """
    if k_split == 1:
        macs = panel_column_count(matrix, lanes, row_order) * lanes
    else:
        macs = pack_panels(matrix, lanes, k_split, 1, row_order).padded_values
    return Padding(int(macs), int(matrix.nnz))


def layer_padding(
    weights: Mapping[str, BSPCMatrix], knobs: RNNKnobs, recurrent: str = "weight_hh"
) -> dict[str, Padding]:
    """:func:`padding_ratio` of each BSPC weight of a layer as the CPU kernels pack them.

    Parameters
    ----------
    weights : mapping
        ``{parameter name: BSPCMatrix}``; names starting with ``recurrent`` are the
        recurrent product's, the others the mat-mat kernel's.
    knobs : RNNKnobs
        The layer's knobs (``lanes``, ``k_split``, ``panel_order``).
    recurrent : str
        Name prefix of the recurrent weights.

    Returns
    -------
    dict of str to Padding
    """
    out = {}
    for name, matrix in weights.items():
        order = knobs.row_order(matmat=not name.startswith(recurrent))
        out[name] = padding_ratio(matrix, knobs.lanes, order, knobs.k_split)
    return out
