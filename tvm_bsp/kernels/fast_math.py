"""Vectorizable float32 ``exp``, ``sigmoid`` and ``tanh``: the one fast-math of every kernel.

TVM's ``exp`` / ``sigmoid`` / ``tanh`` intrinsics become scalar libm calls on ``llvm`` targets
even in a vectorized loop; these are plain arithmetic, so a vectorized loop stays vector code.
The RNN gate math (:mod:`tvm_bsp.kernels.cell_math`) and the SpMM epilogues
(:mod:`tvm_bsp.kernels.epilogue`) both use them.

``exp(x)``: clamp to ``[-88, 88]``, ``x = n ln2 + r`` with ``|r| <= ln2 / 2`` (``ln2`` split in
a high and a low part), ``e^r`` by a degree-7 polynomial (the classic single-precision minimax
coefficients), ``2^n`` built in the exponent bits. ``sigmoid(x) = 1 / (1 + e^-x)``; ``tanh``
uses an odd polynomial for ``|x| < 0.625`` (no cancellation near 0) and
``1 - 2 / (e^2x + 1)`` elsewhere. All stay within a few float32 ulps of the exact functions
(tested against numpy).

NaN propagates as in torch: the clamp (``max(min(x, 88), -88)``, lowered to ordered compares)
would turn a NaN into 88, so :func:`fast_exp` returns ``x`` itself where ``isnan(x)``.
``+-inf`` saturate like the exact functions: ``e^-inf = 0``, ``sigmoid(+-inf)`` is 1 / 0 and
``tanh(+-inf) = +-1``.
"""

from __future__ import annotations

from collections.abc import Callable

from tvm import tirx

_LOG2E = 1.44269504088896341
_LN2_HI = 0.693359375
_LN2_LO = -2.12194440e-4
_EXP_POLY = (
    1.9875691500e-4,
    1.3981999507e-3,
    8.3334519073e-3,
    4.1665795894e-2,
    1.6666665459e-1,
    5.0000001201e-1,
)
_TANH_POLY = (
    -5.70498872745e-3,
    2.06390887954e-2,
    -5.37397155531e-2,
    1.33314422036e-1,
    -3.33332819422e-1,
)
EXP_CLAMP = 88.0
"""``fast_exp`` clamps its argument to ``[-EXP_CLAMP, EXP_CLAMP]`` (NaN excepted)."""
_TANH_SMALL = 0.625


def _f32(v: float) -> tirx.FloatImm:
    return tirx.const(v, "float32")


def fast_exp(x: tirx.PrimExpr) -> tirx.PrimExpr:
    """``e^x`` as float32 arithmetic (see the module docstring); NaN stays NaN."""
    xc = tirx.max(tirx.min(x, _f32(EXP_CLAMP)), _f32(-EXP_CLAMP))
    n = tirx.floor(xc * _f32(_LOG2E) + _f32(0.5))
    r = xc - n * _f32(_LN2_HI) - n * _f32(_LN2_LO)
    p = _f32(_EXP_POLY[0])
    for c in _EXP_POLY[1:]:
        p = p * r + _f32(c)
    p = p * r * r + r + _f32(1.0)
    bits = tirx.shift_left(tirx.Cast("int32", n) + tirx.const(127, "int32"), 23)
    return tirx.Select(tirx.isnan(x), x, p * tirx.reinterpret("float32", bits))


def fast_sigmoid(x: tirx.PrimExpr) -> tirx.PrimExpr:
    """``1 / (1 + e^-x)``."""
    return _f32(1.0) / (_f32(1.0) + fast_exp(-x))


def fast_tanh(x: tirx.PrimExpr) -> tirx.PrimExpr:
    """``tanh(x)``: odd polynomial near 0, ``1 - 2 / (e^2x + 1)`` elsewhere."""
    x2 = x * x
    p = _f32(_TANH_POLY[0])
    for c in _TANH_POLY[1:]:
        p = p * x2 + _f32(c)
    small = x + x * x2 * p
    large = _f32(1.0) - _f32(2.0) / (fast_exp(x * _f32(2.0)) + _f32(1.0))
    return tirx.Select(tirx.abs(x) < _f32(_TANH_SMALL), small, large)


def activations(exact: bool = False) -> tuple[Callable, Callable]:
    """``(sigmoid, tanh)`` expression builders: the fast forms above, or TVM's intrinsics with
    ``exact=True``."""
    if exact:
        return tirx.sigmoid, tirx.tanh
    return fast_sigmoid, fast_tanh
