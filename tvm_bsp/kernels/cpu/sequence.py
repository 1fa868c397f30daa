"""Time-loop kernels of a recurrent layer on the CPU (``llvm``): every cell x weight form.

One PrimFunc runs a whole sequence of symbolic length ``T`` (and batch ``B``): the loop over
time is inside, so an utterance costs one call. The input projection ``xp = W x + b`` of all
frames comes in precomputed (one mat-mat product before the call). The kernel is composed
from three parts, each written once:

- the **cell** (:mod:`tvm_bsp.kernels.cell_math`): the phases of a step and their gate math;
- the **weight form** (:mod:`tvm_bsp.kernels.cpu.products`): a dense gate-tile product fused into
  the unit phase, or a BSPC panel walk as a phase of its own followed by a gather;
- the **loop structure** of the CPU target: the whole time loop is one parallel region
  (``pragma_parallel_launch_point``); every thread walks the time loop, takes a share of each
  phase's work and meets the others at a barrier (``pragma_parallel_barrier_when_finish``)
  before the next phase reads what it wrote. The state is double-buffered (``hb[t % 2]``
  read, ``hb[(t + 1) % 2]`` written), so a one-product cell needs one barrier per dense step.
  The serial form (``parallel=False``) has the same loops without the region.

A projected LSTM (``proj > 0``) adds a phase ``h = W_hr m`` (dense row panels of ``P`` rows).

Signatures (``Q = ceil(H / P)``, ``K`` the state width ``H`` or ``R``; float32 but the int32
panel arrays; outputs last; ``state`` is the stacked state of all layers, ``(L, B, H)`` or
``(L, 2, B, H)`` for the LSTM, and the kernel starts from ``state[layer]``, a compile-time
constant, so no slicing op runs before it)::

    xp (T,B,G*H), state, <weights>, [bhn (H,) gru], [w_hr (ceil(R/P)*H*P,)]  -> y, hT[, cT]

``<weights>`` per product: dense ``u (Q*G*K*P,)``; BSPC the five arrays of
:data:`~tvm_bsp.kernels.cpu.products.PANEL_ARRAYS`, symbolic lengths. The kaldi GRU has two
products (``U_rz``, ``U_n``). ``hT`` of a projected LSTM has zeros past ``R``.
"""

from __future__ import annotations

import functools

from tvm import tirx
from tvm.script.ir_builder import tirx as T

from tvm_bsp.kernels.cell_math import CELL_PHASES, Statement
from tvm_bsp.kernels.cpu.phase import phase_loop
from tvm_bsp.kernels.cpu.products import (
    copy_rows,
    dense_accumulators,
    panel_product,
    slot_gather,
    tile_fill,
    tile_product,
    tiles,
    unit_phase,
    zero,
)
from tvm_bsp.kernels.fast_math import activations
from tvm_bsp.kernels.layout import PanelShape
from tvm_bsp.kernels.sequence_parts import CellBuffers, sequence_inputs, sequence_outputs
from tvm_bsp.kernels.tir_build import (
    attr_region,
    build,
    if_else,
    local,
    loop,
    scratch,
    size_var,
    store,
    when,
)

_GATES = {"gru": 3, "kaldi_gru": 3, "lstm": 4}


class _TileLane:
    """Lane ``v`` of a tile of units starting at ``u0`` (the cell statements' view)."""

    def __init__(self, k: CellBuffers, lanes: int, acc, S, t, b, u0, v, acts, scale) -> None:
        self.k, self.lanes, self.acc, self.S, self.t, self.b = k, lanes, acc, S, t, b
        self.u0, self.v, self.u = u0, v, u0 + v
        (self.sig, self.tanh), self.scale = acts, scale

    def _slot(self, index: int) -> tirx.PrimExpr:
        return self.v if index == 0 else index * self.lanes + self.v

    def x(self, gate: int) -> tirx.PrimExpr:
        u = self.u if gate == 0 else gate * self.k.hidden + self.u0 + self.v
        return self.k.XP[self.t, self.b, u]

    def a(self, gate: int) -> tirx.PrimExpr:
        return self.acc[self._slot(gate)]

    def s(self, index: int) -> tirx.PrimExpr:
        return self.S[self._slot(index)]

    def load(self, name: str) -> tirx.PrimExpr:
        return self.k.load(name, self.t, self.b, self.u)

    def target(self, dst: str) -> tuple[tirx.Buffer, list]:
        if dst[0] == "s":
            return self.S, [self._slot(int(dst[1:]))]
        return self.k.target(dst, self.t, self.b, self.u)


def _updater(statements: tuple[Statement, ...], k: CellBuffers, lanes: int, t, exact, scale):
    """``update(acc, S, b, u0, width)``: each statement as a vectorized loop over the tile."""
    acts = activations(exact)

    def update(acc, S, b, u0, width) -> None:
        for dst, value in statements:
            with loop(T.vectorized(width), "v") as v:
                lane = _TileLane(k, lanes, acc, S, t, b, u0, v, acts, scale)
                buffer, index = lane.target(dst)
                store(buffer, value(lane), index)

    return update


def _projection(k: CellBuffers, P: int, WR, proj: int, parallel: bool, nb, t) -> None:
    """``h[(t+1) % 2] = Y[t] = W_hr m`` over the ``ceil(R / P)`` row panels."""
    QR, QRF, TAIL = tiles(proj, P)
    with loop(phase_loop(QR, parallel), "q") as q:
        acc = local("acc", 2 * P)
        with when(q < QR), loop(T.serial(nb), "b") as b:
            tile_product(WR, k.M, 0, acc, q, b, k.hidden, P, 1)

            def rows(width: int):
                return lambda: copy_rows([(k.hb, [(t + 1) % 2]), (k.Y, [t])], acc, b, q * P, width)

            if_else(q < QRF, rows(P), rows(TAIL))


@functools.lru_cache(maxsize=128)
def cpu_sequence(
    cell: str,
    hidden: int,
    panels: tuple[PanelShape, ...] | None = None,
    lanes: int = 16,
    parallel: bool = True,
    exact: bool = False,
    layer: int = 0,
    scale: float = 1.0,
    proj: int = 0,
) -> tirx.PrimFunc:
    """The sequence kernel of one recurrent layer (signature in the module docstring).

    Parameters
    ----------
    cell : {"gru", "kaldi_gru", "lstm"}
    hidden : int
        Units ``H``.
    panels : tuple of PanelShape, optional
        The BSPC weights' panel shapes, one per product (two for the kaldi GRU); ``None``
        for dense gate tiles.
    lanes : int
        Units per tile (``P``).
    parallel : bool
        Whether the time loop is a parallel region.
    exact : bool
        TVM's ``sigmoid`` / ``tanh`` instead of :mod:`tvm_bsp.kernels.fast_math`.
    layer : int
        Which layer of the stacked state the kernel starts from.
    scale : float
        Candidate scale of the kaldi GRU.
    proj : int
        Projection size ``R`` of a projected LSTM (0: none).
    """
    if cell not in _GATES:
        raise ValueError(f"cell must be gru, kaldi_gru or lstm, got {cell!r}")
    if proj and cell != "lstm":
        raise ValueError(f"a projection applies to lstm layers, not {cell}")
    phases = CELL_PHASES["lstm_proj" if proj else cell]
    if panels is not None and len(panels) != len(phases):
        raise ValueError(f"a BSPC {cell} kernel takes {len(phases)} panel shapes, got {panels}")
    H, P, G = hidden, lanes, _GATES[cell]
    width = proj or H  # the state's width, and the recurrent product's columns
    Q = tiles(H, P)[0]
    lstm = cell == "lstm"
    form = "dense" if panels is None else "bspc"
    name = f"{form}_{cell}{'_proj' if proj else ''}_sequence"

    def body() -> None:
        param, nt, nb, XP, S0 = sequence_inputs(H, G, lstm)
        weights = []
        for i, (_, gates) in enumerate(phases):
            tag = "" if len(phases) == 1 else ("_rz", "_n")[i]
            if panels is None:
                weights.append(param(f"u{tag}", (Q * gates * width * P,)))
                continue
            npp = size_var(f"panels{tag}")
            weights.append(
                (
                    param(f"thread_ptr{tag}", (panels[i].threads + 1,), "int32"),
                    param(f"panel_ptr{tag}", (npp,), "int32"),
                    param(f"cols{tag}", (T.int64(),), "int32"),
                    param(f"vals{tag}", (T.int64(),)),
                    param(f"row_slot{tag}", (T.int64(),), "int32"),
                    npp,
                )
            )
        BHN = param("bhn", (H,)) if cell == "gru" else None
        WR = param("w_hr", (tiles(proj, P)[0] * H * P,)) if proj else None
        Y, HT, CT = sequence_outputs(param, nt, nb, H, lstm, width)
        k = CellBuffers(H, XP, Y, scratch("hb", (2, nb, width)), BHN)
        if cell == "kaldi_gru":
            k.rh, k.az = scratch("rh", (1, nb, H)), scratch("az", (nb, H))
        if lstm:
            k.cb = scratch("cb", (nb, H))
        if proj:
            k.M = scratch("M", (1, nb, H))
        gathered = []
        if panels is not None:
            for i, ps in enumerate(panels):
                gathered.append(scratch(f"GA{i}", (nb, (weights[i][5] - 1) * ps.lanes)))
        _load_state(k, S0, layer, nb, width, lstm)
        steps = _step_phases(k, P, phases, weights, gathered, panels, parallel, exact, scale, nb)
        if proj:
            steps.append(lambda t: _projection(k, P, WR, proj, parallel, nb, t))
        _time_loop(steps, parallel, nt)
        _store_state(k, HT, CT, nt, nb, proj)

    return build(name, body)


def _step_phases(k, P, phases, weights, gathered, panels, parallel, exact, scale, nb) -> list:
    """The phases of one step, each a function of ``t``, in order."""
    H = k.hidden
    columns = k.hb.shape[2]
    steps = []
    for i, (statements, gates) in enumerate(phases):
        src, slot_of = (k.hb, lambda t: t % 2) if i == 0 else (k.rh, lambda t: 0)

        def unit(t, i=i, statements=statements, gates=gates, src=src, slot_of=slot_of):
            update = _updater(statements, k, P, t, exact, scale)
            if panels is None:
                fill = tile_fill(weights[i], src, slot_of(t), int(columns), P, gates)
                unit_phase(H, P, parallel, dense_accumulators(gates, P), nb, fill, None, update)
            else:
                gather = slot_gather(gathered[i], weights[i][4], H, P, gates)
                unit_phase(H, P, parallel, gates * P, nb, None, gather, update)

        if panels is not None:

            def product(t, i=i, src=src, slot_of=slot_of):
                panel_product(panels[i], parallel, weights[i], src, slot_of(t), gathered[i], nb)

            steps.append(product)
        steps.append(unit)
    return steps


def _time_loop(steps: list, parallel: bool, nt) -> None:
    """The loop over time: one parallel region, a barrier after every phase (or serial)."""
    if not parallel:
        with loop(T.serial(nt), "t") as t:
            for step in steps:
                step(t)
        return
    with attr_region("pragma_parallel_launch_point"), loop(T.serial(nt), "t") as t:
        for step in steps:
            with attr_region("pragma_parallel_barrier_when_finish"):
                step(t)


def _load_state(k: CellBuffers, S0, layer: int, nb, width: int, lstm: bool) -> None:
    """``hb[0] (, cb) = state[layer]``."""
    with T.grid(nb, width) as (b, j):
        if not lstm:
            store(k.hb, S0[layer, b, j], [0, b, j])
            return
        store(k.hb, S0[layer, 0, b, j], [0, b, j])
        if width == k.hidden:
            store(k.cb, S0[layer, 1, b, j], [b, j])
    if lstm and width != k.hidden:
        with T.grid(nb, k.hidden) as (b, j):
            store(k.cb, S0[layer, 1, b, j], [b, j])


def _store_state(k: CellBuffers, HT, CT, nt, nb, proj: int) -> None:
    """``hT (, cT)`` from the last step's state (zeros past ``R`` for a projection)."""
    with T.grid(nb, k.hidden) as (b, j):
        if proj:
            last = tirx.if_then_else(j < proj, k.hb[nt % 2, b, T.min(j, proj - 1)], zero())
        else:
            last = k.hb[nt % 2, b, j]
        store(HT, last, [b, j])
        if CT is not None:
            store(CT, k.cb[b, j], [b, j])
