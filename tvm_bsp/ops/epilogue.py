"""Fused epilogues: ``act(acc + bias)`` with ``act`` in {none, sigmoid, tanh}.

Two TIR forms of each activation:

* :func:`exact_activation` uses TVM's ``sigmoid`` / ``tanh`` intrinsics (the canonical TE
  compute uses it). On ``llvm`` targets these become scalar ``expf`` calls even inside a
  vectorized loop.
* :func:`fast_activation` is plain arithmetic, so a vectorized loop stays vector code: ``exp``
  by range reduction (``x = n ln2 + r``, ``|r| <= ln2 / 2``), a degree-7 polynomial for
  ``e^r`` (the classic single-precision minimax coefficients) and ``2^n`` assembled in the
  exponent bits; ``tanh`` uses an odd polynomial for ``|x| < 0.625`` (no cancellation near 0)
  and ``1 - 2 / (e^{2x} + 1)`` elsewhere. Both stay within a few float32 ulps of the exact
  functions (tested against numpy). NaN propagates (the exponential returns a NaN input
  as it is instead of clamping it), as in torch.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from tvm import tirx

ACTIVATIONS = ("none", "sigmoid", "tanh")

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
_EXP_CLAMP = 88.0
_TANH_SMALL = 0.625


def check_activation(activation: str | None) -> str:
    """Normalise an activation name (``None`` means ``"none"``); raise on an unknown one."""
    act = "none" if activation is None else activation
    if act not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS} or None, got {activation!r}")
    return act


def _f32(v: float) -> tirx.FloatImm:
    return tirx.const(v, "float32")


def _fast_exp(x: tirx.PrimExpr) -> tirx.PrimExpr:
    # the clamp would make a NaN 88 (ordered compares): return x itself where it is NaN
    xc = tirx.max(tirx.min(x, _f32(_EXP_CLAMP)), _f32(-_EXP_CLAMP))
    n = tirx.floor(xc * _f32(_LOG2E) + _f32(0.5))
    r = xc - n * _f32(_LN2_HI) - n * _f32(_LN2_LO)
    p = _f32(_EXP_POLY[0])
    for c in _EXP_POLY[1:]:
        p = p * r + _f32(c)
    p = p * r * r + r + _f32(1.0)
    bits = tirx.shift_left(tirx.Cast("int32", n) + tirx.const(127, "int32"), 23)
    return tirx.Select(tirx.isnan(x), x, p * tirx.reinterpret("float32", bits))


def _fast_sigmoid(x: tirx.PrimExpr) -> tirx.PrimExpr:
    return _f32(1.0) / (_f32(1.0) + _fast_exp(-x))


def _fast_tanh(x: tirx.PrimExpr) -> tirx.PrimExpr:
    x2 = x * x
    p = _f32(_TANH_POLY[0])
    for c in _TANH_POLY[1:]:
        p = p * x2 + _f32(c)
    small = x + x * x2 * p
    large = _f32(1.0) - _f32(2.0) / (_fast_exp(x * _f32(2.0)) + _f32(1.0))
    return tirx.Select(tirx.abs(x) < _f32(_TANH_SMALL), small, large)


def fast_activation(activation: str | None) -> Callable[[tirx.PrimExpr], tirx.PrimExpr]:
    """Return ``f(expr) -> expr`` computing the activation with vectorizable arithmetic."""
    act = check_activation(activation)
    return {"none": lambda v: v, "sigmoid": _fast_sigmoid, "tanh": _fast_tanh}[act]


def exact_activation(activation: str | None) -> Callable[[tirx.PrimExpr], tirx.PrimExpr]:
    """Return ``f(expr) -> expr`` computing the activation with TVM's intrinsics."""
    act = check_activation(activation)
    return {"none": lambda v: v, "sigmoid": tirx.sigmoid, "tanh": tirx.tanh}[act]


def numpy_epilogue(
    y: np.ndarray, bias: np.ndarray | None = None, activation: str | None = None
) -> np.ndarray:
    """Reference epilogue in numpy: ``act(y + bias)`` (bias broadcast over the last axis)."""
    act = check_activation(activation)
    out = np.asarray(y, np.float64)
    if bias is not None:
        out = out + np.asarray(bias, np.float64)
    if act == "sigmoid":
        out = 1.0 / (1.0 + np.exp(-out))
    elif act == "tanh":
        out = np.tanh(out)
    return out.astype(np.float32)
