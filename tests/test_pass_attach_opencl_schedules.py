"""AttachOpenCLSchedules: literal knob tables for an OpenCL target, and the precedence rule it
shares with AttachSchedules (explicit knobs win over tuned records on every target)."""

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

from tvm_bsp.kernels.opencl.knobs import GPU_KNOBS_ATTR, GPURNNKnobs, gpu_knobs_of
from tvm_bsp.passes import AttachOpenCLSchedules, AttachSchedules
from tvm_bsp.passes.attach_schedules import KNOBS_ATTR, TARGET_ATTR

MALI = tvm.target.Target({"kind": "opencl", "device": "mali"}, host="llvm")
ADRENO = tvm.target.Target({"kind": "opencl", "device": "adreno"}, host="llvm")
ARM64 = tvm.target.Target({"kind": "llvm", "mtriple": "aarch64-linux-gnu"})
#: Mali's defaults as the sorted JSON table the pass records (exact: TVM's own sigmoid/tanh)
MALI_KNOBS = json.dumps(
    {
        "*": {
            "chunk": 32,
            "exact": True,
            "frames": 4,
            "panel_rows": 16,
            "vector": 4,
            "work_group": 64,
        }
    }
)


def _module() -> tvm.IRModule:
    rng = np.random.default_rng(0)
    return linear_module(rng.standard_normal((12, 8)).astype(np.float32), np.zeros(12, np.float32))


def test_attaches_the_target_and_the_mali_defaults_and_nothing_else():
    bias = np.arange(12, dtype=np.float32)
    W = np.ones((12, 8), np.float32)

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
        I.module_attrs(
            {
                "tvm_bsp.gpu_knobs": MALI_KNOBS,
                "tvm_bsp.target": T.target({"kind": "opencl", "device": "mali", "host": "llvm"}),
            }
        )

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

    tvm.ir.assert_structural_equal(AttachOpenCLSchedules(MALI)(Before), Expected)


def test_records_the_device_defaults_and_tuned_records():
    mod = _module()
    tuned = {"*": {"chunk": 64}, "head.weight": {"panel_rows": 32, "frames": 2}}
    out = AttachOpenCLSchedules(ADRENO, tuned=tuned)(mod)
    assert out.attrs[TARGET_ATTR].kind.name == "opencl"
    every = {"work_group": 128, "vector": 1, "panel_rows": 32, "chunk": 64, "frames": 4}
    assert json.loads(str(out.attrs[GPU_KNOBS_ATTR])) == {
        "*": {**every, "exact": True},
        "head_weight": {**every, "panel_rows": 32, "frames": 2, "exact": True},
    }
    assert gpu_knobs_of(out, "head_weight") == GPURNNKnobs(**{**every, "frames": 2})
    assert gpu_knobs_of(out, "other") == GPURNNKnobs(**every)
    tvm.ir.assert_structural_equal(out["forward"], mod["forward"])


@pytest.mark.parametrize("attach, target, attr", [
    (AttachOpenCLSchedules, MALI, GPU_KNOBS_ATTR),
    (AttachSchedules, ARM64, KNOBS_ATTR),
])  # fmt: skip
def test_explicit_knobs_win_over_tuned_records_on_every_target(attach, target, attr):
    tuned = {"*": {"frames": 1}, "head.weight": {"frames": 2}}
    out = attach(target, tuned=tuned, defaults={"frames": 8})(_module())
    table = json.loads(str(out.attrs[attr]))
    assert table["*"]["frames"] == 8 and table["head_weight"]["frames"] == 8


def test_refuses_unknown_knobs_and_bad_values_and_cpu_targets():
    with pytest.raises(ValueError, match="unknown OpenCL RNN knobs"):
        AttachOpenCLSchedules(MALI, tuned={"*": {"lanes": 4}})
    with pytest.raises(ValueError, match="chunk=7"):
        AttachOpenCLSchedules(MALI, defaults={"chunk": 7})
    with pytest.raises(ValueError, match="not an OpenCL target"):
        AttachOpenCLSchedules(ARM64)
