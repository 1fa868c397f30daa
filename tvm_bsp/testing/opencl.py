"""Run TVM-generated OpenCL kernels on a real OpenCL implementation (POCL) through pyopencl.

The TVM wheel ships without an OpenCL-enabled runtime, so a module built for an ``opencl``
target cannot be called through TVM on this machine. This module checks the generated kernels
another way:

1. The PrimFunc is compiled with :func:`tvm.compile` exactly as a user would (same target, same
   default pipeline). A pass instrument captures the IRModule right after ``SplitHostDevice``,
   the point where the host function consists of kernel launches
   (``T.call_ffi_kernel("main_kernel", A.data, ..., grid/block extents,
   launch_params=[...])``) and each device kernel is a separate PrimFunc with its parameter
   list and its ``tirx.kernel_launch_params``.
2. The OpenCL C source that TVM generated is taken from the compiled module
   (``Module.inspect_source()`` of the ``opencl`` import) and built by pyopencl, unchanged.
3. The host side is re-created: for every kernel launch of the host function, in program
   order, the arguments are mapped back to the PrimFunc's parameters (buffers become
   ``cl.Buffer``\\ s, scalars are evaluated from the PrimFunc's scalar parameters and symbolic
   shapes), the launch extents are evaluated the same way, and the kernel is enqueued with
   ``global = blockIdx extent * threadIdx extent`` and ``local = threadIdx extent`` per
   dimension.

So the device code that runs is TVM's, on a real OpenCL implementation (POCL on the CPU); the
host-side launch is a re-creation from the lowered IR, not TVM's own OpenCL runtime. Serial host
loops around kernel launches (e.g. the time loop of
:mod:`tvm_bsp.kernels.opencl.sequence`) are re-created
too: the loop variable is bound while the body's launches are enqueued, its bounds are
evaluated from the scalar parameters and symbolic shapes, and the in-order queue orders the
launches of consecutive iterations. Other host code (parallel or unrolled host loops,
host-side stores, dynamic shared memory) is refused with :class:`NotImplementedError` rather
than guessed.

The runner is split by job; this module is the entry point and re-exports the public names:

- :mod:`tvm_bsp.testing.opencl_program`: build with TVM, capture the lowered IR, run on POCL
  (:func:`build_opencl_program`, :class:`OpenCLProgram`, :func:`run_opencl_prim_func`);
- :mod:`tvm_bsp.testing.opencl_launches`: recover the host launch sequence from the IR
  (:class:`KernelLaunch`, :class:`HostLoop`);
- :mod:`tvm_bsp.testing.opencl_host_expr`: evaluate host-side scalar expressions;
- :mod:`tvm_bsp.testing.opencl_relax`: run a lowered Relax function kernel by kernel
  (:func:`run_relax_function`).
"""

from __future__ import annotations

from tvm_bsp.testing.opencl_launches import HostLoop, KernelLaunch, launch_count
from tvm_bsp.testing.opencl_program import (
    OpenCLProgram,
    build_opencl_program,
    opencl_available,
    opencl_target,
    run_opencl_prim_func,
)
from tvm_bsp.testing.opencl_relax import run_relax_function

__all__ = [
    "HostLoop",
    "KernelLaunch",
    "OpenCLProgram",
    "build_opencl_program",
    "launch_count",
    "opencl_available",
    "opencl_target",
    "run_opencl_prim_func",
    "run_relax_function",
]
