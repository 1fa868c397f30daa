"""tvm-bsp: block-based structured pruning (BSP) and BSPC sparse RNN kernels on Apache TVM."""

__version__ = "0.1.0"


def __getattr__(name: str):
    """Lazy exports (the runtime-only deploy path must not import the compiler or torch)."""
    if name == "compile_model":
        from tvm_bsp.compiler import compile_model

        return compile_model
    raise AttributeError(f"module 'tvm_bsp' has no attribute {name!r}")
