"""The BSPC format: block-based structured pruning, compact storage (see :mod:`.matrix`)."""

from tvm_bsp.bspc.balance import LoadBalance, load_balance, thread_partition
from tvm_bsp.bspc.errors import BSPCFormatError
from tvm_bsp.bspc.grid import stripe_bounds
from tvm_bsp.bspc.io import atomic_write, load_bspc, save_bspc
from tvm_bsp.bspc.matrix import BSPCMatrix
from tvm_bsp.bspc.sizes import scipy_bsr_nbytes, scipy_csr_nbytes

__all__ = [
    "BSPCFormatError",
    "BSPCMatrix",
    "LoadBalance",
    "atomic_write",
    "load_balance",
    "load_bspc",
    "save_bspc",
    "scipy_bsr_nbytes",
    "scipy_csr_nbytes",
    "stripe_bounds",
    "thread_partition",
]
