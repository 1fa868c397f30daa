"""The Relax passes: SparsifyWeights, AttachSchedules, LowerRNN (Before/Expected + numeric)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import tvm
from torch import nn
from tvm import relax, tirx

from tvm_bsp.bspc import BSPCFormatError, BSPCMatrix
from tvm_bsp.frontend import LINEAR_OP, from_torch, reference_forward, to_relax
from tvm_bsp.ops.rnn_kernels import linear_kernel, sequence_kernel
from tvm_bsp.ops.rnn_knobs import RNNKnobs
from tvm_bsp.passes import (
    AttachSchedules,
    LowerRNN,
    SparsifyWeights,
    bspc_call,
    bspc_from_call,
    knobs_of,
    rnn_pipeline,
)
from tvm_bsp.passes.attach_schedules import KNOBS_ATTR, TARGET_ATTR
from tvm_bsp.passes.ir_utils import call_args
from tvm_bsp.prune import bsp_mask

HOST = tvm.target.Target("llvm")


def _pruned(rng, M=12, N=8):
    W = rng.standard_normal((M, N)).astype(np.float32)
    mask = bsp_mask(W, 3, 2, 2.0, 1.0)
    return W * mask, BSPCMatrix.from_dense(W * mask, mask, 3, 2)


def _linear_module(weight_value, bias) -> tvm.IRModule:
    """``forward(x) = tvm_bsp.linear(x, head.weight, head.bias)``; ``weight_value`` is bound
    to ``head.weight`` (a dense array, or an already built expression)."""
    M, N = bias.shape[0], 8
    bb = relax.BlockBuilder()
    n = tirx.Var("n", "int64")
    x = relax.Var("x", relax.TensorType([n, N], "float32"))
    with bb.function("forward", [x]):
        with bb.dataflow():
            value = weight_value
            if isinstance(value, np.ndarray):
                value = relax.const(value)
            w = bb.emit(value, name_hint="head.weight")
            b = bb.emit(relax.const(bias), name_hint="head.bias")
            out_ty = relax.TensorType([n, M], "float32")
            y = bb.emit(relax.call_dps_packed(LINEAR_OP, [x, w, b], out_ty))
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    return bb.get()


# ---------------------------------------------------------------------- SparsifyWeights
def test_sparsify_replaces_named_weight():
    rng = np.random.default_rng(0)
    W, m = _pruned(rng)
    bias = rng.standard_normal(12).astype(np.float32)
    before = _linear_module(W, bias)
    expected = _linear_module(bspc_call(m), bias)
    after = SparsifyWeights({"head.weight": m})(before)
    tvm.ir.assert_structural_equal(after, expected)


def test_sparsify_keeps_other_weights_dense():
    rng = np.random.default_rng(0)
    W, _ = _pruned(rng)
    before = _linear_module(W, np.zeros(12, np.float32))
    tvm.ir.assert_structural_equal(SparsifyWeights({})(before), before)


def test_sparsify_errors():
    rng = np.random.default_rng(1)
    W, m = _pruned(rng)
    mod = _linear_module(W, np.zeros(12, np.float32))
    with pytest.raises(ValueError, match="match no weight"):
        SparsifyWeights({"head.weigth": m})(mod)
    other = rng.standard_normal((12, 8)).astype(np.float32)
    dense = _linear_module(other, np.zeros(12, np.float32))
    with pytest.raises(ValueError, match="differs from the model"):
        SparsifyWeights({"head.weight": m})(dense)


def test_bspc_form_roundtrip_validates():
    rng = np.random.default_rng(2)
    _, m = _pruned(rng)
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


# ---------------------------------------------------------------------- AttachSchedules
def test_attach_schedules_records_target_and_knobs():
    rng = np.random.default_rng(0)
    mod = _linear_module(rng.standard_normal((12, 8)).astype(np.float32), np.zeros(12, np.float32))
    target = tvm.target.Target({"kind": "llvm", "mtriple": "aarch64-linux-gnu"})
    out = AttachSchedules(target, tuned={"head.weight": {"lanes": 4}, "*": {"frames": 2}})(mod)
    assert out.attrs[TARGET_ATTR].kind.name == "llvm"
    table = json.loads(str(out.attrs[KNOBS_ATTR]))
    assert table["*"]["lanes"] == 8 and table["*"]["frames"] == 2
    assert knobs_of(out, "head_weight") == RNNKnobs(lanes=4, frames=2, threads=4)
    assert knobs_of(mod, "head_weight") == RNNKnobs()  # no attributes: generic defaults
    tvm.ir.assert_structural_equal(out["forward"], mod["forward"])


def test_attach_schedules_refuses_opencl():
    target = tvm.target.Target({"kind": "opencl", "device": "mali"}, host="llvm")
    with pytest.raises(NotImplementedError, match="opencl"):
        AttachSchedules(target)


# ---------------------------------------------------------------------- LowerRNN
def _expected_lowered_linear(weight, bias, knobs: RNNKnobs) -> tvm.IRModule:
    M, N = bias.shape[0], 8
    func, consts, _ = linear_kernel(weight, bias, knobs)
    bb = relax.BlockBuilder()
    n = tirx.Var("n", "int64")
    x = relax.Var("x", relax.TensorType([n, N], "float32"))
    with bb.function("forward", [x]):
        with bb.dataflow():
            gv = bb.add_func(func, "linear")
            y = bb.emit(
                relax.call_tir(
                    gv, [x, *(relax.const(c) for c in consts)], relax.TensorType([n, M], "float32")
                )
            )
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    return bb.get()


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "bspc"])
def test_lower_linear_structure(sparse):
    rng = np.random.default_rng(3)
    W, m = _pruned(rng)
    bias = rng.standard_normal(12).astype(np.float32)
    before = _linear_module(bspc_call(m) if sparse else W, bias)
    knobs = RNNKnobs(lanes=4, frames=2)
    lowered = LowerRNN()(AttachSchedules(HOST, defaults=knobs.__dict__)(before))
    expected = _expected_lowered_linear(m if sparse else W, bias, knobs)
    tvm.ir.assert_structural_equal(
        lowered.without_attr(TARGET_ATTR).without_attr(KNOBS_ATTR), expected
    )


def test_lower_gru_layer_structure():
    torch.manual_seed(0)
    desc = from_torch(nn.GRU(5, 6))
    layer = desc.layers[0]
    lowered = LowerRNN()(to_relax(desc))
    calls: list[str] = []
    relax.analysis.post_order_visit(
        lowered["forward"].body,
        lambda e: (
            calls.append(e.args[0].name_hint)
            if isinstance(e, relax.Call) and getattr(e.op, "name", "") == "relax.call_tir"
            else None
        ),
    )
    assert calls == ["input_projection", "gru_sequence"]
    seq = sequence_kernel("gru", layer.weight_hh, layer.bias_ih, layer.bias_hh, 1.0, RNNKnobs())
    tvm.ir.assert_structural_equal(lowered["gru_sequence"], seq.func)
    assert "weight_hh_l0" not in lowered["forward"].script(show_meta=False)  # dead after packing


@pytest.mark.parametrize("cell", ["gru", "kaldi_gru", "lstm"])
def test_pipeline_numeric(cell):
    from tvm_bsp.frontend import KaldiGRU

    torch.manual_seed(4)
    rnn = {"gru": nn.GRU(5, 9, 2), "lstm": nn.LSTM(5, 9, 2), "kaldi_gru": KaldiGRU(5, 9, 2)}[cell]
    desc = from_torch(rnn)
    name = "weight_hh_l1"
    U = desc.layers[1].weight_hh
    mask = bsp_mask(U, 3, 3, 2.0, 1.0)
    desc.layers[1].weight_hh = U * mask
    m = BSPCMatrix.from_dense(U * mask, mask, 3, 3)
    mod = rnn_pipeline(HOST, {name: m}, knobs={"lanes": 4})(to_relax(desc))
    vm = relax.VirtualMachine(tvm.compile(mod, HOST), tvm.cpu())
    x = np.random.default_rng(0).standard_normal((4, 2, 5)).astype(np.float32)
    state = np.zeros(desc.state_shape(2), np.float32)
    y, s = vm["forward"](tvm.runtime.tensor(x), tvm.runtime.tensor(state))
    y_ref, s_ref = reference_forward(desc, x, state)
    np.testing.assert_allclose(y.numpy(), y_ref, atol=1e-5)
    np.testing.assert_allclose(s.numpy(), s_ref, atol=1e-5)
