"""Time-loop kernels of a recurrent layer with dense recurrent weights (CPU, ``llvm``).

One PrimFunc runs a whole sequence of symbolic length ``T`` (and batch ``B``): the loop over
time is inside, so an utterance costs one call. The input projection ``xp = W x + b`` of all
frames comes in precomputed (one mat-mat product before the call); per step the kernel does
the recurrent product and the gate math, fused per *tile* of ``P`` hidden units: the weights
are gate tiles (:func:`tvm_bsp.ops.rnn_pack.pack_gate_tiles`), so a tile's ``G`` accumulator
vectors are complete after its product and its units are updated at once
(:mod:`tvm_bsp.ops.rnn_gates`).

Parallel form: the whole time loop is one parallel region (``pragma_parallel_launch_point``);
every thread walks the time loop, takes a share of the tiles of each step, and meets the
others at a barrier (``pragma_parallel_barrier_when_finish``) before the next step reads the
new state. The state is double-buffered, so one barrier per step suffices (two for the kaldi
GRU, whose candidate product needs the complete ``r * h``). The serial form
(``parallel=False``) has the same loops without the region, for layers too small to share.

Signatures (``Q = ceil(H / P)``, all float32, outputs last; ``state`` is the stacked state of
all layers, ``(L, B, H)`` or ``(L, 2, B, H)`` for the LSTM, and the kernel starts from
``state[layer]``, a compile-time constant, so no slicing op runs before it)::

    gru:       xp (T,B,3H), state, u (Q*3*H*P,), bhn (H,)           -> y (T,B,H), hT (B,H)
    kaldi_gru: xp (T,B,3H), state, u_rz (Q*2*H*P,), u_n (Q*H*P,)    -> y, hT
    lstm:      xp (T,B,4H), state, u (Q*4*H*P,)                     -> y, hT, cT
"""

from __future__ import annotations

import functools

import tvm
from tvm.script import tirx as T

from tvm_bsp.ops.rnn_gates import gru_gates, kaldi_reset, kaldi_update, lstm_gates
from tvm_bsp.ops.rnn_phase import phase_loop


def _tiles(hidden: int, lanes: int) -> tuple[int, int, int]:
    """``(Q, full tiles, units of the partial tile or 1)``."""
    return -(-hidden // lanes), hidden // lanes, max(hidden % lanes, 1)


def _tile_product(hidden: int, lanes: int, gates: int):
    """Macro ``acc[g*P + v] = sum_k U[q, g, k, v] * src[slot, b, k]`` for one tile.

    Fewer than three gates leave FMA latency exposed, so their columns are split over two
    accumulators per gate (``acc`` must then hold ``2 * G * P`` values).
    """
    H, P, G = hidden, lanes, gates
    KS = 2 if G < 3 and H >= 4 else 1
    HK = H // KS * KS

    @T.macro
    def product(U, src, acc, q, b, slot):
        for i in T.vectorized(KS * G * P):
            acc[i] = T.float32(0)
        for k in range(HK // KS):
            for s in T.unroll(KS):
                for g in T.unroll(G):
                    for v in T.vectorized(P):
                        acc[(s * G + g) * P + v] = (
                            acc[(s * G + g) * P + v]
                            + U[((q * G + g) * H + k * KS + s) * P + v] * src[slot, b, k * KS + s]
                        )
        for k in range(H - HK):
            for g in T.unroll(G):
                for v in T.vectorized(P):
                    acc[g * P + v] = (
                        acc[g * P + v]
                        + U[((q * G + g) * H + HK + k) * P + v] * src[slot, b, HK + k]
                    )
        for s in T.unroll(KS - 1):
            for i in T.vectorized(G * P):
                acc[i] = acc[i] + acc[(s + 1) * G * P + i]

    return product


@functools.lru_cache(maxsize=64)
def dense_gru_sequence(
    hidden: int,
    lanes: int = 16,
    parallel: bool = True,
    exact: bool = False,
    layer: int = 0,
) -> tvm.tirx.PrimFunc:
    """Sequence kernel of a ``torch.nn.GRU`` layer (see the module docstring)."""
    H, P, G = hidden, lanes, 3
    Q, QF, TAIL = _tiles(H, P)
    product = _tile_product(H, P, G)
    gates = gru_gates(H, P, exact)

    @T.macro
    def step(XP, U, BHN, Y, hb, nb, t):
        for q in phase_loop(Q, parallel):
            acc = T.alloc_buffer((G * P,), "float32", scope="local")
            S = T.alloc_buffer((4 * P,), "float32", scope="local")
            if q < Q:
                for b in range(nb):
                    product(U, hb, acc, q, b, t % 2)
                    if q < QF:
                        gates(XP, acc, BHN, hb, Y, S, t, b, q * P, P)
                    else:
                        gates(XP, acc, BHN, hb, Y, S, t, b, q * P, TAIL)

    @T.prim_func
    def gru_sequence(
        xp_h: T.handle,
        s0_h: T.handle,
        u_h: T.handle,
        bhn_h: T.handle,
        y_h: T.handle,
        ht_h: T.handle,
    ):
        T.func_attr({"tirx.noalias": True})
        nt = T.int64()
        nb = T.int64()
        XP = T.match_buffer(xp_h, (nt, nb, G * H), "float32")
        S0 = T.match_buffer(s0_h, (T.int64(), nb, H), "float32")
        U = T.match_buffer(u_h, (Q * G * H * P,), "float32")
        BHN = T.match_buffer(bhn_h, (H,), "float32")
        Y = T.match_buffer(y_h, (nt, nb, H), "float32")
        HT = T.match_buffer(ht_h, (nb, H), "float32")
        hb = T.alloc_buffer((2, nb, H), "float32")
        for b, j in T.grid(nb, H):
            hb[0, b, j] = S0[layer, b, j]
        if parallel:
            with T.attr(0, "pragma_parallel_launch_point", 1):
                for t in range(nt):
                    with T.attr(0, "pragma_parallel_barrier_when_finish", 1):
                        step(XP, U, BHN, Y, hb, nb, t)
        else:
            for t in range(nt):
                step(XP, U, BHN, Y, hb, nb, t)
        for b, j in T.grid(nb, H):
            HT[b, j] = hb[nt % 2, b, j]

    return gru_sequence


@functools.lru_cache(maxsize=64)
def dense_kaldi_gru_sequence(
    hidden: int,
    lanes: int = 16,
    parallel: bool = True,
    scale: float = 1.0,
    exact: bool = False,
    layer: int = 0,
) -> tvm.tirx.PrimFunc:
    """Sequence kernel of a pytorch-kaldi GRU layer (see the module docstring)."""
    H, P = hidden, lanes
    Q, QF, TAIL = _tiles(H, P)
    product_rz = _tile_product(H, P, 2)
    product_n = _tile_product(H, P, 1)
    reset = kaldi_reset(H, P, exact)
    update = kaldi_update(H, P, scale, exact)

    @T.macro
    def gates_phase(XP, URZ, hb, rh, az, nb, t):
        for q in phase_loop(Q, parallel):
            acc = T.alloc_buffer((4 * P,), "float32", scope="local")
            S = T.alloc_buffer((4 * P,), "float32", scope="local")
            if q < Q:
                for b in range(nb):
                    product_rz(URZ, hb, acc, q, b, t % 2)
                    if q < QF:
                        reset(XP, acc, hb, rh, az, S, t, b, q * P, P)
                    else:
                        reset(XP, acc, hb, rh, az, S, t, b, q * P, TAIL)

    @T.macro
    def candidate_phase(XP, UN, Y, hb, rh, az, nb, t):
        for q in phase_loop(Q, parallel):
            acc = T.alloc_buffer((2 * P,), "float32", scope="local")
            S = T.alloc_buffer((4 * P,), "float32", scope="local")
            if q < Q:
                for b in range(nb):
                    product_n(UN, rh, acc, q, b, 0)
                    if q < QF:
                        update(XP, acc, az, hb, Y, S, t, b, q * P, P)
                    else:
                        update(XP, acc, az, hb, Y, S, t, b, q * P, TAIL)

    @T.prim_func
    def kaldi_gru_sequence(
        xp_h: T.handle,
        s0_h: T.handle,
        urz_h: T.handle,
        un_h: T.handle,
        y_h: T.handle,
        ht_h: T.handle,
    ):
        T.func_attr({"tirx.noalias": True})
        nt = T.int64()
        nb = T.int64()
        XP = T.match_buffer(xp_h, (nt, nb, 3 * H), "float32")
        S0 = T.match_buffer(s0_h, (T.int64(), nb, H), "float32")
        URZ = T.match_buffer(urz_h, (Q * 2 * H * P,), "float32")
        UN = T.match_buffer(un_h, (Q * H * P,), "float32")
        Y = T.match_buffer(y_h, (nt, nb, H), "float32")
        HT = T.match_buffer(ht_h, (nb, H), "float32")
        hb = T.alloc_buffer((2, nb, H), "float32")
        rh = T.alloc_buffer((1, nb, H), "float32")
        az = T.alloc_buffer((nb, H), "float32")
        for b, j in T.grid(nb, H):
            hb[0, b, j] = S0[layer, b, j]
        if parallel:
            with T.attr(0, "pragma_parallel_launch_point", 1):
                for t in range(nt):
                    with T.attr(0, "pragma_parallel_barrier_when_finish", 1):
                        gates_phase(XP, URZ, hb, rh, az, nb, t)
                    with T.attr(0, "pragma_parallel_barrier_when_finish", 1):
                        candidate_phase(XP, UN, Y, hb, rh, az, nb, t)
        else:
            for t in range(nt):
                gates_phase(XP, URZ, hb, rh, az, nb, t)
                candidate_phase(XP, UN, Y, hb, rh, az, nb, t)
        for b, j in T.grid(nb, H):
            HT[b, j] = hb[nt % 2, b, j]

    return kaldi_gru_sequence


@functools.lru_cache(maxsize=64)
def dense_lstm_sequence(
    hidden: int,
    lanes: int = 16,
    parallel: bool = True,
    exact: bool = False,
    layer: int = 0,
) -> tvm.tirx.PrimFunc:
    """Sequence kernel of a ``torch.nn.LSTM`` layer (see the module docstring)."""
    H, P, G = hidden, lanes, 4
    Q, QF, TAIL = _tiles(H, P)
    product = _tile_product(H, P, G)
    gates = lstm_gates(H, P, exact)

    @T.macro
    def step(XP, U, Y, hb, cb, nb, t):
        for q in phase_loop(Q, parallel):
            acc = T.alloc_buffer((G * P,), "float32", scope="local")
            S = T.alloc_buffer((4 * P,), "float32", scope="local")
            if q < Q:
                for b in range(nb):
                    product(U, hb, acc, q, b, t % 2)
                    if q < QF:
                        gates(XP, acc, cb, hb, Y, S, t, b, q * P, P)
                    else:
                        gates(XP, acc, cb, hb, Y, S, t, b, q * P, TAIL)

    @T.prim_func
    def lstm_sequence(
        xp_h: T.handle,
        s0_h: T.handle,
        u_h: T.handle,
        y_h: T.handle,
        ht_h: T.handle,
        ct_h: T.handle,
    ):
        T.func_attr({"tirx.noalias": True})
        nt = T.int64()
        nb = T.int64()
        XP = T.match_buffer(xp_h, (nt, nb, G * H), "float32")
        S0 = T.match_buffer(s0_h, (T.int64(), 2, nb, H), "float32")
        U = T.match_buffer(u_h, (Q * G * H * P,), "float32")
        Y = T.match_buffer(y_h, (nt, nb, H), "float32")
        HT = T.match_buffer(ht_h, (nb, H), "float32")
        CT = T.match_buffer(ct_h, (nb, H), "float32")
        hb = T.alloc_buffer((2, nb, H), "float32")
        cb = T.alloc_buffer((nb, H), "float32")
        for b, j in T.grid(nb, H):
            hb[0, b, j] = S0[layer, 0, b, j]
            cb[b, j] = S0[layer, 1, b, j]
        if parallel:
            with T.attr(0, "pragma_parallel_launch_point", 1):
                for t in range(nt):
                    with T.attr(0, "pragma_parallel_barrier_when_finish", 1):
                        step(XP, U, Y, hb, cb, nb, t)
        else:
            for t in range(nt):
                step(XP, U, Y, hb, cb, nb, t)
        for b, j in T.grid(nb, H):
            HT[b, j] = hb[nt % 2, b, j]
            CT[b, j] = cb[b, j]

    return lstm_sequence
