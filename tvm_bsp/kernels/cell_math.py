"""The gate math of every recurrent cell, written once for every target.

A cell's step is a short list of *statements* ``(destination, value)``: ``value`` builds the
TIR expression of one hidden unit from a :class:`Lane`, the view a target gives of that unit
(its input projections, recurrent pre-activations, state and scratch). The CPU kernels run
each statement as a vectorized loop over a tile of units (lane ``v`` of the tile is unit
``u0 + v``, scratch ``i`` at ``S[i * P + v]``); the OpenCL kernels run the statements as
scalar code of one work-item (unit ``j``, scratch ``i`` at ``S[i]``). Every activation is
applied to a short sum of loads, and every intermediate goes through scratch: nesting the
polynomial activations makes TIR expressions (and the compile time) explode, and a scalar
``let`` inside a vectorized loop miscompiles (see the stack notes).

Destinations: ``s0`` .. ``s3`` (scratch), ``h`` (the new state ``hb[(t + 1) % 2]``), ``y``
(the output ``Y[t]``), ``c`` (the LSTM cell), ``rh`` (``r * h``, input of the kaldi GRU's
candidate product), ``az`` (the kaldi GRU's kept ``a_z``), ``m`` (``σ(o) * tanh(c)`` of a
projected LSTM, input of the projection). Equations as in :mod:`tvm_bsp.frontend.model`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from tvm import tirx


class Lane(Protocol):
    """One hidden unit seen by a statement (implemented by each target)."""

    sig: Callable[[tirx.PrimExpr], tirx.PrimExpr]
    tanh: Callable[[tirx.PrimExpr], tirx.PrimExpr]
    scale: float

    def x(self, gate: int) -> tirx.PrimExpr:
        """Input projection of ``gate``."""

    def a(self, gate: int) -> tirx.PrimExpr:
        """Recurrent pre-activation of ``gate`` (of the phase's product)."""

    def s(self, index: int) -> tirx.PrimExpr:
        """Scratch value ``index``."""

    def load(self, name: str) -> tirx.PrimExpr:
        """``h`` (previous state), ``h_new``, ``c``, ``az`` or ``bhn`` of the unit."""


Statement = tuple[str, Callable[[Lane], tirx.Expr]]


#: ``torch.nn.GRU``: ``n = tanh(x_n + r * (a_n + b_hn))``, ``h' = (1 - z) n + z h``.
GRU: tuple[Statement, ...] = (
    ("s0", lambda u: u.sig(u.x(0) + u.a(0))),
    ("s1", lambda u: u.sig(u.x(1) + u.a(1))),
    ("s2", lambda u: u.x(2) + u.s(0) * (u.a(2) + u.load("bhn"))),
    ("s2", lambda u: u.tanh(u.s(2))),
    ("h", lambda u: (1.0 - u.s(1)) * u.s(2) + u.s(1) * u.load("h")),
    ("y", lambda u: u.load("h_new")),
)

#: pytorch-kaldi GRU, phase one (product of ``U_rz``): ``r * h`` and the kept ``a_z``.
KALDI_RESET: tuple[Statement, ...] = (
    ("s0", lambda u: u.sig(u.x(0) + u.a(0))),
    ("rh", lambda u: u.s(0) * u.load("h")),
    ("az", lambda u: u.a(1)),
)

#: pytorch-kaldi GRU, phase two (product of ``U_n`` with ``r * h``): scaled candidate.
KALDI_UPDATE: tuple[Statement, ...] = (
    ("s0", lambda u: u.sig(u.x(1) + u.load("az"))),
    ("s1", lambda u: u.tanh(u.x(2) + u.a(0))),
    ("h", lambda u: (1.0 - u.s(0)) * (u.s(1) * u.scale) + u.s(0) * u.load("h")),
    ("y", lambda u: u.load("h_new")),
)

_LSTM_CELL: tuple[Statement, ...] = (
    ("s0", lambda u: u.sig(u.x(0) + u.a(0))),
    ("s1", lambda u: u.sig(u.x(1) + u.a(1))),
    ("s2", lambda u: u.tanh(u.x(2) + u.a(2))),
    ("s3", lambda u: u.sig(u.x(3) + u.a(3))),
    ("c", lambda u: u.s(1) * u.load("c") + u.s(0) * u.s(2)),
    ("s0", lambda u: u.tanh(u.load("c"))),
)

#: ``torch.nn.LSTM``: ``c' = f c + i g``, ``h' = o tanh(c')``.
LSTM: tuple[Statement, ...] = (
    *_LSTM_CELL,
    ("h", lambda u: u.s(3) * u.s(0)),
    ("y", lambda u: u.load("h_new")),
)

#: Projected ``torch.nn.LSTM``: as :data:`LSTM`, the unit's output goes to the projection.
LSTM_PROJ: tuple[Statement, ...] = (*_LSTM_CELL, ("m", lambda u: u.s(3) * u.s(0)))

#: Per cell: the phases of a step, each ``(statements, gates of its product)``. The kaldi
#: GRU's second product (``U_n``) reads ``r * h``; every other product reads ``h``.
CELL_PHASES: dict[str, tuple[tuple[tuple[Statement, ...], int], ...]] = {
    "gru": ((GRU, 3),),
    "kaldi_gru": ((KALDI_RESET, 2), (KALDI_UPDATE, 1)),
    "lstm": ((LSTM, 4),),
    "lstm_proj": ((LSTM_PROJ, 4),),
}
