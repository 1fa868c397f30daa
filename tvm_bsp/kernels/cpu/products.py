"""The recurrent products of the CPU time-loop kernels, one per weight form, and the tile walk.

Both forms leave the pre-activations of a tile of ``P`` hidden units in a local ``acc``
(gate ``g``, lane ``v`` at ``acc[g * P + v]``), the layout the cell statements
(:mod:`tvm_bsp.kernels.cell_math`) read:

dense (gate tiles, :func:`tvm_bsp.kernels.rnn_pack.pack_gate_tiles`)
    The product is fused into the unit phase: a tile's ``G`` accumulator vectors are
    complete after its product. Fewer than three gates leave FMA latency exposed, so their
    columns are split over two accumulators per gate.
BSPC (panel layout, :mod:`tvm_bsp.kernels.layout`)
    A phase of its own: threads own whole row stripes (balanced by the matrix's reorder);
    every panel gathers the state at its kept columns once and broadcasts it to its ``P``
    rows (BSPC's redundant-load elimination), and writes its ``P`` results in *slot* order
    (panel ``p``, lane ``v`` at ``p * P + v``: one vector store per panel). The unit phase
    then gathers each tile's pre-activations through ``row_slot``.
"""

from __future__ import annotations

from collections.abc import Callable

from tvm import tirx
from tvm.script.ir_builder import tirx as T

from tvm_bsp.kernels.cpu.phase import phase_loop
from tvm_bsp.kernels.layout import PanelShape
from tvm_bsp.kernels.tir_build import if_else, local, loop, store, vector_store, when

#: The panel-layout arrays a sequence kernel takes per BSPC weight, in order.
PANEL_ARRAYS = ("thread_ptr", "panel_ptr", "cols", "vals", "row_slot")


def tiles(units: int, lanes: int) -> tuple[int, int, int]:
    """``(Q, full tiles, units of the partial tile or 1)`` of ``units`` in tiles of ``lanes``."""
    return -(-units // lanes), units // lanes, max(units % lanes, 1)


def dense_accumulators(gates: int, lanes: int) -> int:
    """Size of ``acc`` for a dense tile product of ``gates`` gates (split columns below 3)."""
    return 2 * gates * lanes if gates < 3 else gates * lanes


def tile_product(U, src, slot, acc, q, b, columns: int, lanes: int, gates: int) -> None:
    """``acc[g*P + v] = sum_k U[q, g, k, v] * src[slot, b, k]`` for tile ``q``, sequence ``b``."""
    H, P, G = columns, lanes, gates
    KS = 2 if G < 3 and H >= 4 else 1
    HK = H // KS * KS
    vector_store(KS * G * P, lambda i: (acc, [i]), lambda i: T.float32(0))
    columns_loop = loop(T.serial(HK // KS), "k")
    with columns_loop as k, loop(T.unroll(KS), "s") as s, loop(T.unroll(G), "g") as g:
        vector_store(
            P,
            lambda v: (acc, [(s * G + g) * P + v]),
            lambda v: (
                acc[(s * G + g) * P + v]
                + U[((q * G + g) * H + k * KS + s) * P + v] * src[slot, b, k * KS + s]
            ),
        )
    with loop(T.serial(H - HK), "k") as k, loop(T.unroll(G), "g") as g:
        vector_store(
            P,
            lambda v: (acc, [g * P + v]),
            lambda v: acc[g * P + v] + U[((q * G + g) * H + HK + k) * P + v] * src[slot, b, HK + k],
        )
    with loop(T.unroll(KS - 1), "s") as s:
        vector_store(G * P, lambda i: (acc, [i]), lambda i: acc[i] + acc[(s + 1) * G * P + i])


def unit_phase(units: int, lanes: int, parallel: bool, acc_size: int, nb, product, gather, update):
    """Every tile of ``units``: ``product(acc, q, b)`` and/or ``gather(acc, q, b, width)``, then
    ``update(acc, S, b, u0, width)``.

    Threads share the tiles; the last tile may be partial (``width`` below ``P``). The dense
    product fills every lane whatever the width, so it runs before the tile's width is known.
    """
    P = lanes
    Q, QF, TAIL = tiles(units, P)
    with loop(phase_loop(Q, parallel), "q") as q:
        acc = local("acc", acc_size)
        S = local("S", 4 * P)
        with when(q < Q), loop(T.serial(nb), "b") as b:
            if product is not None:
                product(acc, q, b)

            def tile(width: int) -> Callable[[], None]:
                def emit() -> None:
                    if gather is not None:
                        gather(acc, q, b, width)
                    update(acc, S, b, q * P, width)

                return emit

            if_else(q < QF, tile(P), tile(TAIL))


def panel_product(ps: PanelShape, parallel: bool, arrays, src, slot, dst, nb) -> None:
    """``dst[b, slot p*P+v] = sum_e vals * src[slot, b, cols[e]]`` over every panel lane."""
    P, K, NT = ps.lanes, ps.k_split, ps.threads
    TP, PP, CO, VA = arrays[:4]
    with loop(phase_loop(NT, parallel), "tid") as tid:
        acc = local("acc", K * P)
        with when(tid < NT), loop(T.serial(TP[tid + 1] - TP[tid]), "q") as q:
            pp = TP[tid] + q
            with loop(T.serial(nb), "b") as b:
                vector_store(K * P, lambda i: (acc, [i]), lambda i: T.float32(0))
                groups = loop(T.serial((PP[pp + 1] - PP[pp]) // K), "e")
                with groups as e, loop(T.unroll(K), "k") as k:
                    vector_store(
                        P,
                        lambda v: (acc, [k * P + v]),
                        lambda v: (
                            acc[k * P + v]
                            + VA[(PP[pp] + e * K + k) * P + v]
                            * src[slot, b, CO[PP[pp] + e * K + k]]
                        ),
                    )
                with loop(T.unroll(K - 1), "k") as k:
                    vector_store(P, lambda v: (acc, [v]), lambda v: acc[v] + acc[(k + 1) * P + v])
                vector_store(P, lambda v: (dst, [b, pp * P + v]), lambda v: acc[v])


def slot_gather(GA, RS, units: int, lanes: int, gates: int) -> Callable:
    """``gather`` of :func:`unit_phase`: a tile's pre-activations from the slot-ordered ``GA``."""
    H, P = units, lanes

    def fill(acc, q, b, width) -> None:
        with loop(T.unroll(gates), "g") as g:
            vector_store(
                width, lambda v: (acc, [g * P + v]), lambda v: GA[b, RS[g * H + q * P + v]]
            )

    return fill


def tile_fill(U, src, slot, columns: int, lanes: int, gates: int) -> Callable:
    """``product`` of :func:`unit_phase`: the dense tile product from ``src[slot]``."""

    def product(acc, q, b) -> None:
        tile_product(U, src, slot, acc, q, b, columns, lanes, gates)

    return product


def copy_rows(dsts, acc, b, u0, width) -> None:
    """``dst[.., b, u0 + v] = acc[v]`` for every ``(buffer, leading index)`` of ``dsts``."""
    for buffer, lead in dsts:
        vector_store(
            width,
            lambda v, buffer=buffer, lead=lead: (buffer, [*lead, b, u0 + v]),
            lambda v: acc[v],
        )


def zero() -> tirx.FloatImm:
    """float32 zero."""
    return tirx.const(0.0, "float32")


__all__ = [
    "PANEL_ARRAYS",
    "copy_rows",
    "dense_accumulators",
    "panel_product",
    "slot_gather",
    "store",
    "tile_fill",
    "tile_product",
    "tiles",
    "unit_phase",
]
