"""Canonical TE compute definitions (no schedule): BSPC and dense ``Y = act(X W^T + b)``.

Frames are rows: ``x`` is ``(batch, N)``, ``y`` is ``(batch, M)`` with ``M`` rows in the
matrix's original row order, so a single frame is ``batch = 1``.

The BSPC compute reads the packed panel layout (:mod:`tvm_bsp.kernels.layout`): output row ``m``
sits in lane ``row_slot[m] % P`` of panel ``row_slot[m] // P`` and is the dot product of that
lane's values with ``x`` gathered at the panel's columns, a data-dependent reduction of extent
``panel_ptr[p + 1] - panel_ptr[p]``. Shapes, ``P`` and the panel count are compile-time
constants; the index arrays are inputs. The epilogue is a second elementwise stage.
"""

from __future__ import annotations

from tvm import te, tirx

from tvm_bsp.kernels.epilogue import activation_expr
from tvm_bsp.kernels.layout import PanelLayout

#: Inputs of the TE BSPC compute, in PrimFunc argument order (before the output ``y``).
SPMM_COMPUTE_ARGS = ("x", "panel_ptr", "row_slot", "cols", "vals", "bias")
#: Inputs of the TE dense compute, in PrimFunc argument order (before the output ``y``).
DENSE_COMPUTE_ARGS = ("x", "w", "bias")


def bspc_spmm_compute(
    layout: PanelLayout, batch: int, activation: str | None = None
) -> tuple[list[te.Tensor], te.Tensor]:
    """TE compute of ``y = act(x W^T + bias)`` with ``W`` in the panel layout.

    Parameters
    ----------
    layout : PanelLayout
        Gives the shapes (``M``, ``N``, ``P``, panel and column counts).
    batch : int
        Frames per call.
    activation : {None, "none", "sigmoid", "tanh"}
        Applied after the (lane-ordered) ``bias`` add.

    Returns
    -------
    inputs : list of te.Tensor
        Placeholders named as in :data:`SPMM_COMPUTE_ARGS`.
    y : te.Tensor
        ``(batch, M)`` output.
    """
    M, N = layout.shape
    P = layout.panel_rows
    act = activation_expr(activation, exact=True)
    x = te.placeholder((batch, N), "float32", name="x")
    panel_ptr = te.placeholder((layout.npanels + 1,), "int32", name="panel_ptr")
    row_slot = te.placeholder((M,), "int32", name="row_slot")
    cols = te.placeholder((layout.ncols,), "int32", name="cols")
    vals = te.placeholder((layout.ncols * P,), "float32", name="vals")
    bias = te.placeholder((layout.npanels * P,), "float32", name="bias")

    def row_dot(b, m):
        p = tirx.floordiv(row_slot[m], P)
        lane = tirx.floormod(row_slot[m], P)
        e = te.reduce_axis((0, panel_ptr[p + 1] - panel_ptr[p]), name="e")
        start = panel_ptr[p]
        return te.sum(vals[(start + e) * P + lane] * x[b, cols[start + e]], axis=e)

    acc = te.compute((batch, M), row_dot, name="acc")
    y = te.compute((batch, M), lambda b, m: act(acc[b, m] + bias[row_slot[m]]), name="y")
    return [x, panel_ptr, row_slot, cols, vals, bias], y


def dense_compute(
    M: int, N: int, batch: int, activation: str | None = None
) -> tuple[list[te.Tensor], te.Tensor]:
    """TE compute of the dense ``y = act(x W^T + bias)``, ``W`` of shape ``(M, N)``.

    Returns
    -------
    inputs : list of te.Tensor
        ``x (batch, N)``, ``w (M, N)``, ``bias (M,)``.
    y : te.Tensor
        ``(batch, M)`` output.
    """
    act = activation_expr(activation, exact=True)
    x = te.placeholder((batch, N), "float32", name="x")
    w = te.placeholder((M, N), "float32", name="w")
    bias = te.placeholder((M,), "float32", name="bias")
    k = te.reduce_axis((0, N), name="k")
    acc = te.compute((batch, M), lambda b, m: te.sum(x[b, k] * w[m, k], axis=k), name="acc")
    y = te.compute((batch, M), lambda b, m: act(acc[b, m] + bias[m]), name="y")
    return [x, w, bias], y


def to_prim_func(inputs: list[te.Tensor], output: te.Tensor, name: str) -> tirx.PrimFunc:
    """Create the unscheduled PrimFunc ``name(*inputs, output)`` of a TE compute."""
    func = te.create_prim_func([*inputs, output])
    return func.with_attr("global_symbol", name)
