"""tvm-bsp: block-based structured pruning (BSP) and BSPC sparse RNN kernels on Apache TVM."""

__version__ = "0.1.0"
