"""Shared helpers of the passes: placeholder calls, named weights, the BSPC weight form.

A weight's *BSPC form* in Relax is a pure call producing the dense matrix it stands for::

    w: R.Tensor((M, N)) = R.call_pure_packed(
        "tvm_bsp.bspc", values, block_row_ptr, rows, block_col_ptr, cols, reorder,
        R.shape([M, N]), R.shape([row_blocks, col_blocks]), ty_args=R.Tensor((M, N)))

with the arrays as constants (:func:`bspc_call`). No runtime function of that name exists: the
lowering consumes it (:func:`bspc_from_call` rebuilds, and so validates, the matrix).
"""

from __future__ import annotations

import re

import numpy as np
from tvm import ir, relax

from tvm_bsp.bspc.matrix import BSPCMatrix
from tvm_bsp.frontend.relax_import import LINEAR_OP, RNN_OPS

#: Extern name of the BSPC weight form.
BSPC_OP = "tvm_bsp.bspc"
_BSPC_ARRAYS = ("values", "block_row_ptr", "rows", "block_col_ptr", "cols", "reorder")


def var_name(param_name: str) -> str:
    """The Relax variable name a parameter name becomes (non-word characters -> ``_``)."""
    return re.sub(r"\W", "_", param_name)


def extern_name(expr: relax.Expr) -> str | None:
    """``global_symbol`` of a ``call_dps_packed`` / ``call_pure_packed`` call, else ``None``."""
    if not isinstance(expr, relax.Call) or not isinstance(expr.op, ir.Op):
        return None
    if expr.op.name not in ("relax.call_dps_packed", "relax.call_pure_packed"):
        return None
    callee = expr.args[0]
    return str(callee.global_symbol) if isinstance(callee, relax.ExternFunc) else None


def is_placeholder(expr: relax.Expr) -> bool:
    """True for a recurrent-layer or dense-layer placeholder call."""
    return extern_name(expr) in (*RNN_OPS.values(), LINEAR_OP)


def call_args(call: relax.Call) -> list[relax.Expr]:
    """Arguments of a packed call (``call_dps_packed`` packs them in a tuple)."""
    if call.op.name == "relax.call_dps_packed":
        return list(call.args[1].fields)
    return list(call.args[1:])


def is_constant(expr: relax.Expr) -> bool:
    """True for a Relax constant."""
    return isinstance(expr, ir.expr.Constant) and hasattr(expr, "value")


def constant_array(expr: relax.Expr) -> np.ndarray:
    """The numpy value of a constant."""
    return expr.value.numpy()


def bspc_call(matrix: BSPCMatrix) -> relax.Call:
    """The BSPC form of a weight (see the module docstring)."""
    M, N = matrix.shape
    arrays = [relax.const(np.ascontiguousarray(getattr(matrix, n))) for n in _BSPC_ARRAYS]
    return relax.call_pure_packed(
        BSPC_OP,
        *arrays,
        relax.ShapeExpr([M, N]),
        relax.ShapeExpr([matrix.row_blocks, matrix.col_blocks]),
        ty_args=relax.TensorType([M, N], str(matrix.values.dtype)),
    )


def bspc_from_call(call: relax.Call) -> BSPCMatrix:
    """Rebuild (and validate) the matrix of a BSPC form."""
    args = call_args(call)
    arrays = dict(zip(_BSPC_ARRAYS, (constant_array(a) for a in args[:6]), strict=True))
    shape = tuple(int(v) for v in args[6].values)
    row_blocks, col_blocks = (int(v) for v in args[7].values)
    return BSPCMatrix(
        shape,
        row_blocks,
        col_blocks,
        arrays["block_row_ptr"],
        arrays["rows"],
        arrays["block_col_ptr"],
        arrays["cols"],
        arrays["values"],
        arrays["reorder"],
    )
