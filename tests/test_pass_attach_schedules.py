"""AttachSchedules: the target and the knob table as module attributes (literal Before/Expected)."""

# ruff: noqa: N805  (methods of @I.ir_module classes are Relax functions: no self)

from __future__ import annotations

import json

import numpy as np
import pytest
import tvm
from pass_modules import linear_module
from tvm.script import ir as I
from tvm.script import relax as R
from tvm.script import tirx as T

from tvm_bsp.kernels.rnn_knobs import RNNKnobs
from tvm_bsp.passes import AttachSchedules, knobs_of
from tvm_bsp.passes.attach_schedules import KNOBS_ATTR, TARGET_ATTR

ARM64 = {"kind": "llvm", "mtriple": "aarch64-linux-gnu"}
#: The knob table (sorted JSON) for the aarch64 defaults (8 lanes, 4 frames, 4 threads) with
#: the tuned records ``{"*": {"frames": 2}, "head.weight": {"lanes": 4}}``: 2 frames for every
#: layer, 4 lanes for head.weight's layer, keyed by its variable name
_EVERY = {
    "exact": False,
    "frames": 2,
    "k_split": 2,
    "lanes": 8,
    "min_parallel_macs": 150_000,
    "panel_order": "grouped",
    "threads": 4,
}
ARM64_TUNED_KNOBS = json.dumps({"*": _EVERY, "head_weight": {**_EVERY, "lanes": 4}}, sort_keys=True)


def test_attach_schedules_adds_the_two_attributes_and_nothing_else():
    rng = np.random.default_rng(0)
    W = rng.standard_normal((12, 8)).astype(np.float32)
    bias = np.zeros(12, np.float32)

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
        I.module_attrs({"tvm_bsp.knobs": ARM64_TUNED_KNOBS, "tvm_bsp.target": T.target(ARM64)})

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

    tuned = {"head.weight": {"lanes": 4}, "*": {"frames": 2}}
    after = AttachSchedules(tvm.target.Target(ARM64), tuned=tuned)(Before)
    tvm.ir.assert_structural_equal(after, Expected)


def test_attach_schedules_records_target_and_knobs():
    rng = np.random.default_rng(0)
    mod = linear_module(rng.standard_normal((12, 8)).astype(np.float32), np.zeros(12, np.float32))
    target = tvm.target.Target(ARM64)
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
