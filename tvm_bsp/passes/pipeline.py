"""The RNN pass pipeline: sparsify, attach schedules, lower."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import tvm

from tvm_bsp.bspc.matrix import BSPCMatrix
from tvm_bsp.passes.attach_schedules import TARGET_ATTR, AttachSchedules
from tvm_bsp.passes.ir_utils import var_name
from tvm_bsp.passes.lower_rnn import LowerRNN
from tvm_bsp.passes.sparsify import SparsifyWeights
from tvm_bsp.schedules.gpu_rnn import GPU_KNOBS_ATTR, default_gpu_rnn_knobs, is_opencl


def AttachOpenCLSchedules(
    target: tvm.target.Target,
    tuned: Mapping[str, Mapping[str, Any]] | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> tvm.transform.Pass:
    """The OpenCL counterpart of :func:`~tvm_bsp.passes.AttachSchedules`.

    Records the target and the knobs of :mod:`tvm_bsp.schedules.gpu_rnn` (device defaults,
    then ``defaults``, then ``tuned`` per weight name or ``"*"``) as module attributes that
    :func:`~tvm_bsp.passes.LowerRNN` reads to instantiate the OpenCL kernels.

    Raises
    ------
    ValueError
        For a target that is not OpenCL, or an unknown knob or bad knob value.
    """
    base = default_gpu_rnn_knobs(target).updated(defaults)
    table = {"*": json.loads(base.to_json())}
    for name, overrides in sorted((tuned or {}).items(), key=lambda kv: kv[0] != "*"):
        key = "*" if name == "*" else var_name(name)
        merged = base.updated(table.get(key, {})).updated(overrides)
        table[key] = json.loads(merged.to_json())
        if key == "*":
            base = merged
    text = json.dumps(table, sort_keys=True)

    @tvm.transform.module_pass(opt_level=0, name="AttachOpenCLSchedules")
    def transform(mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        return mod.with_attr(TARGET_ATTR, target).with_attr(GPU_KNOBS_ATTR, text)

    return transform


def check_target(model: Any, target: tvm.target.Target) -> None:
    """Refuse, by name, what ``target``'s kernels cannot run (before any pass runs).

    Parameters
    ----------
    model : tvm_bsp.frontend.model.RNNModel
    target : tvm.target.Target

    Raises
    ------
    NotImplementedError
        For a projected LSTM (``proj_size > 0``) on an OpenCL target.
    """
    if is_opencl(target) and model.proj_size:
        names = [d.name("weight_hr", k) for _, k, d in model.directions()]
        raise NotImplementedError(
            f"LSTM projection ({', '.join(names)}: proj_size={model.proj_size}) is not "
            f"supported on OpenCL targets ({target.kind.name}); compile it for a CPU target"
        )


def rnn_pipeline(
    target: tvm.target.Target,
    bspc: Mapping[str, BSPCMatrix] | None = None,
    tuned: Mapping[str, Mapping[str, Any]] | None = None,
    knobs: Mapping[str, Any] | None = None,
) -> tvm.transform.Sequential:
    """``SparsifyWeights -> AttachSchedules -> LowerRNN`` as one ``Sequential``.

    Parameters
    ----------
    target : tvm.target.Target
        An ``llvm`` target (CPU kernels) or an ``opencl`` target (the OpenCL kernels of
        :mod:`tvm_bsp.ops.rnn_gpu`, knobs attached by :func:`AttachOpenCLSchedules`).
    bspc : mapping, optional
        ``{parameter name: BSPCMatrix}``; other weights stay dense.
    tuned : mapping, optional
        Per-layer knob overrides (see :func:`AttachSchedules`).
    knobs : mapping, optional
        Knob overrides for every layer.

    Returns
    -------
    tvm.transform.Sequential
        Apply it to the module of :func:`tvm_bsp.frontend.to_relax`; the result only needs
        ``tvm.compile``.
    """
    attach = AttachOpenCLSchedules if is_opencl(target) else AttachSchedules
    return tvm.transform.Sequential(
        [SparsifyWeights(bspc or {}), attach(target, tuned, knobs), LowerRNN()],
        name="tvm_bsp.rnn_pipeline",
    )
