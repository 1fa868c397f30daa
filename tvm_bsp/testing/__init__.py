"""Execution helpers for tests: OpenCL kernels on POCL.

Importing this package is cheap (TVM and pyopencl are imported only when used):

- :mod:`tvm_bsp.testing.opencl`: run TVM-generated OpenCL kernels through pyopencl (the
  entry point; :mod:`.opencl_program` builds and runs, :mod:`.opencl_launches` recovers the
  launch sequence from the IR, :mod:`.opencl_host_expr` evaluates host expressions,
  :mod:`.opencl_relax` steps a lowered Relax function kernel by kernel).

The emulated aarch64 device and the loopback RPC servers are in :mod:`tvm_bsp.devices`.
"""

from tvm_bsp.testing.opencl import opencl_available, run_opencl_prim_func

__all__ = ["opencl_available", "run_opencl_prim_func"]
