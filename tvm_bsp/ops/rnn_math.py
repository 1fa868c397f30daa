"""Vectorizable float32 ``exp``, ``sigmoid`` and ``tanh`` for the gate math.

TVM's ``exp``/``sigmoid``/``tanh`` intrinsics become scalar libm calls on ``llvm`` targets even
in a vectorized loop; these are plain arithmetic, so a vectorized loop stays vector code.

``exp(x)``: clamp to ``[-87, 87]``, ``x = n ln2 + r`` with ``|r| <= ln2 / 2`` (``ln2`` split in
a high and a low part), ``e^r`` by its degree-6 Taylor polynomial (truncation below
``1.3e-7`` relative), ``2^n`` built in the exponent bits. ``sigmoid(x) = 1 / (1 + e^-x)`` and
``tanh(x) = 1 - 2 / (1 + e^2x)`` (one exponential and one division each, no select). Errors
stay within a few ``1e-7`` absolute of the exact functions (tested against numpy), which is
what the recurrences need: their outputs are bounded by 1.

NaN propagates as in torch: the clamp (``max(min(x, 87), -87)``, lowered to ordered compares)
would turn a NaN into 87, so :func:`fast_exp` returns ``x`` itself where ``isnan(x)`` (one
compare and one blend per vector, no measurable step time). ``+-inf`` saturate like the exact
functions: ``e^-inf ~ 1.6e-38``, ``sigmoid(+-inf) = 1 / 0`` (``0`` to ``1.6e-38``) and
``tanh(+-inf) = +-1``.
"""

from __future__ import annotations

from tvm import tirx

_LOG2E = 1.4426950408889634
_LN2_HI = 0.693359375
_LN2_LO = -2.12194440e-4
_CLAMP = 87.0
_TAYLOR = (1.0 / 720, 1.0 / 120, 1.0 / 24, 1.0 / 6, 0.5, 1.0, 1.0)


def _f32(v: float) -> tirx.FloatImm:
    return tirx.const(v, "float32")


def fast_exp(x):
    """``e^x`` as float32 arithmetic (see the module docstring); NaN stays NaN."""
    xc = tirx.max(tirx.min(x, _f32(_CLAMP)), _f32(-_CLAMP))
    n = tirx.floor(xc * _f32(_LOG2E) + _f32(0.5))
    r = xc - n * _f32(_LN2_HI) - n * _f32(_LN2_LO)
    p = _f32(_TAYLOR[0])
    for c in _TAYLOR[1:]:
        p = p * r + _f32(c)
    bits = tirx.shift_left(tirx.Cast("int32", n) + tirx.const(127, "int32"), 23)
    return tirx.Select(tirx.isnan(x), x, p * tirx.reinterpret("float32", bits))


def fast_sigmoid(x):
    """``1 / (1 + e^-x)``."""
    return _f32(1.0) / (_f32(1.0) + fast_exp(-x))


def fast_tanh(x):
    """``1 - 2 / (1 + e^2x)``."""
    return _f32(1.0) - _f32(2.0) / (_f32(1.0) + fast_exp(x * _f32(2.0)))
