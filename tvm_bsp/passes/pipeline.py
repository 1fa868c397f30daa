"""The RNN pass pipeline (sparsify, attach schedules, lower) and its target check."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import tvm

from tvm_bsp.bspc.matrix import BSPCMatrix
from tvm_bsp.kernels.rules import kernels_for
from tvm_bsp.passes.attach_opencl_schedules import AttachOpenCLSchedules
from tvm_bsp.passes.attach_schedules import AttachSchedules
from tvm_bsp.passes.fuse_step import FuseStep
from tvm_bsp.passes.lower_rnn import LowerRNN
from tvm_bsp.passes.sparsify import SparsifyWeights

#: The pass that attaches the knobs of each kernel family.
ATTACH_PASSES = {"cpu": AttachSchedules, "gpu": AttachOpenCLSchedules}


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
    kernels = kernels_for(target)
    if model.proj_size and not kernels.projected_lstm:
        names = [d.name("weight_hr", k) for _, k, d in model.directions()]
        raise NotImplementedError(
            f"LSTM projection ({', '.join(names)}: proj_size={model.proj_size}) is not "
            f"supported on {kernels.name} targets ({target.kind.name}); compile it for a CPU "
            "target"
        )


def rnn_pipeline(
    target: tvm.target.Target,
    bspc: Mapping[str, BSPCMatrix] | None = None,
    tuned: Mapping[str, Mapping[str, Any]] | None = None,
    knobs: Mapping[str, Any] | None = None,
    fuse_step: bool = True,
) -> tvm.transform.Sequential:
    """``SparsifyWeights -> AttachSchedules -> LowerRNN [-> FuseStep]`` as one ``Sequential``.

    Parameters
    ----------
    target : tvm.target.Target
        An ``llvm`` target (CPU kernels) or an ``opencl`` target (the OpenCL kernels of
        :mod:`tvm_bsp.kernels.opencl.sequence`, knobs attached by :func:`AttachOpenCLSchedules`).
    bspc : mapping, optional
        ``{parameter name: BSPCMatrix}``; other weights stay dense.
    tuned : mapping, optional
        Per-layer knob overrides (see :func:`AttachSchedules`).
    knobs : mapping, optional
        Knob overrides for every layer.
    fuse_step : bool
        On CPU targets, make ``step`` one kernel (:func:`~tvm_bsp.passes.FuseStep`; the
        OpenCL kernels keep one launch per step kernel).

    Returns
    -------
    tvm.transform.Sequential
        Apply it to the module of :func:`tvm_bsp.frontend.to_relax`; the result only needs
        ``tvm.compile``.
    """
    family = kernels_for(target).family
    passes = [SparsifyWeights(bspc or {}), ATTACH_PASSES[family](target, tuned, knobs), LowerRNN()]
    if fuse_step and family == "cpu":
        passes.append(FuseStep())
    return tvm.transform.Sequential(passes, name="tvm_bsp.rnn_pipeline")
