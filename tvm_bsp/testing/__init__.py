"""Execution helpers for tests: OpenCL kernels on POCL.

Importing this package is cheap (TVM and pyopencl are imported only when used):

- :mod:`tvm_bsp.testing.opencl`: run TVM-generated OpenCL kernels through pyopencl.

The emulated aarch64 device and the loopback RPC servers are in :mod:`tvm_bsp.devices`.
"""

from tvm_bsp.testing.opencl import opencl_available, run_opencl_prim_func

__all__ = ["opencl_available", "run_opencl_prim_func"]
