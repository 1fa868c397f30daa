"""The int8 dot-product steps of the CPU int8 BSPC kernel, and the activation quantizer.

Dot products (``dot``): ``"vnni"`` calls ``llvm.x86.avx512.vpdpbusd.512`` (unsigned by signed
bytes: activations offset by 128, compensation subtracted by the kernel); ``"sdot"`` calls four
``llvm.aarch64.neon.sdot.v4i32.v16i8`` per group (needs ``+dotprod``); ``"generic"`` writes
the int32 multiply-adds in plain TIR and leaves instruction selection to LLVM (x86 then emits
``vpmulld`` after sign extension, aarch64 ``smull``: 3-5x slower than float32).
"""

from __future__ import annotations

import tvm
from tvm.script import tirx as T

from tvm_bsp.bspc.quant import QMAX
from tvm_bsp.bspc.quant_ops import AMAX_FLOOR
from tvm_bsp.kernels.int8_stripes import GROUP, LANES, X86_OFFSET

DOTS = ("vnni", "sdot", "generic")
#: Per-thread stack buffers are ``"global"`` allocations inside the parallel loop.
SCRATCH_SCOPE = "global"
_W = LANES * GROUP  # bytes of one group of a panel


def dot_parts(dot: str):
    """``(gather_value, step)`` of a dot-product kind.

    ``gather_value(v)`` turns an int8 activation into the gather buffer's value (plus 128 as
    ``uint8`` for ``"vnni"``); the macro ``step(accb, XG, VA, xo, wo, f)`` adds to the 16
    int32 lanes ``accb[16 f : 16 f + 16]`` the dot products of the 4 activations at ``XG[xo]``
    with the 64 weight bytes at ``VA[wo]`` (lane ``v``: bytes ``4 v .. 4 v + 3``).
    """
    vnni = dot == "vnni"

    def word(XG, xo):  # the 4 activations at XG[xo] as one int32
        return T.reinterpret("int32", XG[T.ramp(xo, 1, GROUP)])

    def gather_value(v):
        if vnni:
            return T.Cast("uint8", T.Cast("int32", v) + X86_OFFSET)
        return v

    @T.macro
    def vnni_step(accb, XG, VA, xo, wo, f):
        accb[T.ramp(f * LANES, 1, LANES)] = T.call_llvm_pure_intrin(
            "int32x16",
            "llvm.x86.avx512.vpdpbusd.512",
            accb[T.ramp(f * LANES, 1, LANES)],
            T.reinterpret("uint8x64", T.broadcast(word(XG, xo), LANES)),
            VA[T.ramp(wo, 1, _W)],
        )

    @T.macro
    def sdot_step(accb, XG, VA, xo, wo, f):
        for q in T.unroll(LANES // 4):
            accb[T.ramp(f * LANES + 4 * q, 1, 4)] = T.call_llvm_pure_intrin(
                "int32x4",
                "llvm.aarch64.neon.sdot.v4i32.v16i8",
                accb[T.ramp(f * LANES + 4 * q, 1, 4)],
                T.reinterpret("int8x16", T.broadcast(word(XG, xo), 4)),
                VA[T.ramp(wo + 16 * q, 1, 16)],
            )

    @T.macro
    def generic_step(accb, XG, VA, xo, wo, f):
        for v in T.vectorized(LANES):
            accb[f * LANES + v] = accb[f * LANES + v] + (
                T.Cast("int32", VA[wo + v * 4]) * T.Cast("int32", XG[xo])
                + T.Cast("int32", VA[wo + v * 4 + 1]) * T.Cast("int32", XG[xo + 1])
                + T.Cast("int32", VA[wo + v * 4 + 2]) * T.Cast("int32", XG[xo + 2])
                + T.Cast("int32", VA[wo + v * 4 + 3]) * T.Cast("int32", XG[xo + 3])
            )

    return gather_value, {"vnni": vnni_step, "sdot": sdot_step, "generic": generic_step}[dot]


def quantize_prim_func(batch: int, cols: int) -> tvm.tirx.PrimFunc:
    """Per-frame max-abs quantization of ``x (B, N)`` float32 into ``xq`` int8 and ``sx``.

    The arithmetic of :func:`~tvm_bsp.bspc.quant_ops.quantize_activations` (``"input"``):
    ``a = max |x|``, ``inv = 127 / a``, ``s = a / 127``, ``q = clip(round(x * inv))``; a frame
    with ``a < 1e-30`` gives zeros and ``s = 1``.
    """
    B, N = batch, cols

    @T.prim_func
    def quantize_input(x_h: T.handle, xq_h: T.handle, sx_h: T.handle):
        T.func_attr({"tirx.noalias": True})
        x = T.match_buffer(x_h, (B, N), "float32")
        xq = T.match_buffer(xq_h, (B, N), "int8")
        sx = T.match_buffer(sx_h, (B,), "float32")
        for n in range(B):
            amax = T.alloc_buffer((1,), "float32", scope=SCRATCH_SCOPE)
            amax[0] = T.float32(0)
            for c in range(N):
                amax[0] = T.max(amax[0], T.abs(x[n, c]))
            live = amax[0] >= T.float32(AMAX_FLOOR)
            inv = T.Select(live, T.float32(QMAX) / T.Select(live, amax[0], T.float32(1)),
                           T.float32(0))  # fmt: skip
            sx[n] = T.Select(live, amax[0] / T.float32(QMAX), T.float32(1))
            for c in range(N):
                xq[n, c] = T.Cast(
                    "int8",
                    T.max(T.min(T.round(x[n, c] * inv), T.float32(QMAX)), T.float32(-QMAX)),
                )

    return quantize_input
