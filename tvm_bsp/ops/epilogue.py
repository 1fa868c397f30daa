"""Fused epilogues: ``act(acc + bias)`` with ``act`` in {none, sigmoid, tanh}.

Two TIR forms of each activation:

* :func:`exact_activation` uses TVM's ``sigmoid`` / ``tanh`` intrinsics (the canonical TE
  compute uses it). On ``llvm`` targets these become scalar ``expf`` calls even inside a
  vectorized loop.
* :func:`fast_activation` is plain arithmetic (:mod:`tvm_bsp.ops.fast_math`, the same
  functions as the RNN gate math), so a vectorized loop stays vector code.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from tvm import tirx

from tvm_bsp.ops.fast_math import fast_sigmoid, fast_tanh

ACTIVATIONS = ("none", "sigmoid", "tanh")


def check_activation(activation: str | None) -> str:
    """Normalise an activation name (``None`` means ``"none"``); raise on an unknown one."""
    act = "none" if activation is None else activation
    if act not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS} or None, got {activation!r}")
    return act


def fast_activation(activation: str | None) -> Callable[[tirx.PrimExpr], tirx.PrimExpr]:
    """Return ``f(expr) -> expr`` computing the activation with vectorizable arithmetic."""
    act = check_activation(activation)
    return {"none": lambda v: v, "sigmoid": fast_sigmoid, "tanh": fast_tanh}[act]


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
