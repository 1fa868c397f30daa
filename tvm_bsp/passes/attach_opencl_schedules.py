"""AttachOpenCLSchedules: record an OpenCL target and the knobs of its RNN kernels."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import tvm

from tvm_bsp.kernels.opencl.knobs import GPU_KNOBS_ATTR, default_gpu_rnn_knobs
from tvm_bsp.passes.attach_schedules import TARGET_ATTR
from tvm_bsp.passes.knob_table import knob_table


def AttachOpenCLSchedules(
    target: tvm.target.Target,
    tuned: Mapping[str, Mapping[str, Any]] | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> tvm.transform.Pass:
    """The OpenCL counterpart of :func:`~tvm_bsp.passes.AttachSchedules`.

    Records the target and the knobs of :mod:`tvm_bsp.kernels.opencl.knobs` (device defaults,
    then ``tuned`` per weight name or ``"*"``, then ``defaults``, which win as on the CPU:
    :func:`~tvm_bsp.passes.knob_table.knob_table`) as module attributes that
    :func:`~tvm_bsp.passes.LowerRNN` reads to instantiate the OpenCL kernels.

    Raises
    ------
    ValueError
        For a target that is not OpenCL, or an unknown knob or bad knob value.
    """
    text = knob_table(default_gpu_rnn_knobs(target), tuned, defaults)

    @tvm.transform.module_pass(opt_level=0, name="AttachOpenCLSchedules")
    def transform(mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        return mod.with_attr(TARGET_ATTR, target).with_attr(GPU_KNOBS_ATTR, text)

    return transform
