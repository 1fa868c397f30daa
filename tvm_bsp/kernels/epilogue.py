"""Fused epilogues: ``act(acc + bias)`` with ``act`` in {none, relu, tanh, sigmoid}.

One TIR builder per activation, in two forms (:func:`activation_expr`):

* exact: TVM's ``sigmoid`` / ``tanh`` intrinsics (the canonical TE compute uses them; on
  ``llvm`` targets they become scalar ``expf`` calls even inside a vectorized loop; OpenCL's
  ``exp`` on OpenCL targets);
* fast (:func:`fast_activation`): plain arithmetic (:mod:`tvm_bsp.kernels.fast_math`, the same
  functions as the RNN gate math), so a vectorized loop stays vector code. The CPU mat-mat
  kernels use it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from tvm import tirx

from tvm_bsp.kernels.fast_math import activations

#: Epilogue activations of the mat-mat kernels.
ACTIVATIONS = ("none", "relu", "tanh", "sigmoid")

Builder = Callable[[Any], Any]  # PrimExpr -> PrimExpr


def check_activation(activation: str | None) -> str:
    """Normalise an activation name (``None`` means ``"none"``); raise on an unknown one."""
    act = "none" if activation is None else activation
    if act not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS} or None, got {activation!r}")
    return act


def activation_expr(activation: str | None, exact: bool = False) -> Builder:
    """Return ``f(expr) -> expr`` computing the activation (``exact``: TVM's intrinsics)."""
    act = check_activation(activation)
    sigmoid, tanh = activations(exact)
    return {
        "none": lambda v: v,
        "relu": lambda v: tirx.max(v, tirx.const(0.0, "float32")),
        "tanh": tanh,
        "sigmoid": sigmoid,
    }[act]


def fast_activation(activation: str | None) -> Builder:
    """Return ``f(expr) -> expr`` computing the activation with vectorizable arithmetic."""
    return activation_expr(activation, exact=False)


def numpy_epilogue(
    y: np.ndarray, bias: np.ndarray | None = None, activation: str | None = None
) -> np.ndarray:
    """Reference epilogue in numpy: ``act(y + bias)`` (bias broadcast over the last axis)."""
    act = check_activation(activation)
    out = np.asarray(y, np.float64)
    if bias is not None:
        out = out + np.asarray(bias, np.float64)
    if act == "relu":
        out = np.maximum(out, 0.0)
    elif act == "sigmoid":
        out = 1.0 / (1.0 + np.exp(-out))
    elif act == "tanh":
        out = np.tanh(out)
    return out.astype(np.float32)
