"""The kernels of every target, with their knobs and targets: TE compute, packed layouts,
the mat-mat and recurrent kernels, builders.

Common to every target:

- :mod:`.targets`: targets by name (``host``, ``arm64``, ``opencl-mali``, ``opencl-adreno``)
  and the kernel family (``cpu`` / ``gpu``) of a target; :mod:`.knobs`: :class:`Knob` and
  configs over knobs; :mod:`.rnn_knobs`: the RNN knobs of the CPU kernels, the gates of each
  cell;
- :mod:`.layout`: the kernel-side panel layout of a BSPC matrix (documented there);
  :mod:`.rnn_pack`: the weight layouts of the RNN kernels;
- :mod:`.compute`, :mod:`.rnn`: canonical TE compute definitions (no schedule);
- :mod:`.cell_math` (the gate math of every cell, written once), :mod:`.fast_math`,
  :mod:`.epilogue`, :mod:`.rnn_bias`, :mod:`.layer_weights`, :mod:`.sequence_parts`,
  :mod:`.tir_build`: the parts the generators compose;
- :mod:`.rules`: which kernels serve a target (dlight-style rules, ``apply`` returns ``None``
  when a rule does not serve it);
- :mod:`.matmat`: the mat-mat kernel of each target as a template a tuner samples;
- :mod:`.build`: PrimFuncs with their packed inputs, compiled kernels.

One sub-package a target: :mod:`.cpu` (``llvm``: x86, aarch64 NEON) and :mod:`.opencl`
(mobile GPUs), each with ``products`` (the recurrent product of each weight form),
``sequence`` (the target's loop structure), ``linear`` (the mat-mat kernel) and ``rnn`` (pick,
instantiate and feed a layer's kernels); the OpenCL knobs are :mod:`.opencl.knobs`.
"""

from tvm_bsp.kernels.build import (
    DENSE_ENTRY,
    SPMM_ENTRY,
    Kernel,
    KernelSpec,
    build_dense,
    build_spmm,
    compile_spec,
    dense_prim_func,
    spmm_prim_func,
)
from tvm_bsp.kernels.compute import bspc_spmm_compute, dense_compute, to_prim_func
from tvm_bsp.kernels.epilogue import ACTIVATIONS, numpy_epilogue
from tvm_bsp.kernels.knobs import Knob, all_configs, resolve_config
from tvm_bsp.kernels.layout import PanelLayout, pack_panels, panel_layout_matvec
from tvm_bsp.kernels.matmat import MatmatTemplate, dense_template, spmm_template
from tvm_bsp.kernels.targets import TARGET_NAMES, family, host_target, resolve_target

__all__ = [
    "ACTIVATIONS",
    "DENSE_ENTRY",
    "SPMM_ENTRY",
    "TARGET_NAMES",
    "Kernel",
    "KernelSpec",
    "Knob",
    "MatmatTemplate",
    "PanelLayout",
    "all_configs",
    "bspc_spmm_compute",
    "build_dense",
    "build_spmm",
    "compile_spec",
    "dense_compute",
    "dense_prim_func",
    "dense_template",
    "family",
    "host_target",
    "numpy_epilogue",
    "pack_panels",
    "panel_layout_matvec",
    "resolve_config",
    "resolve_target",
    "spmm_prim_func",
    "spmm_template",
    "to_prim_func",
]
