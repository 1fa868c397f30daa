"""Mat-mat kernels ``y = act(x W^T + b)`` over a symbolic number of frames (CPU, ``llvm``).

The CPU kernels of every mat-mat product: the input projection of all frames of an utterance
in one call (``x`` is ``(N, K)`` with ``N = T * B`` symbolic), the dense head layers, and the
stand-alone kernels of :func:`tvm_bsp.kernels.build_spmm` / :func:`~tvm_bsp.kernels.build_dense`
(what ``bench spmv`` times and ``tune_spmm`` tunes). Weights are row panels of ``P`` rows
(dense: :func:`tvm_bsp.kernels.rnn_pack.pack_row_panels`; BSPC: the panel layout of
:mod:`tvm_bsp.kernels.layout`). A register tile is ``F`` frames x ``P`` rows: per column one
vector load of the panel's values, ``F`` broadcasts of ``x`` and ``F`` vector FMAs; the frames
that do not fill a tile run one at a time with ``k_split`` accumulators over the columns (FMA
latency). Threads take contiguous panel ranges (dense) or their balanced stripes (BSPC).

Stores: a dense panel and a BSPC panel whose lanes are ``P`` consecutive rows (row order
``natural`` or ``grouped``, no dummy lane) store one vector per frame; other BSPC panels
scatter their lanes (a dummy lane rewrites lane 0's value). The accumulators are a small
stack array of the thread (``"global"`` scope inside the loop body; ``"local"`` would call the
runtime's workspace allocator per thread and call). Both were measured against the former
stand-alone templates (``scripts/bench_matmat_families.py``).

Signatures (outputs last)::

    dense: x (N,K), w (ceil(M/P)*K*P,), bias (ceil(M/P)*P,)                      -> y (N,M)
    bspc:  x (N,K), thread_ptr, panel_ptr, panel_rows, cols, vals, bias (lanes)  -> y (N,M)
"""

from __future__ import annotations

import functools

import tvm
from tvm.script import tirx as T

from tvm_bsp.kernels.epilogue import ACTIVATIONS, activation_expr
from tvm_bsp.kernels.layout import PanelShape

#: Epilogue activations of the linear kernels (those of :mod:`tvm_bsp.kernels.epilogue`).
LINEAR_ACTIVATIONS = ACTIVATIONS


#: Scope of the accumulators: a stack array of the thread (see the module docstring).
ACC_SCOPE = "global"


@functools.lru_cache(maxsize=64)
def dense_linear(
    rows: int,
    cols: int,
    lanes: int = 16,
    frames: int = 8,
    parallel: bool = True,
    activation: str = "none",
    k_split: int = 2,
) -> tvm.tirx.PrimFunc:
    """Dense ``y = act(x W^T + b)`` with ``W`` ``(rows, cols)`` in row panels.

    A tile of one frame (the frames left over by the ``F``-frame tiles, e.g. a single
    streaming frame) splits the columns over ``k_split`` accumulators to hide FMA latency.
    """
    M, K, P, F = rows, cols, lanes, frames
    Q, QF, TAIL = -(-M // P), M // P, M % P
    KS = k_split if 2 * k_split <= K else 1
    act = activation_expr(activation)

    @T.macro
    def store(BI, Y, acc, p, n, f):
        for v in T.vectorized(P):
            acc[f * P + v] = act(acc[f * P + v] + BI[p * P + v])
        if p < QF:
            for v in T.vectorized(P):
                Y[n, p * P + v] = acc[f * P + v]
        else:
            for v in T.serial(TAIL):
                Y[n, p * P + v] = acc[f * P + v]

    @T.macro
    def tile(X, W, BI, Y, acc, p, n0):
        for i in T.vectorized(F * P):
            acc[i] = T.float32(0)
        for k in range(K):
            for f in T.unroll(F):
                for v in T.vectorized(P):
                    acc[f * P + v] = acc[f * P + v] + W[(p * K + k) * P + v] * X[n0 + f, k]
        for f in T.unroll(F):
            store(BI, Y, acc, p, n0 + f, f)

    @T.macro
    def single(X, W, BI, Y, acc, p, n):
        for i in T.vectorized(KS * P):
            acc[i] = T.float32(0)
        for k in range(K // KS):
            for s in T.unroll(KS):
                for v in T.vectorized(P):
                    acc[s * P + v] = (
                        acc[s * P + v] + W[(p * K + k * KS + s) * P + v] * X[n, k * KS + s]
                    )
        for k in range(K % KS):
            for v in T.vectorized(P):
                acc[v] = acc[v] + W[(p * K + K // KS * KS + k) * P + v] * X[n, K // KS * KS + k]
        for s in T.unroll(KS - 1):
            for v in T.vectorized(P):
                acc[v] = acc[v] + acc[(s + 1) * P + v]
        store(BI, Y, acc, p, n, 0)

    @T.prim_func
    def linear(x_h: T.handle, w_h: T.handle, b_h: T.handle, y_h: T.handle):
        T.func_attr({"tirx.noalias": True})
        n = T.int64()
        x = T.match_buffer(x_h, (n, K), "float32")
        w = T.match_buffer(w_h, (Q * K * P,), "float32")
        bias = T.match_buffer(b_h, (Q * P,), "float32")
        y = T.match_buffer(y_h, (n, M), "float32")
        for p in T.parallel(Q) if parallel else T.serial(Q):
            acc = T.alloc_buffer((max(F, KS) * P,), "float32", scope=ACC_SCOPE)
            for no in range(n // F):
                tile(x, w, bias, y, acc, p, no * F)
            for r in range(n % F):
                single(x, w, bias, y, acc, p, n // F * F + r)

    return linear


@functools.lru_cache(maxsize=64)
def bspc_linear(
    ps: PanelShape,
    cols: int,
    frames: int = 8,
    parallel: bool = True,
    activation: str = "none",
    natural: bool = False,
) -> tvm.tirx.PrimFunc:
    """BSPC ``y = act(x W^T + b)``, ``W`` ``(ps.rows, cols)`` in the panel layout.

    Every panel's column count is a multiple of the layout's ``k_split``; a one-frame tile
    uses that many accumulators. ``natural``: the layout was packed with
    ``row_order="natural"`` or ``"grouped"`` (a panel's rows ascend, dummies last), so a panel
    whose last lane is ``P - 1`` rows after its first holds ``P`` consecutive rows and stores
    them as one vector (any other order scatters).
    """
    M, K, P, F, NT, KS = ps.rows, cols, ps.lanes, frames, ps.threads, ps.k_split
    act = activation_expr(activation)

    def consecutive(PR, pp):  # False at parse time: no branch is generated
        return natural and PR[pp * P + P - 1] == PR[pp * P] + P - 1

    @T.macro
    def scatter(PR, BI, Y, acc, pp, n, f):
        for v in T.vectorized(P):
            acc[f * P + v] = act(acc[f * P + v] + BI[pp * P + v])
        if consecutive(PR, pp):
            for v in T.vectorized(P):
                Y[n, PR[pp * P] + v] = acc[f * P + v]
        else:
            for v in T.vectorized(P):
                Y[n, PR[pp * P + v]] = acc[f * P + v]

    @T.macro
    def tile(X, PP, PR, CO, VA, BI, Y, acc, pp, n0):
        for i in T.vectorized(F * P):
            acc[i] = T.float32(0)
        for j in range(PP[pp + 1] - PP[pp]):
            for f in T.unroll(F):
                for v in T.vectorized(P):
                    acc[f * P + v] = (
                        acc[f * P + v] + VA[(PP[pp] + j) * P + v] * X[n0 + f, CO[PP[pp] + j]]
                    )
        for f in T.unroll(F):
            scatter(PR, BI, Y, acc, pp, n0 + f, f)

    @T.macro
    def single(X, PP, PR, CO, VA, BI, Y, acc, pp, n):
        for i in T.vectorized(KS * P):
            acc[i] = T.float32(0)
        for j in range((PP[pp + 1] - PP[pp]) // KS):
            for s in T.unroll(KS):
                for v in T.vectorized(P):
                    acc[s * P + v] = (
                        acc[s * P + v]
                        + VA[(PP[pp] + j * KS + s) * P + v] * X[n, CO[PP[pp] + j * KS + s]]
                    )
        for s in T.unroll(KS - 1):
            for v in T.vectorized(P):
                acc[v] = acc[v] + acc[(s + 1) * P + v]
        scatter(PR, BI, Y, acc, pp, n, 0)

    @T.prim_func
    def linear_bspc(
        x_h: T.handle,
        tp_h: T.handle,
        pp_h: T.handle,
        pr_h: T.handle,
        co_h: T.handle,
        va_h: T.handle,
        b_h: T.handle,
        y_h: T.handle,
    ):
        # buffers are named as the packed arrays: they name the PrimFunc's parameters
        T.func_attr({"tirx.noalias": True})
        n = T.int64()
        x = T.match_buffer(x_h, (n, K), "float32")
        thread_ptr = T.match_buffer(tp_h, (NT + 1,), "int32")
        panel_ptr = T.match_buffer(pp_h, (T.int64(),), "int32")
        panel_rows = T.match_buffer(pr_h, (T.int64(),), "int32")
        cols = T.match_buffer(co_h, (T.int64(),), "int32")
        vals = T.match_buffer(va_h, (T.int64(),), "float32")
        bias = T.match_buffer(b_h, (T.int64(),), "float32")
        y = T.match_buffer(y_h, (n, M), "float32")
        for tid in T.parallel(NT) if parallel else T.serial(NT):
            acc = T.alloc_buffer((max(F, KS) * P,), "float32", scope=ACC_SCOPE)
            for q in range(thread_ptr[tid + 1] - thread_ptr[tid]):
                pp = thread_ptr[tid] + q
                for no in range(n // F):
                    tile(x, panel_ptr, panel_rows, cols, vals, bias, y, acc, pp, no * F)
                for r in range(n % F):
                    single(x, panel_ptr, panel_rows, cols, vals, bias, y, acc, pp, n // F * F + r)

    return linear_bspc
