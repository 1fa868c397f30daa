"""OpenCL (mobile GPU) kernels of the recurrent layers: the sequence kernels of every cell x form.

Same contract as the CPU kernels (:mod:`tvm_bsp.kernels.cpu.sequence`): one PrimFunc per layer
runs a whole sequence of symbolic length ``T`` and batch ``B``; the input projection ``xp`` of
all frames comes from one mat-mat call before it (:func:`gpu_panel_linear`, in
:mod:`tvm_bsp.kernels.opencl.linear`). A sequence kernel is composed from three parts, each written
once:

- the **cell** (:mod:`tvm_bsp.kernels.cell_math`): the phases of a step and their gate math, run
  as scalar code of one work-item (:class:`_WorkItemLane`);
- the **weight form** (:mod:`tvm_bsp.kernels.opencl.products`): a dense phase is one launch
  (:func:`~tvm_bsp.kernels.opencl.products.unit_step`: product, tree reduction and gate math of a
  unit in one work-group); a BSPC phase is two (the panel walk into a global scratch ``A``,
  then the elementwise gate kernel);
- the **loop structure** of the OpenCL target: a *serial host loop* over ``t`` launches the
  phases of a step in order (TVM's ``SplitHostDevice`` turns every thread-bound nest into a
  kernel launch inside the host loop); the in-order command queue is the global barrier
  between them. The state lives in global scratch buffers, double-buffered (``hb[t % 2]``
  read, ``hb[(t + 1) % 2]`` written), loaded from ``state[layer]`` by one kernel before the
  loop and copied to ``hT`` (``cT``) by one after it.

So a step is one launch (dense) or two (BSPC), twice that for the kaldi GRU (``U_rz``, then
``U_n`` on ``r * h``). Knobs: :mod:`tvm_bsp.kernels.opencl.knobs`.

Signatures (``GH = G * H``; all float32 except the int32 panel arrays; outputs last)::

    dense sequence:    xp (T,B,GH), state, u (GH*H,), bhn (H,)                -> y, hT[, cT]
    bspc sequence:     xp, state, panel_ptr, panel_rows, cols, vals, bhn (H,) -> y, hT[, cT]
    linear:            x (N,K), panel_ptr, panel_rows, cols, vals, bias (lanes) -> y (N,M)

``state`` is ``(L, B, H)`` (``(L, 2, B, H)`` for the LSTM); ``u`` is the row-major recurrent
weight; ``bhn`` is ``b_hn`` of ``torch.nn.GRU`` (zeros for the other cells). For the kaldi
GRU the BSPC arrays hold two layouts back to back: the panels of the ``r, z`` rows
(``rz_panels`` of them), then those of the candidate rows.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tvm import tirx
from tvm.script.ir_builder import tirx as T

from tvm_bsp.kernels.cell_math import CELL_PHASES, Statement
from tvm_bsp.kernels.fast_math import activations
from tvm_bsp.kernels.opencl.linear import gpu_panel_linear
from tvm_bsp.kernels.opencl.products import (
    ELEMENTWISE_THREADS,
    Update,
    elementwise,
    gate_step,
    panel_params,
    panel_step,
    unit_step,
)
from tvm_bsp.kernels.rnn_knobs import CELL_GATES
from tvm_bsp.kernels.sequence_parts import CellBuffers, sequence_inputs, sequence_outputs
from tvm_bsp.kernels.tir_build import Params, build, loop, scratch, store

if TYPE_CHECKING:
    from tvm_bsp.kernels.opencl.knobs import GPURNNKnobs


class _WorkItemLane:
    """Unit ``j`` of sequence ``b`` at step ``t`` in one work-item (the statements' view)."""

    def __init__(self, k: CellBuffers, pre: tuple, S, t, b, j, acts: tuple, scale: float) -> None:
        self.k, (self.Apre, self.base, self.stride) = k, pre
        self.S, self.t, self.b, self.j = S, t, b, j
        (self.sig, self.tanh), self.scale = acts, scale

    def x(self, gate: int) -> tirx.Expr:
        return self.k.XP[self.t, self.b, gate * self.k.hidden + self.j if gate else self.j]

    def a(self, gate: int) -> tirx.Expr:
        return self.Apre[self.base + gate * self.stride if gate else self.base]

    def s(self, index: int) -> tirx.Expr:
        return self.S[index]

    def load(self, name: str) -> tirx.Expr:
        return self.k.load(name, self.t, self.b, self.j)

    def target(self, dst: str) -> tuple[tirx.Buffer, list]:
        if dst[0] == "s":
            return self.S, [int(dst[1:])]
        return self.k.target(dst, self.t, self.b, self.j)


def _updater(statements: tuple[Statement, ...], k: CellBuffers, t, exact: bool, scale: float):
    """The :data:`~tvm_bsp.kernels.opencl.products.Update` running ``statements`` for one unit."""
    acts = activations(exact)

    def update(Apre, base, stride, S, b, j) -> None:
        lane = _WorkItemLane(k, (Apre, base, stride), S, t, b, j, acts, scale)
        for dst, value in statements:
            buffer, index = lane.target(dst)
            store(buffer, value(lane), index)

    return update


#: ``phase(i, weights, (row0, gates), src, slot, A, nb, update)``: the launches of phase ``i``
#: of a step, whose product has ``gates`` gates from weight row ``row0`` on and reads
#: ``src[slot]``; ``A`` is the pre-activation scratch of forms that have one.
Phase = Callable[
    [int, tuple, tuple[int, int], tirx.Buffer, tirx.Expr, tirx.Buffer | None, tirx.Var, Update],
    None,
]


@dataclass(frozen=True)
class _Form:
    """A weight form: its name, its parameters, its phase launches, whether it needs ``A``."""

    name: str
    params: Callable[[Params], tuple]
    phase: Phase
    scratch: bool = False


def _sequence(cell: str, hidden: int, form: _Form, exact: bool, layer: int, scale: float):
    """The sequence PrimFunc of ``cell`` with the recurrent products of ``form``."""
    if cell not in CELL_GATES:
        raise ValueError(f"cell must be gru, kaldi_gru or lstm, got {cell!r}")
    H, G, lstm = hidden, CELL_GATES[cell], cell == "lstm"

    def body() -> None:
        param, nt, nb, XP, S0 = sequence_inputs(H, G, lstm)
        weights = form.params(param)
        BHN = param("bhn", (H,))
        Y, HT, CT = sequence_outputs(param, nt, nb, H, lstm)
        k = CellBuffers(H, XP, Y, scratch("hb", (2, nb, H)), BHN)
        if lstm:
            k.cb = scratch("cb", (nb, H))
        if cell == "kaldi_gru":
            k.rh, k.az = scratch("rh", (1, nb, H)), scratch("az", (nb, H))
        A = scratch("A", (nb * G * H,)) if form.scratch else None
        with elementwise(H, nb) as (b, j):  # hb[0] (, cb) = state[layer]
            store(k.hb, S0[layer, 0, b, j] if lstm else S0[layer, b, j], [0, b, j])
            if lstm:
                store(k.cb, S0[layer, 1, b, j], [b, j])
        with loop(T.serial(nt), "t") as t:
            row0 = 0
            for i, (statements, gates) in enumerate(CELL_PHASES[cell]):
                src, slot = (k.hb, t % 2) if i == 0 else (k.rh, 0)
                update = _updater(statements, k, t, exact, scale)
                form.phase(i, weights, (row0, gates), src, slot, A, nb, update)
                row0 += gates * H
        with elementwise(H, nb) as (b, j):  # hT (, cT) from the last step's state
            store(HT, k.hb[nt % 2, b, j], [b, j])
            if lstm:
                store(CT, k.cb[b, j], [b, j])

    return build(f"{form.name}_{cell}_sequence_opencl", body)


@functools.lru_cache(maxsize=64)
def gpu_dense_sequence(
    cell: str, hidden: int, knobs: GPURNNKnobs, scale: float = 1.0, layer: int = 0
) -> tirx.PrimFunc:
    """OpenCL sequence kernel of a layer with a dense recurrent weight (module docstring).

    Parameters
    ----------
    cell, hidden, scale, layer
        As for :func:`tvm_bsp.kernels.cpu.sequence.cpu_sequence`: the cell, its units, the kaldi
        GRU's candidate scale and the layer of the stacked state the kernel starts from.
    knobs : GPURNNKnobs
        ``work_group`` threads per unit (a power of two), ``vector`` consecutive columns per
        thread and round; ``exact``: OpenCL ``exp`` for the activations (else polynomials).
    """
    work_group, vector, exact = knobs.work_group, knobs.vector, knobs.exact
    if work_group & (work_group - 1):
        raise ValueError(f"work_group must be a power of two, got {work_group}")
    H = hidden

    def params(param: Params) -> tuple:
        return (param("u", (CELL_GATES[cell] * H * H,)),)

    def phase(i: int, weights: tuple, rows: tuple, src, slot, A, nb, update: Update) -> None:
        (row0, gates), (U,) = rows, weights
        unit_step(U, src, slot, row0, (H, gates), (work_group, vector), nb, update)

    return _sequence(cell, H, _Form("dense", params, phase), exact, layer, scale)


@functools.lru_cache(maxsize=64)
def gpu_bspc_sequence(
    cell: str,
    hidden: int,
    npanels: int,
    ncols: int,
    knobs: GPURNNKnobs,
    rz_panels: int = 0,
    scale: float = 1.0,
    layer: int = 0,
) -> tirx.PrimFunc:
    """OpenCL sequence kernel of a layer with a BSPC recurrent weight (module docstring).

    ``cell``, ``hidden``, ``scale`` and ``layer`` are those of :func:`gpu_dense_sequence`.

    Parameters
    ----------
    npanels, ncols : int
        Panels and stored columns of the packed layout(s).
    knobs : GPURNNKnobs
        ``panel_rows`` lanes per panel, ``chunk`` columns staged per round, ``exact``.
    rz_panels : int
        kaldi GRU only: panels of the ``r, z`` layout (the candidate's follow).
    """
    panel_rows, chunk, exact = knobs.panel_rows, knobs.chunk, knobs.exact
    P = panel_rows
    if cell == "kaldi_gru":
        if not 0 < rz_panels < npanels:
            raise ValueError(f"rz_panels must be in (0, {npanels}), got {rz_panels}")
        ranges = ((0, rz_panels), (rz_panels, npanels - rz_panels))
    else:
        ranges = ((0, npanels),)

    def params(param: Params) -> tuple:
        return panel_params(param, npanels, ncols, P)

    def phase(i: int, weights: tuple, rows: tuple, src, slot, A, nb, update: Update) -> None:
        gates = rows[1]
        panel_step(weights, ranges[i], (P, chunk), src, slot, A, gates * hidden, nb)
        gate_step(A, hidden, gates * hidden, nb, update)

    return _sequence(cell, hidden, _Form("bspc", params, phase, True), exact, layer, scale)


__all__ = [
    "ELEMENTWISE_THREADS",
    "gpu_bspc_sequence",
    "gpu_dense_sequence",
    "gpu_panel_linear",
]
