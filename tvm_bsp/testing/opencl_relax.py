"""Run a lowered Relax function whose ``call_tir`` kernels are OpenCL, on POCL.

A small interpreter for the modules :func:`tvm_bsp.passes.rnn_pipeline` produces: every
``call_tir`` runs through :func:`tvm_bsp.testing.opencl_program.build_opencl_program` (TVM's
OpenCL code, host side re-created); the data movement between kernels (``reshape``, ``stack``,
``flip``, ``concat``, tuples) is evaluated with numpy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tvm_bsp.testing.opencl_host_expr import HostEnv, eval_host_expr
from tvm_bsp.testing.opencl_program import build_opencl_program

__all__ = ["run_relax_function"]


def run_relax_function(
    mod: Any,
    func_name: str,
    args: Sequence[np.ndarray],
    target: Any,
    *,
    programs: dict | None = None,
) -> Any:
    """Run a lowered Relax function whose ``call_tir`` kernels are OpenCL, on POCL.

    A small interpreter for the modules :func:`tvm_bsp.passes.rnn_pipeline` produces: it walks
    the function's bindings; every ``call_tir`` runs its PrimFunc through
    :func:`build_opencl_program` (TVM's OpenCL code, host side re-created), ``reshape`` /
    ``stack`` / ``flip`` / ``concat`` / tuples are evaluated with numpy. Anything else raises
    :class:`NotImplementedError`.

    Parameters
    ----------
    mod : tvm.IRModule
        The lowered Relax module (before ``tvm.compile``).
    func_name : str
        The Relax function to run (e.g. ``"forward"``, ``"step"``).
    args : sequence of numpy.ndarray
        One array per parameter of the function.
    target : tvm.target.Target
        OpenCL target whose host this machine can compile for (e.g.
        ``resolve_target("opencl-mali", host="host")``).
    programs : dict, optional
        Cache of built programs by kernel name, shared across calls.

    Returns
    -------
    numpy.ndarray or tuple
        The function's result (tuples as Python tuples).
    """
    import tvm
    from tvm import relax

    func = mod[func_name]
    if len(args) != len(func.params):
        raise ValueError(f"{func_name} takes {len(func.params)} arguments, got {len(args)}")
    programs = {} if programs is None else programs
    values: list[tuple[Any, Any]] = []
    env: HostEnv = []

    def shape_of(ty: Any) -> tuple[int, ...]:
        return tuple(int(eval_host_expr(d, env)) for d in ty.shape)

    for p, a in zip(func.params, args, strict=True):
        a = np.ascontiguousarray(a, np.float32)
        dims = p.ty.shape
        if len(dims) != a.ndim:
            raise ValueError(f"parameter {p.name}: rank {a.ndim} != {len(dims)}")
        for d, n in zip(dims, a.shape, strict=True):
            if isinstance(d, tvm.ir.expr.Var) and not any(d.same_as(v) for v, _ in env):
                env.append((d, int(n)))
        if shape_of(p.ty) != a.shape:
            raise ValueError(f"parameter {p.name}: shape {a.shape}, expected {shape_of(p.ty)}")
        values.append((p, a))

    def value(expr: Any) -> Any:
        if isinstance(expr, relax.Var):
            for v, val in values:
                if v.same_as(expr):
                    return val
            raise NotImplementedError(f"unbound Relax variable {expr.name}")
        if isinstance(expr, tvm.ir.expr.Constant):
            return expr.value.numpy()
        if isinstance(expr, relax.Tuple):
            return tuple(value(f) for f in expr.fields)
        if isinstance(expr, relax.TupleGetItem):
            return value(expr.tuple_value)[expr.index]
        if isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op):
            return call(expr)
        raise NotImplementedError(f"Relax expression {type(expr).__name__} is not supported")

    def call(expr: Any) -> Any:
        name = expr.op.name
        if name == "relax.call_tir":
            gv, operands = expr.args[0], value(expr.args[1])
            key = gv.name_hint
            if key not in programs:
                prim = mod[gv].with_attr("global_symbol", "main")
                programs[key] = build_opencl_program(prim, target)
            outs_ty = expr.ty_args[0]
            fields = list(outs_ty.fields) if hasattr(outs_ty, "fields") else [outs_ty]
            outs = [np.full(shape_of(t), np.nan, np.float32) for t in fields]
            first = len(operands)
            res = programs[key].run([*operands, *outs], list(range(first, first + len(outs))))
            return tuple(res) if hasattr(outs_ty, "fields") else res[0]
        if name == "relax.reshape":
            return value(expr.args[0]).reshape(shape_of(expr.ty))
        if name == "relax.stack":
            return np.stack(value(expr.args[0]), axis=int(expr.attrs.axis))
        if name == "relax.flip":  # reverse directions of bidirectional layers
            return np.ascontiguousarray(np.flip(value(expr.args[0]), int(expr.attrs.axis)))
        if name == "relax.concat":
            return np.concatenate(value(expr.args[0]), axis=int(expr.attrs.axis))
        raise NotImplementedError(f"Relax operator {name} is not supported by the runner")

    body = func.body
    for block in body.blocks:
        for binding in block.bindings:
            if not isinstance(binding, relax.VarBinding):
                raise NotImplementedError(f"binding {type(binding).__name__} is not supported")
            values.append((binding.var, value(binding.value)))
    return value(body.body)
