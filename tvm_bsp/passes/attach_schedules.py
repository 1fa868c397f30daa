"""AttachSchedules: record the target and the kernel knobs the lowering instantiates."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import tvm

from tvm_bsp.kernels.rnn_knobs import RNNKnobs, default_knobs
from tvm_bsp.kernels.rules import CPU_KERNELS, CPU_KNOBS_ATTR
from tvm_bsp.passes.knob_table import knob_table

#: Module attribute holding the target (a ``tvm.target.Target``).
TARGET_ATTR = "tvm_bsp.target"
#: Module attribute holding the knobs: JSON ``{"*": defaults, <weight var>: overrides}``.
KNOBS_ATTR = CPU_KNOBS_ATTR


def AttachSchedules(
    target: tvm.target.Target,
    tuned: Mapping[str, Mapping[str, Any]] | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> tvm.transform.Pass:
    """Attach the target's schedule template configuration to the module.

    The kernels of :mod:`tvm_bsp.kernels` are templates with knobs
    (:class:`tvm_bsp.kernels.rnn_knobs.RNNKnobs`); this pass records which target they are for
    and which knob values each layer uses, as module attributes that
    :func:`~tvm_bsp.passes.LowerRNN` reads.

    Parameters
    ----------
    target : tvm.target.Target
        An ``llvm`` target (x86 or aarch64).
    tuned : mapping, optional
        Tuned records: ``{parameter name of a layer's weight: {knob: value}}`` (a recurrent
        layer is keyed by its ``weight_hh`` name, a dense layer or input projection by its
        weight's name), or ``"*"`` for every layer. Missing knobs keep the defaults.
    defaults : mapping, optional
        Overrides of the target defaults for every layer; they win over tuned records (an
        explicit ``knobs={"threads": 1}`` holds even for a tuned layer; the rule of
        :func:`~tvm_bsp.passes.knob_table.knob_table`, the same on OpenCL).

    Returns
    -------
    tvm.transform.Pass

    Raises
    ------
    NotImplementedError
        For a target without RNN templates (anything but ``llvm``), naming the target.
    """
    if target.kind.name != "llvm":
        raise NotImplementedError(
            f"the RNN sequence kernels have CPU (llvm) templates only; no template for "
            f"target {target}"
        )
    text = knob_table(default_knobs(target), tuned, defaults)

    @tvm.transform.module_pass(opt_level=0, name="AttachSchedules")
    def transform(mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        return mod.with_attr(TARGET_ATTR, target).with_attr(KNOBS_ATTR, text)

    return transform


def knobs_of(mod: tvm.IRModule, weight_var: str) -> RNNKnobs:
    """The knobs attached for the layer whose weight variable is ``weight_var``.

    Without :func:`AttachSchedules` the generic defaults of :class:`RNNKnobs` apply.
    """
    return CPU_KERNELS.attached_knobs(mod, weight_var)
