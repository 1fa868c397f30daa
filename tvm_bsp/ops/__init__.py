"""BSPC and dense kernels: TE compute, packed layouts, the mat-mat and RNN kernels, builders.

- :mod:`.layout`: the kernel-side panel layout of a BSPC matrix (documented there).
- :mod:`.compute`: canonical TE compute definitions (no schedule).
- :mod:`.epilogue`: fused ``act(acc + bias)`` epilogues.
- :mod:`.rnn_linear` (CPU), :mod:`.gpu_linear` (OpenCL): the mat-mat kernel of each target;
  :mod:`.matmat`: its knobs as a template a tuner samples.
- :mod:`.build`: PrimFuncs with their packed inputs, compiled kernels.
"""

from tvm_bsp.ops.build import (
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
from tvm_bsp.ops.compute import bspc_spmm_compute, dense_compute, to_prim_func
from tvm_bsp.ops.epilogue import ACTIVATIONS, numpy_epilogue
from tvm_bsp.ops.layout import PanelLayout, pack_panels, panel_layout_matvec
from tvm_bsp.ops.matmat import MatmatTemplate, dense_template, spmm_template

__all__ = [
    "ACTIVATIONS",
    "DENSE_ENTRY",
    "SPMM_ENTRY",
    "Kernel",
    "KernelSpec",
    "MatmatTemplate",
    "PanelLayout",
    "bspc_spmm_compute",
    "build_dense",
    "build_spmm",
    "compile_spec",
    "dense_compute",
    "dense_prim_func",
    "dense_template",
    "numpy_epilogue",
    "pack_panels",
    "panel_layout_matvec",
    "spmm_prim_func",
    "spmm_template",
    "to_prim_func",
]
