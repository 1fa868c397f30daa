"""Execution helpers for tests: aarch64 builds under qemu-user, OpenCL kernels on POCL, RPC.

Importing this package is cheap (TVM, pyopencl and pytest are imported only when used):

- :mod:`tvm_bsp.testing.aarch64`: the emulated aarch64 root made by
  ``scripts/setup_aarch64_emulator.sh``; run scripts and cross-compiled kernels in it.
- :mod:`tvm_bsp.testing.opencl`: run TVM-generated OpenCL kernels through pyopencl.
- :mod:`tvm_bsp.testing.rpc`: a loopback RPC tracker + server (host or emulated aarch64).
"""

from tvm_bsp.testing.aarch64 import arm64_root, require_arm64, run_arm64_function, run_in_arm64
from tvm_bsp.testing.opencl import opencl_available, run_opencl_prim_func

__all__ = [
    "arm64_root",
    "opencl_available",
    "require_arm64",
    "run_arm64_function",
    "run_in_arm64",
    "run_opencl_prim_func",
]
