"""AttachOpenCLSchedules: literal knob tables for an OpenCL target, and the precedence rule it
shares with AttachSchedules (explicit knobs win over tuned records on every target)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tvm
from test_passes_rnn import _linear_module

from tvm_bsp.passes import AttachOpenCLSchedules, AttachSchedules
from tvm_bsp.passes.attach_schedules import KNOBS_ATTR, TARGET_ATTR
from tvm_bsp.schedules.gpu_rnn import GPU_KNOBS_ATTR, GPURNNKnobs, gpu_knobs_of

MALI = tvm.target.Target({"kind": "opencl", "device": "mali"}, host="llvm")
ADRENO = tvm.target.Target({"kind": "opencl", "device": "adreno"}, host="llvm")
ARM64 = tvm.target.Target({"kind": "llvm", "mtriple": "aarch64-linux-gnu"})


def _module() -> tvm.IRModule:
    rng = np.random.default_rng(0)
    return _linear_module(rng.standard_normal((12, 8)).astype(np.float32), np.zeros(12, np.float32))


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
