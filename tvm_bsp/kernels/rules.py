"""Which kernels serve a target: one rule class a target, in the style of TVM's dlight.

A rule's :meth:`KernelRule.apply` returns the :class:`TargetKernels` of a target it serves and
``None`` for any other; :func:`kernels_for` asks the rules of :data:`RULES` in order and takes
the first answer. Everything that differs between targets (the knob class and the module
attribute that carries a layer's knobs, the mat-mat and sequence kernel builders, what the
sequence kernels support) is a field of the answer, so the lowering and the mat-mat
templates do not test target kinds themselves. A new target is a new rule.

=================  ==========  ==========================================================
rule               serves      kernels
=================  ==========  ==========================================================
:class:`CPURule`     ``llvm``    :mod:`tvm_bsp.kernels.cpu` (x86, aarch64 NEON)
:class:`OpenCLRule`  ``opencl``  :mod:`tvm_bsp.kernels.opencl` (Mali, Adreno)
=================  ==========  ==========================================================
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import tvm

from tvm_bsp.kernels.cpu.rnn import linear_kernel, sequence_kernel
from tvm_bsp.kernels.opencl.knobs import GPU_KNOBS_ATTR, GPURNNKnobs, default_gpu_rnn_knobs
from tvm_bsp.kernels.opencl.rnn import gpu_linear_kernel, gpu_sequence_kernel
from tvm_bsp.kernels.rnn_knobs import RNNKnobs, default_knobs

#: Module attribute holding the CPU knobs: JSON ``{"*": defaults, <weight var>: overrides}``.
CPU_KNOBS_ATTR = "tvm_bsp.knobs"


@dataclass(frozen=True)
class TargetKernels:
    """The kernels of one target family and how a layer's knobs reach them.

    Attributes
    ----------
    family : str
        ``"cpu"`` or ``"gpu"``: the name records and tuning tables use.
    name : str
        The family as messages name it (``"CPU (llvm)"``, ``"OpenCL"``).
    knobs_type : type
        The knob class (:class:`~tvm_bsp.kernels.rnn_knobs.RNNKnobs`,
        :class:`~tvm_bsp.kernels.opencl.knobs.GPURNNKnobs`).
    knobs_attr : str
        The module attribute in which the attach pass records each layer's knobs.
    default_knobs : callable
        ``target -> knobs``: the target's defaults.
    linear_kernel : callable
        ``(weight, bias, knobs[, activation]) -> (func, consts, rows)``: the mat-mat kernel.
    sequence_kernel : callable
        ``(LayerWeights, knobs) -> SequenceKernel``: a recurrent layer's time loop.
    projected_lstm : bool
        Whether the sequence kernels take an LSTM projection (``proj_size > 0``).
    """

    family: str
    name: str
    knobs_type: type
    knobs_attr: str
    default_knobs: Callable[[tvm.target.Target], Any]
    linear_kernel: Callable[..., tuple]
    sequence_kernel: Callable[..., Any]
    projected_lstm: bool

    def attached_knobs(self, mod: tvm.IRModule, weight_var: str) -> Any:
        """The knobs attached for the layer whose weight variable is ``weight_var``.

        Without attached knobs (no attach pass ran) the knob class's generic defaults apply.
        """
        attrs = mod.attrs
        if attrs is None or self.knobs_attr not in attrs:
            return self.knobs_type()
        table = json.loads(str(attrs[self.knobs_attr]))
        return self.knobs_type(**table.get(weight_var, table["*"]))


#: The CPU kernels (:mod:`tvm_bsp.kernels.cpu`).
CPU_KERNELS = TargetKernels("cpu", "CPU (llvm)", RNNKnobs, CPU_KNOBS_ATTR, default_knobs,
                            linear_kernel, sequence_kernel, projected_lstm=True)  # fmt: skip
#: The OpenCL kernels (:mod:`tvm_bsp.kernels.opencl`); no LSTM projection.
OPENCL_KERNELS = TargetKernels("gpu", "OpenCL", GPURNNKnobs, GPU_KNOBS_ATTR,
                               default_gpu_rnn_knobs, gpu_linear_kernel, gpu_sequence_kernel,
                               projected_lstm=False)  # fmt: skip


class KernelRule(ABC):
    """A rule that knows the kernels of the targets it serves."""

    @abstractmethod
    def apply(self, target: tvm.target.Target) -> TargetKernels | None:
        """The kernels for ``target``, or ``None`` when this rule does not serve it."""


class CPURule(KernelRule):
    """``llvm`` targets (x86 hosts, aarch64 phones): :mod:`tvm_bsp.kernels.cpu`."""

    def apply(self, target: tvm.target.Target) -> TargetKernels | None:
        return CPU_KERNELS if target.kind.name == "llvm" else None


class OpenCLRule(KernelRule):
    """``opencl`` targets (mobile GPUs): :mod:`tvm_bsp.kernels.opencl`."""

    def apply(self, target: tvm.target.Target) -> TargetKernels | None:
        return OPENCL_KERNELS if target.kind.name == "opencl" else None


#: The rules :func:`kernels_for` asks, in order.
RULES: tuple[KernelRule, ...] = (CPURule(), OpenCLRule())


def kernels_for(target: tvm.target.Target | None) -> TargetKernels:
    """The kernels of the first rule of :data:`RULES` that serves ``target``.

    Parameters
    ----------
    target : tvm.target.Target or None
        ``None`` is a CPU target (the lowering of a module no attach pass has seen).

    Returns
    -------
    TargetKernels

    Raises
    ------
    NotImplementedError
        For a target no rule serves, naming it.
    """
    if target is None:
        return CPU_KERNELS
    for rule in RULES:
        found = rule.apply(target)
        if found is not None:
            return found
    served = ", ".join(type(rule).__name__ for rule in RULES)
    raise NotImplementedError(
        f"no kernels for target kind {target.kind.name!r} ({target}); rules: {served} "
        "(llvm and opencl targets)"
    )
