"""The BSPC format: block-based structured pruning, compact storage (see :mod:`.matrix`)."""

from tvm_bsp.bspc.balance import LoadBalance, load_balance, thread_partition
from tvm_bsp.bspc.errors import BSPCFormatError
from tvm_bsp.bspc.grid import stripe_bounds
from tvm_bsp.bspc.io import atomic_write, load_bspc, save_bspc
from tvm_bsp.bspc.matrix import BSPCMatrix
from tvm_bsp.bspc.quant import QuantizedBSPC, choose_granularity, quantize_bspc
from tvm_bsp.bspc.quant_io import load_quantized_bspc, save_quantized_bspc
from tvm_bsp.bspc.quant_ops import (
    int8_error_bound,
    int8_matmat,
    int8_matvec,
    quantize_activations,
)
from tvm_bsp.bspc.sizes import scipy_bsr_nbytes, scipy_csr_nbytes

__all__ = [
    "BSPCFormatError",
    "BSPCMatrix",
    "LoadBalance",
    "QuantizedBSPC",
    "atomic_write",
    "choose_granularity",
    "int8_error_bound",
    "int8_matmat",
    "int8_matvec",
    "load_balance",
    "load_bspc",
    "load_quantized_bspc",
    "quantize_activations",
    "quantize_bspc",
    "save_bspc",
    "save_quantized_bspc",
    "scipy_bsr_nbytes",
    "scipy_csr_nbytes",
    "stripe_bounds",
    "thread_partition",
]
