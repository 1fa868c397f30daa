"""Time-loop kernels of a projected LSTM layer (``torch.nn.LSTM(proj_size=R)``, CPU).

Per step: the recurrent product ``U h`` (``U`` ``(4H, R)``, dense gate tiles or BSPC panels)
and the gate math give ``c`` and ``m = σ(o) * tanh(c)`` (``H`` units), then, after a
barrier, the projection ``h = W_hr m`` (``W_hr`` ``(R, H)`` dense, in row panels of ``P``
rows: :func:`tvm_bsp.ops.rnn_pack.pack_gate_tiles` with one gate) writes the new state and
``Y[t]``; a second barrier ends the step. Everything else (symbolic ``T`` and ``B``, input
projection precomputed, the parallel region around the time loop, the double-buffered
``h``) is as in :mod:`tvm_bsp.ops.rnn_seq_dense` and :mod:`tvm_bsp.ops.rnn_seq_bspc`.

Signatures (``Q = ceil(H / P)``, ``QR = ceil(R / P)``; ``state`` is ``(L, 2, B, H)``, ``h`` in
``[layer, 0, :, :R]``)::

    dense U: xp (T,B,4H), state, u (Q*4*R*P,), w_hr (QR*H*P,)        -> y (T,B,R), hT (B,H), cT
    BSPC U:  xp (T,B,4H), state, <U panels>, w_hr (QR*H*P,)          -> y (T,B,R), hT (B,H), cT

``hT`` has zeros past ``R`` (the state layout of :mod:`tvm_bsp.frontend.model`).
"""

from __future__ import annotations

import functools

import tvm
from tvm.script import tirx as T

from tvm_bsp.ops.rnn_gates import lstm_proj_gates
from tvm_bsp.ops.rnn_phase import phase_loop
from tvm_bsp.ops.rnn_seq_bspc import PanelShape, _product, _unit_tiles
from tvm_bsp.ops.rnn_seq_dense import _tile_product, _tiles


def _projection(hidden: int, proj: int, lanes: int, parallel: bool):
    """Macro ``h[(t+1) % 2] = Y[t] = W_hr m`` over the ``ceil(R / P)`` row panels."""
    H, R, P = hidden, proj, lanes
    QR, QRF, TAIL = _tiles(R, P)
    product = _tile_product(H, P, 1)  # one "gate" of R rows over H columns

    @T.macro
    def projection(WR, M, hb, Y, nb, t):
        for q in phase_loop(QR, parallel):
            acc = T.alloc_buffer((2 * P,), "float32", scope="local")
            if q < QR:
                for b in range(nb):
                    product(WR, M, acc, q, b, 0)
                    if q < QRF:
                        for v in T.vectorized(P):
                            hb[(t + 1) % 2, b, q * P + v] = acc[v]
                        for v in T.vectorized(P):
                            Y[t, b, q * P + v] = acc[v]
                    else:
                        for v in T.vectorized(TAIL):
                            hb[(t + 1) % 2, b, q * P + v] = acc[v]
                        for v in T.vectorized(TAIL):
                            Y[t, b, q * P + v] = acc[v]

    return projection


@functools.lru_cache(maxsize=64)
def dense_lstm_proj_sequence(
    hidden: int,
    proj: int,
    lanes: int = 16,
    parallel: bool = True,
    exact: bool = False,
    layer: int = 0,
) -> tvm.tirx.PrimFunc:
    """Sequence kernel of a projected LSTM layer with a dense ``U`` (module docstring)."""
    H, R, P, G = hidden, proj, lanes, 4
    Q, QF, TAIL = _tiles(H, P)
    QR = _tiles(R, P)[0]
    product = _tile_product(R, P, G)  # U (4H, R): R columns
    gates = lstm_proj_gates(H, P, exact)
    projection = _projection(H, R, P, parallel)

    @T.macro
    def cell(XP, U, cb, hb, M, nb, t):
        for q in phase_loop(Q, parallel):
            acc = T.alloc_buffer((G * P,), "float32", scope="local")
            S = T.alloc_buffer((4 * P,), "float32", scope="local")
            if q < Q:
                for b in range(nb):
                    product(U, hb, acc, q, b, t % 2)
                    if q < QF:
                        gates(XP, acc, cb, M, S, t, b, q * P, P)
                    else:
                        gates(XP, acc, cb, M, S, t, b, q * P, TAIL)

    @T.prim_func
    def lstm_proj_sequence(
        xp_h: T.handle,
        s0_h: T.handle,
        u_h: T.handle,
        wr_h: T.handle,
        y_h: T.handle,
        ht_h: T.handle,
        ct_h: T.handle,
    ):
        T.func_attr({"tirx.noalias": True})
        nt = T.int64()
        nb = T.int64()
        XP = T.match_buffer(xp_h, (nt, nb, G * H), "float32")
        S0 = T.match_buffer(s0_h, (T.int64(), 2, nb, H), "float32")
        U = T.match_buffer(u_h, (Q * G * R * P,), "float32")
        WR = T.match_buffer(wr_h, (QR * H * P,), "float32")
        Y = T.match_buffer(y_h, (nt, nb, R), "float32")
        HT = T.match_buffer(ht_h, (nb, H), "float32")
        CT = T.match_buffer(ct_h, (nb, H), "float32")
        hb = T.alloc_buffer((2, nb, R), "float32")
        cb = T.alloc_buffer((nb, H), "float32")
        M = T.alloc_buffer((1, nb, H), "float32")
        for b, j in T.grid(nb, R):
            hb[0, b, j] = S0[layer, 0, b, j]
        for b, j in T.grid(nb, H):
            cb[b, j] = S0[layer, 1, b, j]
        if parallel:
            with T.attr(0, "pragma_parallel_launch_point", 1):
                for t in range(nt):
                    with T.attr(0, "pragma_parallel_barrier_when_finish", 1):
                        cell(XP, U, cb, hb, M, nb, t)
                    with T.attr(0, "pragma_parallel_barrier_when_finish", 1):
                        projection(WR, M, hb, Y, nb, t)
        else:
            for t in range(nt):
                cell(XP, U, cb, hb, M, nb, t)
                projection(WR, M, hb, Y, nb, t)
        for b, j in T.grid(nb, H):
            HT[b, j] = T.if_then_else(j < R, hb[nt % 2, b, T.min(j, R - 1)], T.float32(0))
            CT[b, j] = cb[b, j]

    return lstm_proj_sequence


@functools.lru_cache(maxsize=64)
def bspc_lstm_proj_sequence(
    hidden: int,
    proj: int,
    u: PanelShape,
    lanes: int = 16,
    parallel: bool = True,
    exact: bool = False,
    layer: int = 0,
) -> tvm.tirx.PrimFunc:
    """Sequence kernel of a projected LSTM layer with a BSPC ``U`` (``4H x R``)."""
    H, R, P = hidden, proj, lanes
    QR = _tiles(R, P)[0]
    product = _product(u, parallel)
    lstm = lstm_proj_gates(H, P, exact)
    projection = _projection(H, R, P, parallel)

    @T.macro
    def update(acc, S, b, u0, width, XP, cb, M, t):
        lstm(XP, acc, cb, M, S, t, b, u0, width)

    gates = _unit_tiles(H, P, 4, parallel, update)

    @T.prim_func
    def lstm_proj_sequence_bspc(
        xp_h: T.handle,
        s0_h: T.handle,
        tp_h: T.handle,
        pp_h: T.handle,
        co_h: T.handle,
        va_h: T.handle,
        rs_h: T.handle,
        wr_h: T.handle,
        y_h: T.handle,
        ht_h: T.handle,
        ct_h: T.handle,
    ):
        T.func_attr({"tirx.noalias": True})
        nt = T.int64()
        nb = T.int64()
        XP = T.match_buffer(xp_h, (nt, nb, 4 * H), "float32")
        S0 = T.match_buffer(s0_h, (T.int64(), 2, nb, H), "float32")
        npp = T.int64()
        TP = T.match_buffer(tp_h, (u.threads + 1,), "int32")
        PP = T.match_buffer(pp_h, (npp,), "int32")
        CO = T.match_buffer(co_h, (T.int64(),), "int32")
        VA = T.match_buffer(va_h, (T.int64(),), "float32")
        RS = T.match_buffer(rs_h, (T.int64(),), "int32")
        WR = T.match_buffer(wr_h, (QR * H * P,), "float32")
        Y = T.match_buffer(y_h, (nt, nb, R), "float32")
        HT = T.match_buffer(ht_h, (nb, H), "float32")
        CT = T.match_buffer(ct_h, (nb, H), "float32")
        hb = T.alloc_buffer((2, nb, R), "float32")
        cb = T.alloc_buffer((nb, H), "float32")
        M = T.alloc_buffer((1, nb, H), "float32")
        GA = T.alloc_buffer((nb, (npp - 1) * u.lanes), "float32")
        for b, j in T.grid(nb, R):
            hb[0, b, j] = S0[layer, 0, b, j]
        for b, j in T.grid(nb, H):
            cb[b, j] = S0[layer, 1, b, j]
        if parallel:
            with T.attr(0, "pragma_parallel_launch_point", 1):
                for t in range(nt):
                    with T.attr(0, "pragma_parallel_barrier_when_finish", 1):
                        product(TP, PP, CO, VA, hb, t % 2, GA, nb)
                    with T.attr(0, "pragma_parallel_barrier_when_finish", 1):
                        gates(GA, RS, nb, XP, cb, M, t)
                    with T.attr(0, "pragma_parallel_barrier_when_finish", 1):
                        projection(WR, M, hb, Y, nb, t)
        else:
            for t in range(nt):
                product(TP, PP, CO, VA, hb, t % 2, GA, nb)
                gates(GA, RS, nb, XP, cb, M, t)
                projection(WR, M, hb, Y, nb, t)
        for b, j in T.grid(nb, H):
            HT[b, j] = T.if_then_else(j < R, hb[nt % 2, b, T.min(j, R - 1)], T.float32(0))
            CT[b, j] = cb[b, j]

    return lstm_proj_sequence_bspc
