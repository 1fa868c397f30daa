"""int8 BSPC kernel over the stripe layout (``"row"`` scales; CPU, ``llvm``).

The layout is :mod:`tvm_bsp.kernels.int8_stripes`. Per thread (a contiguous range of block
rows), per block row: gather ``xq[n, gcols]`` of every frame once into a stack buffer (plus
128 as ``uint8`` for ``vpdpbusd``); per panel of up to 16 consecutive rows and tile of ``F``
frames, one dot-product step (:func:`tvm_bsp.kernels.cpu.int8_dot.dot_parts`) per group
and frame over all the block row's blocks, accumulators in registers; then per frame one
vector store of the int32 accumulators (minus the x86 compensation) and of
``y = float32(float32(acc) * s_w) * s_x`` (a panel with fewer than 16 lanes stores lane by
lane). A one-frame tile splits the groups over two accumulator sets (dot-product latency).

Signature (outputs last)::

    xq (B,N) int8, sx (B,) f32, thread_brows, col_ptr, gcols, panel_ptr, row0, nlanes,
    group_ptr, goff, comp, vals int8, scales f32  -> acc (B,M) int32, y (B,M) f32
"""

from __future__ import annotations

import tvm
from tvm.script import tirx as T

from tvm_bsp.kernels.cpu.int8_dot import DOTS, SCRATCH_SCOPE, dot_parts
from tvm_bsp.kernels.int8_stripes import LANES, StripeLayout

#: Parameter names of the stripe PrimFunc, in order.
STRIPE_ARG_NAMES = (
    "xq", "sx", "thread_brows", "col_ptr", "gcols", "panel_ptr", "row0", "nlanes",
    "group_ptr", "goff", "comp", "vals", "scales", "acc", "y",
)  # fmt: skip
_W = 64  # weight bytes per group


def int8_stripe_prim_func(
    layout: StripeLayout, batch: int, dot: str = "generic", frames: int = 4
) -> tvm.tirx.PrimFunc:
    """The int8 BSPC product over the stripe layout for ``batch`` frames (module docstring).

    Parameters
    ----------
    layout : StripeLayout
    batch : int
    dot : {"vnni", "sdot", "generic"}
    frames : int
        Frames per register tile (the remainder runs one frame at a time).
    """
    if dot not in DOTS:
        raise ValueError(f"dot must be one of {DOTS}, got {dot!r}")
    M, N = layout.shape
    B, C, NT = batch, layout.max_cols, layout.threads
    F = max(2, min(frames, B))  # >= 2: the one-frame tile uses two accumulator sets
    vnni = dot == "vnni"
    xdt = "uint8" if vnni else "int8"
    gather_value, step = dot_parts(dot)

    def comp_of(CM, p, v):
        return CM[p * LANES + v] if vnni else 0

    @T.macro
    def finish(CM, SW, SX, ACC, Y, accb, p, r0, n, f, vlane):
        ACC[n, r0 + vlane] = accb[f * LANES + vlane] - comp_of(CM, p, vlane)
        Y[n, r0 + vlane] = (T.Cast("float32", ACC[n, r0 + vlane]) * SW[r0 + vlane]) * SX[n]

    @T.macro
    def store(CM, SW, SX, ACC, Y, accb, p, r0, nl, n, f):
        if nl == LANES:
            for v in T.vectorized(LANES):
                finish(CM, SW, SX, ACC, Y, accb, p, r0, n, f, v)
        else:
            for v in T.serial(nl):
                finish(CM, SW, SX, ACC, Y, accb, p, r0, n, f, v)

    @T.macro
    def tile(XG, GO, VA, CM, SW, SX, ACC, Y, accb, p, g0, ng, r0, nl, n0):
        for i in T.vectorized(F * LANES):
            accb[i] = 0
        for g in range(ng):
            for f in T.unroll(F):
                step(accb, XG, VA, (n0 + f) * C + GO[g0 + g], (g0 + g) * _W, f)
        for f in T.unroll(F):
            store(CM, SW, SX, ACC, Y, accb, p, r0, nl, n0 + f, f)

    @T.macro
    def single(XG, GO, VA, CM, SW, SX, ACC, Y, accb, p, g0, ng, r0, nl, n):
        for i in T.vectorized(2 * LANES):
            accb[i] = 0
        for g in range(ng // 2):
            for s in T.unroll(2):
                step(accb, XG, VA, n * C + GO[g0 + 2 * g + s], (g0 + 2 * g + s) * _W, s)
        if ng % 2 == 1:
            step(accb, XG, VA, n * C + GO[g0 + ng - 1], (g0 + ng - 1) * _W, 0)
        for v in T.vectorized(LANES):
            accb[v] = accb[v] + accb[LANES + v]
        store(CM, SW, SX, ACC, Y, accb, p, r0, nl, n, 0)

    # the packed arrays are constants of known length: the signature declares them as is
    n_cols, n_gcols, n_panels = (layout.arrays[k].size for k in ("col_ptr", "gcols", "row0"))
    n_pptr, n_gptr = layout.arrays["panel_ptr"].size, layout.arrays["group_ptr"].size
    n_groups, n_comp = layout.arrays["goff"].size, layout.arrays["comp"].size
    n_vals, n_scales = layout.arrays["vals"].size, layout.arrays["scales"].size

    @T.prim_func
    def int8_bspc_stripes(
        xq: T.Buffer((B, N), "int8"), sx: T.Buffer((B,), "float32"),
        thread_brows: T.Buffer((NT + 1,), "int32"), col_ptr: T.Buffer((n_cols,), "int32"),
        gcols: T.Buffer((n_gcols,), "int32"), panel_ptr: T.Buffer((n_pptr,), "int32"),
        row0: T.Buffer((n_panels,), "int32"), nlanes: T.Buffer((n_panels,), "int32"),
        group_ptr: T.Buffer((n_gptr,), "int32"), goff: T.Buffer((n_groups,), "int32"),
        comp: T.Buffer((n_comp,), "int32"), vals: T.Buffer((n_vals,), "int8"),
        scales: T.Buffer((n_scales,), "float32"), acc: T.Buffer((B, M), "int32"),
        y: T.Buffer((B, M), "float32"),
    ):  # fmt: skip
        T.func_attr({"tirx.noalias": True})
        for tid in T.parallel(NT) if NT > 1 else T.serial(NT):
            xg = T.alloc_buffer((B * C,), xdt, scope=SCRATCH_SCOPE)
            accb = T.alloc_buffer((F * LANES,), "int32", scope=SCRATCH_SCOPE)
            for bq in range(thread_brows[tid + 1] - thread_brows[tid]):
                rb = thread_brows[tid] + bq
                for c, n in T.grid(col_ptr[rb + 1] - col_ptr[rb], B):
                    xg[n * C + c] = gather_value(xq[n, gcols[col_ptr[rb] + c]])
                for pq in range(panel_ptr[rb + 1] - panel_ptr[rb]):
                    p = panel_ptr[rb] + pq
                    g0 = group_ptr[p]
                    ng = group_ptr[p + 1] - g0
                    for no in range(B // F):
                        tile(xg, goff, vals, comp, scales, sx, acc, y, accb, p, g0, ng,
                             row0[p], nlanes[p], no * F)  # fmt: skip
                    for r in range(B % F):
                        single(xg, goff, vals, comp, scales, sx, acc, y, accb, p, g0, ng,
                               row0[p], nlanes[p], B // F * F + r)  # fmt: skip

    return int8_bspc_stripes
