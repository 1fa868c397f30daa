"""BSPC and dense mat-vec / mat-mat kernels: TE compute, packed layouts, builders.

- :mod:`.layout`: the kernel-side panel layout of a BSPC matrix (documented there).
- :mod:`.compute`: canonical TE compute definitions (no schedule).
- :mod:`.epilogue`: fused ``act(acc + bias)`` epilogues.
- :mod:`.build`: scheduled PrimFuncs with their packed inputs, compiled kernels.
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
from tvm_bsp.ops.dense_pack import pack_dense
from tvm_bsp.ops.epilogue import ACTIVATIONS, numpy_epilogue
from tvm_bsp.ops.layout import PanelLayout, pack_panels, panel_layout_matvec

__all__ = [
    "ACTIVATIONS",
    "DENSE_ENTRY",
    "SPMM_ENTRY",
    "Kernel",
    "KernelSpec",
    "PanelLayout",
    "bspc_spmm_compute",
    "build_dense",
    "build_spmm",
    "compile_spec",
    "dense_compute",
    "dense_prim_func",
    "numpy_epilogue",
    "pack_dense",
    "pack_panels",
    "panel_layout_matvec",
    "spmm_prim_func",
    "to_prim_func",
]
