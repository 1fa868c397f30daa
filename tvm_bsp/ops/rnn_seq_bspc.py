"""Time-loop kernels of a recurrent layer with a BSPC recurrent weight (CPU, ``llvm``).

Same contract as :mod:`tvm_bsp.ops.rnn_seq_dense` (one call per sequence, symbolic ``T`` and
``B``, input projection precomputed), but the recurrent product walks the BSPC matrix in the
kernel-side panel layout of :mod:`tvm_bsp.ops.layout`: every panel gathers ``h`` at its kept
columns once and broadcasts it to its ``P`` rows (BSPC's redundant-load elimination), and
threads own whole row stripes (balanced by the matrix's reorder). Because a stripe's rows
belong to arbitrary gates and units, a step has two phases separated by a barrier: the
product writes the recurrent pre-activations ``a (B, G*H)``, then every thread updates a share
of the units. The kaldi GRU splits its weight into the gate rows ``U_rz`` and the candidate
rows ``U_n`` (two products, four phases per step).

Each panel weight enters as five arrays, ``thread_ptr, panel_ptr, panel_rows, cols, vals``
(:data:`PANEL_ARRAYS`), with symbolic lengths. Signatures (outputs last; ``state`` as in
:mod:`tvm_bsp.ops.rnn_seq_dense`)::

    gru:       xp (T,B,3H), state, <U panels>, bhn (H,)          -> y (T,B,H), hT (B,H)
    kaldi_gru: xp (T,B,3H), state, <U_rz panels>, <U_n panels>   -> y, hT
    lstm:      xp (T,B,4H), state, <U panels>                    -> y, hT, cT
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import tvm
from tvm.script import tirx as T

from tvm_bsp.ops.layout import PanelLayout
from tvm_bsp.ops.rnn_gates import gru_gates, kaldi_reset, kaldi_update, lstm_gates
from tvm_bsp.ops.rnn_phase import phase_loop

#: The panel-layout arrays a sequence kernel takes per BSPC weight, in order.
PANEL_ARRAYS = ("thread_ptr", "panel_ptr", "cols", "vals", "row_slot")


@dataclass(frozen=True)
class PanelShape:
    """The compile-time facts of a panel layout a kernel depends on.

    Array lengths are not among them: kernels take the arrays with symbolic sizes, so one
    PrimFunc serves every matrix of the same shape and knobs (and generated kernels are
    cached).
    """

    rows: int
    lanes: int
    k_split: int
    threads: int

    @classmethod
    def of(cls, layout: PanelLayout) -> PanelShape:
        """The facts of ``layout``."""
        return cls(layout.shape[0], layout.panel_rows, layout.k_split, layout.threads)


def _product(ps: PanelShape, parallel: bool):
    """Macro ``dst[b, slot] = sum_e vals * src[s, b, cols[e]]`` for every panel lane.

    Results stay in *slot* order (panel ``p``, lane ``v`` at ``p * P + v``): one vector store
    per panel instead of a scatter to the rows; the gate phase gathers through ``row_slot``.
    """
    P, K, NT = ps.lanes, ps.k_split, ps.threads

    @T.macro
    def product(TP, PP, CO, VA, src, s, dst, nb):
        for tid in phase_loop(NT, parallel):
            acc = T.alloc_buffer((K * P,), "float32", scope="local")
            if tid < NT:
                for q in range(TP[tid + 1] - TP[tid]):
                    pp = T.meta_var(TP[tid] + q)
                    for b in range(nb):
                        for i in T.vectorized(K * P):
                            acc[i] = T.float32(0)
                        for e in range((PP[pp + 1] - PP[pp]) // K):
                            for k in T.unroll(K):
                                for v in T.vectorized(P):
                                    acc[k * P + v] = (
                                        acc[k * P + v]
                                        + VA[(PP[pp] + e * K + k) * P + v]
                                        * src[s, b, CO[PP[pp] + e * K + k]]
                                    )
                        for k in T.unroll(K - 1):
                            for v in T.vectorized(P):
                                acc[v] = acc[v] + acc[(k + 1) * P + v]
                        for v in T.vectorized(P):
                            dst[b, pp * P + v] = acc[v]

    return product


def _unit_tiles(hidden: int, lanes: int, gates: int, parallel: bool, update):
    """Macro running ``update`` on every tile of units, fed from the slot-ordered ``GA``.

    The pre-activation of gate ``g`` of unit ``u`` is ``GA[b, RS[g*H + u]]`` (``RS`` the
    layout's ``row_slot``); the tile's values are gathered into ``acc`` first, so the gate
    macros read the same local layout as in the dense kernels.
    """
    H, P, G = hidden, lanes, gates
    Q, QF, TAIL = -(-H // P), H // P, max(H % P, 1)

    @T.macro
    def tiles(GA, RS, nb, *args):
        for q in phase_loop(Q, parallel):
            acc = T.alloc_buffer((G * P,), "float32", scope="local")
            S = T.alloc_buffer((4 * P,), "float32", scope="local")
            if q < Q:
                for b in range(nb):
                    if q < QF:
                        for g in T.unroll(G):
                            for v in T.vectorized(P):
                                acc[g * P + v] = GA[b, RS[g * H + q * P + v]]
                        update(acc, S, b, q * P, P, *args)
                    else:
                        for g in T.unroll(G):
                            for v in T.vectorized(TAIL):
                                acc[g * P + v] = GA[b, RS[g * H + q * P + v]]
                        update(acc, S, b, q * P, TAIL, *args)

    return tiles


@functools.lru_cache(maxsize=64)
def bspc_gru_sequence(
    hidden: int,
    u: PanelShape,
    lanes: int = 16,
    parallel: bool = True,
    exact: bool = False,
    layer: int = 0,
) -> tvm.tirx.PrimFunc:
    """Sequence kernel of a ``torch.nn.GRU`` layer with a BSPC ``U`` (``3H x H``)."""
    H, P = hidden, lanes
    product = _product(u, parallel)
    gru = gru_gates(H, P, exact)

    @T.macro
    def update(acc, S, b, u0, width, XP, BHN, hb, Y, t):
        gru(XP, acc, BHN, hb, Y, S, t, b, u0, width)

    gates = _unit_tiles(H, P, 3, parallel, update)

    @T.prim_func
    def gru_sequence_bspc(
        xp_h: T.handle,
        s0_h: T.handle,
        tp_h: T.handle,
        pp_h: T.handle,
        co_h: T.handle,
        va_h: T.handle,
        rs_h: T.handle,
        bhn_h: T.handle,
        y_h: T.handle,
        ht_h: T.handle,
    ):
        T.func_attr({"tirx.noalias": True})
        nt = T.int64()
        nb = T.int64()
        XP = T.match_buffer(xp_h, (nt, nb, 3 * H), "float32")
        S0 = T.match_buffer(s0_h, (T.int64(), nb, H), "float32")
        npp = T.int64()
        TP = T.match_buffer(tp_h, (u.threads + 1,), "int32")
        PP = T.match_buffer(pp_h, (npp,), "int32")
        CO = T.match_buffer(co_h, (T.int64(),), "int32")
        VA = T.match_buffer(va_h, (T.int64(),), "float32")
        RS = T.match_buffer(rs_h, (T.int64(),), "int32")
        BHN = T.match_buffer(bhn_h, (H,), "float32")
        Y = T.match_buffer(y_h, (nt, nb, H), "float32")
        HT = T.match_buffer(ht_h, (nb, H), "float32")
        hb = T.alloc_buffer((2, nb, H), "float32")
        GA = T.alloc_buffer((nb, (npp - 1) * u.lanes), "float32")
        for b, j in T.grid(nb, H):
            hb[0, b, j] = S0[layer, b, j]
        if parallel:
            with T.attr(0, "pragma_parallel_launch_point", 1):
                for t in range(nt):
                    with T.attr(0, "pragma_parallel_barrier_when_finish", 1):
                        product(TP, PP, CO, VA, hb, t % 2, GA, nb)
                    with T.attr(0, "pragma_parallel_barrier_when_finish", 1):
                        gates(GA, RS, nb, XP, BHN, hb, Y, t)
        else:
            for t in range(nt):
                product(TP, PP, CO, VA, hb, t % 2, GA, nb)
                gates(GA, RS, nb, XP, BHN, hb, Y, t)
        for b, j in T.grid(nb, H):
            HT[b, j] = hb[nt % 2, b, j]

    return gru_sequence_bspc


@functools.lru_cache(maxsize=64)
def bspc_kaldi_gru_sequence(
    hidden: int,
    u_rz: PanelShape,
    u_n: PanelShape,
    lanes: int = 16,
    parallel: bool = True,
    scale: float = 1.0,
    exact: bool = False,
    layer: int = 0,
) -> tvm.tirx.PrimFunc:
    """Sequence kernel of a pytorch-kaldi GRU layer with BSPC ``U_rz`` and ``U_n``."""
    H, P = hidden, lanes
    product_rz = _product(u_rz, parallel)
    product_n = _product(u_n, parallel)
    reset_m = kaldi_reset(H, P, exact)
    update_m = kaldi_update(H, P, scale, exact)

    @T.macro
    def reset_tile(acc, S, b, u0, width, XP, hb, rh, az, t):
        reset_m(XP, acc, hb, rh, az, S, t, b, u0, width)

    @T.macro
    def update_tile(acc, S, b, u0, width, XP, az, hb, Y, t):
        update_m(XP, acc, az, hb, Y, S, t, b, u0, width)

    resets = _unit_tiles(H, P, 2, parallel, reset_tile)
    updates = _unit_tiles(H, P, 1, parallel, update_tile)

    @T.prim_func
    def kaldi_gru_sequence_bspc(
        xp_h: T.handle,
        s0_h: T.handle,
        atp_h: T.handle,
        app_h: T.handle,
        aco_h: T.handle,
        ava_h: T.handle,
        ars_h: T.handle,
        ntp_h: T.handle,
        npp_h: T.handle,
        nco_h: T.handle,
        nva_h: T.handle,
        nrs_h: T.handle,
        y_h: T.handle,
        ht_h: T.handle,
    ):
        T.func_attr({"tirx.noalias": True})
        nt = T.int64()
        nb = T.int64()
        XP = T.match_buffer(xp_h, (nt, nb, 3 * H), "float32")
        S0 = T.match_buffer(s0_h, (T.int64(), nb, H), "float32")
        app = T.int64()
        npp = T.int64()
        ATP = T.match_buffer(atp_h, (u_rz.threads + 1,), "int32")
        APP = T.match_buffer(app_h, (app,), "int32")
        ACO = T.match_buffer(aco_h, (T.int64(),), "int32")
        AVA = T.match_buffer(ava_h, (T.int64(),), "float32")
        ARS = T.match_buffer(ars_h, (T.int64(),), "int32")
        NTP = T.match_buffer(ntp_h, (u_n.threads + 1,), "int32")
        NPP = T.match_buffer(npp_h, (npp,), "int32")
        NCO = T.match_buffer(nco_h, (T.int64(),), "int32")
        NVA = T.match_buffer(nva_h, (T.int64(),), "float32")
        NRS = T.match_buffer(nrs_h, (T.int64(),), "int32")
        Y = T.match_buffer(y_h, (nt, nb, H), "float32")
        HT = T.match_buffer(ht_h, (nb, H), "float32")
        hb = T.alloc_buffer((2, nb, H), "float32")
        rh = T.alloc_buffer((1, nb, H), "float32")
        az = T.alloc_buffer((nb, H), "float32")
        GA = T.alloc_buffer((nb, (app - 1) * u_rz.lanes), "float32")
        GN = T.alloc_buffer((nb, (npp - 1) * u_n.lanes), "float32")
        for b, j in T.grid(nb, H):
            hb[0, b, j] = S0[layer, b, j]
        if parallel:
            with T.attr(0, "pragma_parallel_launch_point", 1):
                for t in range(nt):
                    with T.attr(0, "pragma_parallel_barrier_when_finish", 1):
                        product_rz(ATP, APP, ACO, AVA, hb, t % 2, GA, nb)
                    with T.attr(0, "pragma_parallel_barrier_when_finish", 1):
                        resets(GA, ARS, nb, XP, hb, rh, az, t)
                    with T.attr(0, "pragma_parallel_barrier_when_finish", 1):
                        product_n(NTP, NPP, NCO, NVA, rh, 0, GN, nb)
                    with T.attr(0, "pragma_parallel_barrier_when_finish", 1):
                        updates(GN, NRS, nb, XP, az, hb, Y, t)
        else:
            for t in range(nt):
                product_rz(ATP, APP, ACO, AVA, hb, t % 2, GA, nb)
                resets(GA, ARS, nb, XP, hb, rh, az, t)
                product_n(NTP, NPP, NCO, NVA, rh, 0, GN, nb)
                updates(GN, NRS, nb, XP, az, hb, Y, t)
        for b, j in T.grid(nb, H):
            HT[b, j] = hb[nt % 2, b, j]

    return kaldi_gru_sequence_bspc


@functools.lru_cache(maxsize=64)
def bspc_lstm_sequence(
    hidden: int,
    u: PanelShape,
    lanes: int = 16,
    parallel: bool = True,
    exact: bool = False,
    layer: int = 0,
) -> tvm.tirx.PrimFunc:
    """Sequence kernel of a ``torch.nn.LSTM`` layer with a BSPC ``U`` (``4H x H``)."""
    H, P = hidden, lanes
    product = _product(u, parallel)
    lstm = lstm_gates(H, P, exact)

    @T.macro
    def update(acc, S, b, u0, width, XP, cb, hb, Y, t):
        lstm(XP, acc, cb, hb, Y, S, t, b, u0, width)

    gates = _unit_tiles(H, P, 4, parallel, update)

    @T.prim_func
    def lstm_sequence_bspc(
        xp_h: T.handle,
        s0_h: T.handle,
        tp_h: T.handle,
        pp_h: T.handle,
        co_h: T.handle,
        va_h: T.handle,
        rs_h: T.handle,
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
        Y = T.match_buffer(y_h, (nt, nb, H), "float32")
        HT = T.match_buffer(ht_h, (nb, H), "float32")
        CT = T.match_buffer(ct_h, (nb, H), "float32")
        hb = T.alloc_buffer((2, nb, H), "float32")
        cb = T.alloc_buffer((nb, H), "float32")
        GA = T.alloc_buffer((nb, (npp - 1) * u.lanes), "float32")
        for b, j in T.grid(nb, H):
            hb[0, b, j] = S0[layer, 0, b, j]
            cb[b, j] = S0[layer, 1, b, j]
        if parallel:
            with T.attr(0, "pragma_parallel_launch_point", 1):
                for t in range(nt):
                    with T.attr(0, "pragma_parallel_barrier_when_finish", 1):
                        product(TP, PP, CO, VA, hb, t % 2, GA, nb)
                    with T.attr(0, "pragma_parallel_barrier_when_finish", 1):
                        gates(GA, RS, nb, XP, cb, hb, Y, t)
        else:
            for t in range(nt):
                product(TP, PP, CO, VA, hb, t % 2, GA, nb)
                gates(GA, RS, nb, XP, cb, hb, Y, t)
        for b, j in T.grid(nb, H):
            HT[b, j] = hb[nt % 2, b, j]
            CT[b, j] = cb[b, j]

    return lstm_sequence_bspc
