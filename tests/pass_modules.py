"""Shared inputs of the pass tests: a pruned weight and a literal one-layer Relax module."""

# ruff: noqa: N805  (methods of @I.ir_module classes are Relax functions: no self)

from __future__ import annotations

import numpy as np
import tvm
from tvm.script import ir as I
from tvm.script import relax as R
from tvm.script import tirx as T

from tvm_bsp.bspc import BSPCMatrix
from tvm_bsp.prune import bsp_mask

HOST = tvm.target.Target("llvm")


def pruned(rng: np.random.Generator, M: int = 12, N: int = 8) -> tuple[np.ndarray, BSPCMatrix]:
    """A ``(M, N)`` weight pruned to a 3 x 2 BSP grid: the dense array and its BSPC matrix."""
    W = rng.standard_normal((M, N)).astype(np.float32)
    mask = bsp_mask(W, 3, 2, 2.0, 1.0)
    return W * mask, BSPCMatrix.from_dense(W * mask, mask, 3, 2)


def linear_module(weight: np.ndarray, bias: np.ndarray) -> tvm.IRModule:
    """``forward(x) = tvm_bsp.linear(x, head.weight, head.bias)`` for a ``(12, 8)`` weight,
    as the importer writes a dense head (weights bound to variables named after them)."""

    @I.ir_module
    class Module:
        @R.function
        def forward(x: R.Tensor(("n", 8), "float32")) -> R.Tensor(("n", 12), "float32"):
            n = T.int64()
            with R.dataflow():
                head_weight: R.Tensor((12, 8), "float32") = R.const(weight)
                head_bias: R.Tensor((12,), "float32") = R.const(bias)
                y = R.call_dps_packed(
                    "tvm_bsp.linear",
                    (x, head_weight, head_bias),
                    out_ty=R.Tensor((n, 12), "float32"),
                )
                R.output(y)
            return y

    return Module
