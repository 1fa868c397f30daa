"""Evaluate host-side TIR scalar expressions (launch extents, scalar kernel arguments, loop
bounds) in Python, for the OpenCL runner of :mod:`tvm_bsp.testing.opencl`.

An environment is a list of ``(tvm Var, value)`` pairs, searched from the end so that an
inner binding (a host loop variable, a host ``Bind``) shadows an outer one. Expressions that
refer to host ``Bind`` variables are carried as ``(expr, binds)`` pairs made by
:func:`with_binds`; :func:`eval_host_expr` evaluates the binds first.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any

__all__ = ["HostEnv", "eval_host_expr", "with_binds"]

#: ``(tvm Var, value)`` pairs; later entries shadow earlier ones.
HostEnv = list[tuple[Any, int | float]]

_BINOPS: dict[str, Callable[[Any, Any], Any]] = {
    "Add": operator.add,
    "Sub": operator.sub,
    "Mul": operator.mul,
    "FloorDiv": operator.floordiv,
    "FloorMod": operator.mod,
    "Div": lambda a, b: int(a / b) if isinstance(a, int) and isinstance(b, int) else a / b,
    "Mod": lambda a, b: int(math.fmod(a, b)) if isinstance(a, int) else math.fmod(a, b),
    "Min": min,
    "Max": max,
    "EQ": operator.eq,
    "NE": operator.ne,
    "LT": operator.lt,
    "LE": operator.le,
    "GT": operator.gt,
    "GE": operator.ge,
    "And": lambda a, b: bool(a) and bool(b),
    "Or": lambda a, b: bool(a) or bool(b),
}


def with_binds(expr: Any, binds: list[tuple[Any, Any]]) -> Any:
    """Attach the host ``Bind`` statements in scope to an expression.

    Parameters
    ----------
    expr : tvm.tirx.PrimExpr
        A host-side expression that may use bound variables.
    binds : list of (tvm.tirx.Var, tvm.tirx.PrimExpr)
        The ``Bind`` statements in scope, outermost first.

    Returns
    -------
    tuple or tvm.tirx.PrimExpr
        ``(expr, tuple(binds))`` when there are binds, else ``expr`` itself; either form is
        accepted by :func:`eval_host_expr`.
    """
    return (expr, tuple(binds)) if binds else expr


def eval_host_expr(expr: Any, env: HostEnv) -> Any:
    """Evaluate a host-side TIR scalar expression.

    Parameters
    ----------
    expr : tvm.tirx.PrimExpr or tuple or int or float
        The expression, a :func:`with_binds` pair, or a Python number.
    env : HostEnv
        Values of the free variables (scalar parameters, symbolic shapes, loop variables).

    Returns
    -------
    int or float or bool
        The value.

    Raises
    ------
    NotImplementedError
        For an unbound variable or an expression kind the evaluator does not know.
    """
    from tvm.ir.expr import Var
    from tvm.tirx import expr as E

    if isinstance(expr, tuple):  # (expr, binds) from with_binds
        inner, binds = expr
        local = list(env)
        for v, val in binds:
            local.append((v, eval_host_expr(val, local)))
        return eval_host_expr(inner, local)
    if isinstance(expr, int | float):
        return expr
    if isinstance(expr, E.IntImm):
        return int(expr.value)
    if isinstance(expr, E.FloatImm):
        return float(expr.value)
    if isinstance(expr, Var):
        for v, val in reversed(env):
            if v.same_as(expr):
                return val
        raise NotImplementedError(f"unbound variable {expr} in a host expression")
    kind = type(expr).__name__
    if kind in _BINOPS:
        return _BINOPS[kind](eval_host_expr(expr.a, env), eval_host_expr(expr.b, env))
    if isinstance(expr, E.Not):
        return not eval_host_expr(expr.a, env)
    if isinstance(expr, E.Cast):
        val = eval_host_expr(expr.value, env)
        return float(val) if str(expr.dtype).startswith("float") else int(val)
    if isinstance(expr, E.Select):
        cond = eval_host_expr(expr.condition, env)
        return eval_host_expr(expr.true_value if cond else expr.false_value, env)
    raise NotImplementedError(f"cannot evaluate host expression {expr} ({kind})")
