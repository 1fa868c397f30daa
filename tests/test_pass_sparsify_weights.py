"""SparsifyWeights: named dense weights -> the ``tvm_bsp.bspc`` form (literal Before/Expected)."""

# ruff: noqa: N805  (methods of @I.ir_module classes are Relax functions: no self)

from __future__ import annotations

import numpy as np
import pytest
import tvm
from pass_modules import linear_module, pruned
from tvm import relax
from tvm.script import ir as I
from tvm.script import relax as R
from tvm.script import tirx as T

from tvm_bsp.bspc import BSPCFormatError, BSPCMatrix
from tvm_bsp.passes import SparsifyWeights, bspc_call, bspc_from_call
from tvm_bsp.passes.ir_utils import call_args


def test_sparsify_replaces_named_weight():
    rng = np.random.default_rng(0)
    W, m = pruned(rng)
    bias = rng.standard_normal(12).astype(np.float32)

    @I.ir_module
    class Before:
        @R.function
        def forward(x: R.Tensor(("n", 8), "float32")) -> R.Tensor(("n", 12), "float32"):
            n = T.int64()
            with R.dataflow():
                head_weight: R.Tensor((12, 8), "float32") = R.const(W)
                head_bias: R.Tensor((12,), "float32") = R.const(bias)
                y = R.call_dps_packed(
                    "tvm_bsp.linear",
                    (x, head_weight, head_bias),
                    out_ty=R.Tensor((n, 12), "float32"),
                )
                R.output(y)
            return y

    @I.ir_module
    class Expected:
        @R.function
        def forward(x: R.Tensor(("n", 8), "float32")) -> R.Tensor(("n", 12), "float32"):
            n = T.int64()
            with R.dataflow():
                # the weight's binding keeps its name; its value is the BSPC form: the six
                # arrays of the matrix, its shape and its block grid (3 x 2)
                head_weight: R.Tensor((12, 8), "float32") = R.call_pure_packed(
                    "tvm_bsp.bspc",
                    R.const(m.values),
                    R.const(m.block_row_ptr),
                    R.const(m.rows),
                    R.const(m.block_col_ptr),
                    R.const(m.cols),
                    R.const(m.reorder),
                    R.shape([12, 8]),
                    R.shape([3, 2]),
                    ty_args=R.Tensor((12, 8), "float32"),
                )
                head_bias: R.Tensor((12,), "float32") = R.const(bias)
                y = R.call_dps_packed(
                    "tvm_bsp.linear",
                    (x, head_weight, head_bias),
                    out_ty=R.Tensor((n, 12), "float32"),
                )
                R.output(y)
            return y

    after = SparsifyWeights({"head.weight": m})(Before)
    tvm.ir.assert_structural_equal(after, Expected)


def test_sparsify_keeps_other_weights_dense():
    rng = np.random.default_rng(0)
    W, _ = pruned(rng)
    before = linear_module(W, np.zeros(12, np.float32))
    tvm.ir.assert_structural_equal(
        SparsifyWeights({})(before), linear_module(W, np.zeros(12, np.float32))
    )


def test_sparsify_leaves_its_input_alone():
    rng = np.random.default_rng(0)
    W, m = pruned(rng)
    before = linear_module(W, np.zeros(12, np.float32))
    first = SparsifyWeights({"head.weight": m})(before)
    tvm.ir.assert_structural_equal(before, linear_module(W, np.zeros(12, np.float32)))
    # so the pass applies again to the same module, with the same result
    tvm.ir.assert_structural_equal(SparsifyWeights({"head.weight": m})(before), first)


def test_sparsify_errors():
    rng = np.random.default_rng(1)
    W, m = pruned(rng)
    mod = linear_module(W, np.zeros(12, np.float32))
    with pytest.raises(ValueError, match="match no weight"):
        SparsifyWeights({"head.weigth": m})(mod)
    other = rng.standard_normal((12, 8)).astype(np.float32)
    dense = linear_module(other, np.zeros(12, np.float32))
    with pytest.raises(ValueError, match="differs from the model"):
        SparsifyWeights({"head.weight": m})(dense)


def test_bspc_form_roundtrip_validates():
    rng = np.random.default_rng(2)
    _, m = pruned(rng)
    back = bspc_from_call(bspc_call(m))
    np.testing.assert_array_equal(back.to_dense(), m.to_dense())
    bad = BSPCMatrix.from_dense(m.to_dense(), None, 3, 2)
    call = bspc_call(bad)
    args = call_args(call)
    cols = args[4].value.numpy().copy()
    cols[0] = 99  # outside its block: the rebuild must refuse it
    args[4] = relax.const(cols)
    tampered = relax.call_pure_packed(call.args[0], *args, ty_args=list(call.ty_args))
    with pytest.raises(BSPCFormatError):
        bspc_from_call(tampered)
