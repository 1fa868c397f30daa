"""Compile and call the int8 BSPC kernel: :func:`build_spmm_int8` and :class:`Int8Kernel`.

One module holds two PrimFuncs: :data:`INT8_ENTRY` (the product of
:mod:`tvm_bsp.kernels.cpu.int8_stripe` on quantized activations) and :data:`QUANTIZE_ENTRY`
(per-frame max-abs quantization of float frames). The dot-product instruction is picked from
the target: ``vpdpbusd`` where LLVM reports ``avx512vnni``, NEON ``sdot`` where it reports
``dotprod`` (the name ``"arm64"`` is given ``+dotprod``), plain TIR otherwise. The kernel takes
matrices with ``"row"`` scales (the stripe layout of :mod:`tvm_bsp.kernels.int8_stripes`:
panels span a block row, one store per row), which ``quantize_bspc``'s ``"auto"`` picks for
every shipped matrix; ``"block_row"`` scales are refused by name.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import tvm

from tvm_bsp.bspc.quant import QuantizedBSPC
from tvm_bsp.kernels.build import CompiledKernel
from tvm_bsp.kernels.cpu.int8_dot import DOTS, quantize_prim_func
from tvm_bsp.kernels.cpu.int8_stripe import STRIPE_ARG_NAMES, int8_stripe_prim_func
from tvm_bsp.kernels.int8_stripes import StripeLayout, pack_int8_stripes
from tvm_bsp.kernels.targets import is_arm, resolve_target

TargetLike = str | dict | tvm.target.Target

#: Entry of the int8 product (quantized activations in, ``acc`` and ``y`` out).
INT8_ENTRY = "bspc_int8"
#: Entry of the activation quantizer (``x`` in, ``xq`` and ``sx`` out).
QUANTIZE_ENTRY = "quantize_input"
#: Below this many stored values the kernel runs on one thread.
MIN_PARALLEL_VALUES = 16384


def int8_target(target: TargetLike = "host") -> tvm.target.Target:
    """Resolve ``target``; the name ``"arm64"`` gets ``+dotprod`` for NEON ``sdot``."""
    if isinstance(target, str) and target == "arm64":
        base = resolve_target("arm64")
        mattr = [*base.attrs["mattr"], "+dotprod"]
        return tvm.target.Target({"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": mattr})
    tgt = resolve_target(target)
    if tgt.kind.name != "llvm":
        raise ValueError(f"the int8 BSPC kernel needs an llvm target, got {tgt.kind.name!r}")
    return tgt


def default_dot(target: tvm.target.Target) -> str:
    """``"sdot"`` / ``"vnni"`` when ``target`` has the instruction, else ``"generic"``."""
    from tvm.target.codegen import target_has_features

    if is_arm(target):
        return "sdot" if target_has_features("dotprod", target) else "generic"
    return "vnni" if target_has_features("avx512vnni", target) else "generic"


class Int8Kernel(CompiledKernel):
    """A compiled int8 BSPC kernel with its packed weights bound.

    Attributes
    ----------
    layout : StripeLayout
    arg_names : tuple of str
        Parameter names of the product, outputs ``acc`` and ``y`` last.
    outputs : int
        Accumulators per frame (``E``).
    batch : int
    target : tvm.target.Target
    dot : str
        ``"vnni"``, ``"sdot"`` or ``"generic"``.
    executable : tvm.runtime.Executable
    """

    def __init__(
        self,
        layout: StripeLayout,
        batch: int,
        target: tvm.target.Target,
        dot: str,
        executable: Any,
    ) -> None:
        self.layout = layout
        self.arg_names = STRIPE_ARG_NAMES
        self.outputs = layout.shape[0]
        self.batch = batch
        self.target = target
        self.dot = dot
        self.executable = executable
        self._jit: Any = None
        self._args: list[Any] | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """``(M, N)``."""
        return self.layout.shape

    @property
    def out_shapes(self) -> list[tuple[int, int]]:
        """Shapes of the product's outputs: ``acc (batch, E)`` int32 and ``y (batch, M)``."""
        return [(self.batch, max(self.outputs, 1)), (self.batch, self.shape[0])]


    def inputs(self, xq: np.ndarray, sx: np.ndarray) -> list[np.ndarray]:
        """The product's inputs, in parameter order (without the outputs)."""
        xq, sx = self._check(xq, sx)
        return [xq, sx, *(self.layout.arrays[n] for n in self.arg_names[2:-2])]

    def accumulate(self, xq: np.ndarray, sx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Run the product on ``xq (batch, N)`` int8 and ``sx (batch,)`` float32.

        Returns
        -------
        (numpy.ndarray, numpy.ndarray)
            int32 accumulators ``(batch, M)`` and ``y (batch, M)`` float32.
        """
        args = self._bound_args()
        dev = tvm.cpu()
        xq, sx = self._check(xq, sx)
        args[0], args[1] = tvm.runtime.tensor(xq, dev), tvm.runtime.tensor(sx, dev)
        self._module()[INT8_ENTRY](*args)
        return args[-2].numpy()[:, : self.outputs], args[-1].numpy()

    def __call__(self, xq: np.ndarray, sx: np.ndarray) -> np.ndarray:
        """``y (batch, M)`` of :meth:`accumulate`."""
        return self.accumulate(xq, sx)[1]

    def quantize(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Quantize float frames ``x (batch, N)`` with the compiled quantizer: ``(xq, sx)``."""
        x = np.ascontiguousarray(np.asarray(x, np.float32))
        if x.shape != (self.batch, self.shape[1]):
            raise ValueError(f"x must have shape ({self.batch}, {self.shape[1]}), got {x.shape}")
        dev = tvm.cpu()
        xq = tvm.runtime.tensor(np.zeros(x.shape, np.int8), dev)
        sx = tvm.runtime.tensor(np.zeros(self.batch, np.float32), dev)
        self._module()[QUANTIZE_ENTRY](tvm.runtime.tensor(x, dev), xq, sx)
        return xq.numpy(), sx.numpy()

    def time(
        self, xq: np.ndarray | None = None, sx: np.ndarray | None = None, number: int = 100,
        repeat: int = 30,
    ) -> np.ndarray:  # fmt: skip
        """Seconds per product call, one entry per repeat (``time_evaluator``)."""
        args = self._bound_args()
        if xq is not None:
            xq, sx = self._check(xq, np.ones(self.batch, np.float32) if sx is None else sx)
            args[0], args[1] = tvm.runtime.tensor(xq, tvm.cpu()), tvm.runtime.tensor(sx, tvm.cpu())
        evaluator = self._module().time_evaluator(
            INT8_ENTRY, tvm.cpu(), number=number, repeat=repeat
        )
        return np.asarray(evaluator(*args).results)

    def time_quantize(self, number: int = 100, repeat: int = 30) -> np.ndarray:
        """Seconds per call of the activation quantizer (on random frames)."""
        dev = tvm.cpu()
        B, N = self.batch, self.shape[1]
        x = np.random.default_rng(0).standard_normal((B, N)).astype(np.float32)
        args = [tvm.runtime.tensor(x, dev), tvm.runtime.tensor(np.zeros((B, N), np.int8), dev),
                tvm.runtime.tensor(np.zeros(B, np.float32), dev)]  # fmt: skip
        evaluator = self._module().time_evaluator(QUANTIZE_ENTRY, dev, number=number, repeat=repeat)
        return np.asarray(evaluator(*args).results)

    # ------------------------------------------------------------------ helpers
    def _check(self, xq: np.ndarray, sx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        xq, sx = np.asarray(xq), np.asarray(sx)
        B, N = self.batch, self.shape[1]
        if xq.dtype != np.int8 or xq.shape != (B, N):
            raise ValueError(f"xq must be an int8 array of shape ({B}, {N}), got "
                             f"{xq.dtype} {xq.shape}")  # fmt: skip
        if sx.shape != (B,):
            raise ValueError(f"sx must have shape ({B},), got {sx.shape}")
        return np.ascontiguousarray(xq), np.ascontiguousarray(sx, dtype=np.float32)


    def _bound_args(self) -> list[Any]:
        if self._args is None:
            dev = tvm.cpu()
            B, N = self.batch, self.shape[1]
            zeros = [np.zeros((B, N), np.int8), np.ones(B, np.float32)]
            weights = [self.layout.arrays[n] for n in self.arg_names[2:-2]]
            (acc_shape, y_shape) = self.out_shapes
            outs = [np.zeros(acc_shape, np.int32), np.zeros(y_shape, np.float32)]
            self._args = [tvm.runtime.tensor(a, dev) for a in (*zeros, *weights, *outs)]
        return list(self._args)


def build_spmm_int8(
    matrix: QuantizedBSPC,
    batch: int = 1,
    target: TargetLike = "host",
    dot: str | None = None,
    threads: int | None = None,
    frames: int = 4,
) -> Int8Kernel:
    """Compile the int8 BSPC product (and the activation quantizer) for ``batch`` frames.

    Parameters
    ----------
    matrix : QuantizedBSPC
        The ``(M, N)`` int8 weight.
    batch : int
        Frames per call.
    target : str, dict or tvm.target.Target
        ``"host"``, ``"arm64"`` (with ``+dotprod``) or an ``llvm`` Target.
    dot : {"vnni", "sdot", "generic"}, optional
        Dot-product instruction; default: :func:`default_dot` of the target.
    threads : int, optional
        Parallel block-row ranges; default the CPU count (1 below
        :data:`MIN_PARALLEL_VALUES` stored values).
    frames : int
        Frames per register tile.

    Returns
    -------
    Int8Kernel

    Raises
    ------
    NotImplementedError
        For a matrix with ``"block_row"`` scales.
    """
    if isinstance(batch, bool) or not isinstance(batch, int | np.integer) or batch < 1:
        raise ValueError(f"batch must be a positive integer, got {batch!r}")
    tgt = int8_target(target)
    dot = default_dot(tgt) if dot is None else dot
    if dot not in DOTS:
        raise ValueError(f"dot must be one of {DOTS}, got {dot!r}")
    if threads is None:
        threads = 1 if matrix.nnz * batch < MIN_PARALLEL_VALUES else (os.cpu_count() or 1)
    if matrix.granularity != "row":
        raise NotImplementedError(
            f"the int8 BSPC kernel takes per-row scales; this matrix has "
            f"{matrix.granularity!r} scales (quantize_bspc(..., 'row'))"
        )
    packed = pack_int8_stripes(matrix, threads)
    product = int8_stripe_prim_func(packed, int(batch), dot, frames)
    quantize = quantize_prim_func(int(batch), matrix.shape[1])
    mod = tvm.IRModule(
        {
            INT8_ENTRY: product.with_attr("global_symbol", INT8_ENTRY),
            QUANTIZE_ENTRY: quantize.with_attr("global_symbol", QUANTIZE_ENTRY),
        }
    )
    return Int8Kernel(packed, int(batch), tgt, dot, tvm.compile(mod, target=tgt))
