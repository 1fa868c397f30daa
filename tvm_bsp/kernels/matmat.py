"""The mat-mat kernel of each target as a template: the knobs a tuner samples, configs, kernels.

One kernel per target computes every product ``y = act(x W^T + b)``: it is what
``compile_model`` ships for input projections and dense heads, and what
:func:`tvm_bsp.kernels.build_spmm` / :func:`~tvm_bsp.kernels.build_dense` compile, ``bench spmv``
times and ``tune_spmm`` tunes. A template instantiates it through the same functions the Relax
lowering calls (:func:`tvm_bsp.kernels.cpu.rnn.linear_kernel`,
:func:`tvm_bsp.kernels.opencl.rnn.gpu_linear_kernel`), so a config is a set of that
lowering's layer knobs (``compile_model(knobs=...)`` takes it as is):

==========  ===========================================  =====================================
target      kernel                                       knobs (a config's keys)
==========  ===========================================  =====================================
``llvm``    :func:`~tvm_bsp.kernels.cpu.linear.bspc_linear`,  ``lanes``, ``frames``, ``k_split``,
            :func:`~tvm_bsp.kernels.cpu.linear.dense_linear`  ``threads``, ``min_parallel_macs``
                                                         (:class:`~.rnn_knobs.RNNKnobs`)
``opencl``  :func:`~tvm_bsp.kernels.opencl.linear.gpu_panel_linear`  ``panel_rows``, ``chunk``,
            (dense weights as one-block BSPC)            ``frames``, ``exact``
                                                         (:class:`GPURNNKnobs`)
==========  ===========================================  =====================================

Defaults are the lowering's: the target's knobs, and for a BSPC weight on the CPU the panel
height :func:`~tvm_bsp.kernels.rnn_knobs.suggest_lanes` picks for its row stripes (what
``compile_model`` does for an untuned layer). ``frames`` only shapes batches of several
frames, so for one frame it has a single choice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import tvm

from tvm_bsp.bspc.matrix import BSPCMatrix
from tvm_bsp.kernels.cpu.rnn import LINEAR_PANEL_ARRAYS
from tvm_bsp.kernels.knobs import Knob, resolve_config
from tvm_bsp.kernels.layer_weights import Weight
from tvm_bsp.kernels.opencl.knobs import GPU_RNN_KNOBS, GPURNNKnobs, default_gpu_rnn_knobs
from tvm_bsp.kernels.opencl.rnn import GPU_PANEL_ARRAYS
from tvm_bsp.kernels.rnn_knobs import TUNABLE_CHOICES, RNNKnobs, default_knobs, suggest_lanes
from tvm_bsp.kernels.rules import TargetKernels, kernels_for
from tvm_bsp.kernels.targets import host_target

#: PrimFunc parameters of the CPU BSPC kernel (the output ``y`` last).
CPU_SPMM_ARGS = ("x", *LINEAR_PANEL_ARRAYS, "bias", "y")
#: PrimFunc parameters of the CPU dense kernel.
DENSE_ARGS = ("x", "w", "bias", "y")
#: PrimFunc parameters of the OpenCL kernel (BSPC and dense weights alike).
GPU_ARGS = ("x", *GPU_PANEL_ARRAYS, "bias", "y")

#: Panel heights, frame tiles, accumulators and thread counts a CPU config may pick.
LANES = (4, 8, 16, 32)
FRAMES = (1, 2, 4, 8, 16)
K_SPLITS = (1, 2, 4, 8)
THREADS = (1, 2, 4, 8)
#: The OpenCL knobs of the mat-mat kernel (``work_group`` / ``vector`` shape other kernels).
GPU_MATMAT_KNOBS = ("panel_rows", "chunk", "frames", "exact")


def _with(choices: tuple[int, ...], default: int) -> tuple[int, ...]:
    return tuple(sorted(set(choices) | {default}))


@dataclass(frozen=True)
class MatmatTemplate:
    """The mat-mat kernel template for one target and weight form.

    What differs between targets comes from the target's :class:`TargetKernels` (the kernel
    builder, the knob class) and from the subclass of its family (:class:`CPUMatmat`,
    :class:`OpenCLMatmat`: parameter names and the knobs a tuner samples).

    Attributes
    ----------
    target : tvm.target.Target
    kernels : TargetKernels
        The target's kernels (:func:`tvm_bsp.kernels.rules.kernels_for`).
    sparse : bool
        BSPC weight (True) or dense.
    """

    target: tvm.target.Target
    kernels: TargetKernels
    sparse: bool

    @property
    def family(self) -> str:
        """``"cpu"`` (``llvm``) or ``"gpu"`` (OpenCL)."""
        return self.kernels.family

    @property
    def arg_names(self) -> tuple[str, ...]:
        """PrimFunc parameter names in order (``x`` first, ``y`` last)."""
        raise NotImplementedError

    def knobs(self, batch: int, matrix: BSPCMatrix | None = None) -> list[Knob]:
        """The knobs (choices and defaults) for ``batch`` frames (``matrix``: its lanes)."""
        raise NotImplementedError

    def config(
        self, batch: int, config: dict[str, Any] | None = None, matrix: BSPCMatrix | None = None
    ) -> dict[str, Any]:
        """A full config: ``config`` completed with the defaults for ``matrix`` (validated).

        Raises
        ------
        ValueError
            For an unknown knob or a value outside its choices.
        """
        return resolve_config(self.knobs(batch, matrix), config)

    def kernel_knobs(self, config: dict[str, Any]) -> RNNKnobs | GPURNNKnobs:
        """The lowering's knob object for a full config."""
        return self.kernels.default_knobs(self.target).updated(config)

    def instantiate(
        self, weight: Weight, config: dict[str, Any], activation: str, bias: np.ndarray | None
    ) -> tuple[tvm.tirx.PrimFunc, dict[str, np.ndarray]]:
        """The kernel of ``weight`` for a full config, and its packed inputs by parameter name."""
        knobs = self.kernel_knobs(config)
        func, consts, _rows = self.kernels.linear_kernel(weight, bias, knobs, activation)
        return func, dict(zip(self.arg_names[1:-1], consts, strict=True))


class CPUMatmat(MatmatTemplate):
    """``llvm``: row panels of ``lanes`` rows (BSPC) or dense row panels."""

    @property
    def arg_names(self) -> tuple[str, ...]:
        return CPU_SPMM_ARGS if self.sparse else DENSE_ARGS

    def knobs(self, batch: int, matrix: BSPCMatrix | None = None) -> list[Knob]:
        base = default_knobs(self.target)
        lanes = suggest_lanes([matrix], self.target) if matrix is not None else base.lanes
        frames = (base.frames,) if batch == 1 else _with(FRAMES, base.frames)
        macs = base.min_parallel_macs
        return [
            Knob("lanes", _with(LANES, lanes), lanes, "rows per panel = vector lanes"),
            Knob("frames", frames, base.frames, "frames per register tile"),
            Knob("k_split", _with(K_SPLITS, base.k_split), base.k_split,
                 "accumulators over a panel's columns for a frame outside the tiles"),
            Knob("threads", _with(THREADS, base.threads), base.threads,
                 "thread groups: balanced row stripes (BSPC), panel ranges (dense)"),
            Knob("min_parallel_macs", _with(TUNABLE_CHOICES["min_parallel_macs"], macs), macs,
                 "fewer multiply-adds per frame than this run on one thread"),
        ]  # fmt: skip


class OpenCLMatmat(MatmatTemplate):
    """``opencl``: one panel walk for BSPC and dense weights (dense as one-block BSPC)."""

    @property
    def arg_names(self) -> tuple[str, ...]:
        return GPU_ARGS

    def knobs(self, batch: int, matrix: BSPCMatrix | None = None) -> list[Knob]:
        base = default_gpu_rnn_knobs(self.target)
        return [
            Knob(k.name, k.choices, getattr(base, k.name), k.doc)
            for k in GPU_RNN_KNOBS
            if k.name in GPU_MATMAT_KNOBS
        ]


#: The template class of each kernel family.
TEMPLATES: dict[str, type[MatmatTemplate]] = {"cpu": CPUMatmat, "gpu": OpenCLMatmat}


def _template(target: tvm.target.Target | None, sparse: bool) -> MatmatTemplate:
    target = target or host_target()
    kernels = kernels_for(target)
    return TEMPLATES[kernels.family](target, kernels, sparse)


def spmm_template(target: tvm.target.Target | None = None) -> MatmatTemplate:
    """The BSPC template for a target (default: this host)."""
    return _template(target, True)


def dense_template(target: tvm.target.Target | None = None) -> MatmatTemplate:
    """The dense template for a target (default: this host)."""
    return _template(target, False)
