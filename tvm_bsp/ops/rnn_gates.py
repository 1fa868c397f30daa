"""Gate arithmetic of the recurrent cells as TVMScript macros over a tile of units.

Every macro updates ``width`` consecutive hidden units ``u0 .. u0 + width`` of sequence
``b`` at step ``t``, from the input projections ``XP[t, b, :]`` and the recurrent
pre-activations of the tile in a local buffer ``acc`` (gate ``g``, lane ``v`` at
``acc[g * P + v]``). Each elementwise stage is its own vectorized loop over a local scratch
``S`` (``4 * P``): an activation is only ever applied to a short sum of loads, which keeps
the polynomial activations small (nesting them makes TIR expressions, and the compile time,
explode) and avoids scalar ``let`` bindings inside vectorized loops (they miscompile, see the
stack notes). Activations are the vectorizable forms of :mod:`tvm_bsp.ops.fast_math`, or TVM's
intrinsics with ``exact=True``.

The state is double-buffered: ``hb[t % 2]`` is read, ``hb[(t + 1) % 2]`` written, and the new
``h`` is also stored in ``Y[t]``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from tvm import tirx
from tvm.script import tirx as T

from tvm_bsp.ops.fast_math import fast_sigmoid, fast_tanh


def activations(exact: bool = False) -> tuple[Callable, Callable]:
    """``(sigmoid, tanh)`` expression builders: :mod:`tvm_bsp.ops.fast_math`, or TVM's
    intrinsics with ``exact=True``."""
    if exact:
        return tirx.sigmoid, tirx.tanh
    return fast_sigmoid, fast_tanh


def _f32(v: float) -> tirx.FloatImm:
    return tirx.const(v, "float32")


@functools.lru_cache(maxsize=32)
def gru_gates(hidden: int, lanes: int, exact: bool = False):
    """Macro ``(XP, acc, BHN, hb, Y, S, t, b, u0, width)`` of ``torch.nn.GRU``."""
    H, P = hidden, lanes
    sig, tanh = activations(exact)

    @T.macro
    def gates(XP, acc, BHN, hb, Y, S, t, b, u0, width):
        for v in T.vectorized(width):
            S[v] = sig(XP[t, b, u0 + v] + acc[v])
        for v in T.vectorized(width):
            S[P + v] = sig(XP[t, b, H + u0 + v] + acc[P + v])
        for v in T.vectorized(width):
            S[2 * P + v] = XP[t, b, 2 * H + u0 + v] + S[v] * (acc[2 * P + v] + BHN[u0 + v])
        for v in T.vectorized(width):
            S[2 * P + v] = tanh(S[2 * P + v])
        for v in T.vectorized(width):
            hb[(t + 1) % 2, b, u0 + v] = (_f32(1.0) - S[P + v]) * S[2 * P + v] + S[P + v] * hb[
                t % 2, b, u0 + v
            ]
        for v in T.vectorized(width):
            Y[t, b, u0 + v] = hb[(t + 1) % 2, b, u0 + v]

    return gates


@functools.lru_cache(maxsize=32)
def kaldi_reset(hidden: int, lanes: int, exact: bool = False):
    """Macro ``(XP, acc, hb, rh, az, S, t, b, u0, width)``: kaldi GRU phase one.

    Writes ``rh[0, b, u] = σ(x_r + a_r) * h`` (the input of the candidate's product) and
    keeps ``a_z`` in ``az[b, u]`` for phase two; ``acc`` holds ``a_r`` then ``a_z``.
    """
    P = lanes
    sig, _ = activations(exact)

    @T.macro
    def reset(XP, acc, hb, rh, az, S, t, b, u0, width):
        for v in T.vectorized(width):
            S[v] = sig(XP[t, b, u0 + v] + acc[v])
        for v in T.vectorized(width):
            rh[0, b, u0 + v] = S[v] * hb[t % 2, b, u0 + v]
        for v in T.vectorized(width):
            az[b, u0 + v] = acc[P + v]

    return reset


@functools.lru_cache(maxsize=32)
def kaldi_update(hidden: int, lanes: int, scale: float, exact: bool = False):
    """Macro ``(XP, acc, az, hb, Y, S, t, b, u0, width)``: kaldi GRU phase two.

    ``acc`` holds ``a_n = U_n (r * h)``; the candidate is scaled by ``scale``.
    """
    H, P = hidden, lanes
    sig, tanh = activations(exact)

    @T.macro
    def update(XP, acc, az, hb, Y, S, t, b, u0, width):
        for v in T.vectorized(width):
            S[v] = sig(XP[t, b, H + u0 + v] + az[b, u0 + v])
        for v in T.vectorized(width):
            S[P + v] = tanh(XP[t, b, 2 * H + u0 + v] + acc[v])
        for v in T.vectorized(width):
            hb[(t + 1) % 2, b, u0 + v] = (_f32(1.0) - S[v]) * (S[P + v] * _f32(scale)) + S[v] * hb[
                t % 2, b, u0 + v
            ]
        for v in T.vectorized(width):
            Y[t, b, u0 + v] = hb[(t + 1) % 2, b, u0 + v]

    return update


@functools.lru_cache(maxsize=32)
def lstm_gates(hidden: int, lanes: int, exact: bool = False):
    """Macro ``(XP, acc, cb, hb, Y, S, t, b, u0, width)`` of ``torch.nn.LSTM``."""
    H, P = hidden, lanes
    sig, tanh = activations(exact)

    @T.macro
    def gates(XP, acc, cb, hb, Y, S, t, b, u0, width):
        for v in T.vectorized(width):
            S[v] = sig(XP[t, b, u0 + v] + acc[v])
        for v in T.vectorized(width):
            S[P + v] = sig(XP[t, b, H + u0 + v] + acc[P + v])
        for v in T.vectorized(width):
            S[2 * P + v] = tanh(XP[t, b, 2 * H + u0 + v] + acc[2 * P + v])
        for v in T.vectorized(width):
            S[3 * P + v] = sig(XP[t, b, 3 * H + u0 + v] + acc[3 * P + v])
        for v in T.vectorized(width):
            cb[b, u0 + v] = S[P + v] * cb[b, u0 + v] + S[v] * S[2 * P + v]
        for v in T.vectorized(width):
            S[v] = tanh(cb[b, u0 + v])
        for v in T.vectorized(width):
            hb[(t + 1) % 2, b, u0 + v] = S[3 * P + v] * S[v]
        for v in T.vectorized(width):
            Y[t, b, u0 + v] = hb[(t + 1) % 2, b, u0 + v]

    return gates


@functools.lru_cache(maxsize=32)
def lstm_proj_gates(hidden: int, lanes: int, exact: bool = False):
    """Macro ``(XP, acc, cb, M, S, t, b, u0, width)`` of a projected ``torch.nn.LSTM``.

    As :func:`lstm_gates`, but the unit's output ``m = σ(o) * tanh(c)`` goes to ``M[0, b, u]``
    (the input of the projection ``h = W_hr m``, applied after a barrier), not to the state.
    """
    H, P = hidden, lanes
    sig, tanh = activations(exact)

    @T.macro
    def gates(XP, acc, cb, M, S, t, b, u0, width):
        for v in T.vectorized(width):
            S[v] = sig(XP[t, b, u0 + v] + acc[v])
        for v in T.vectorized(width):
            S[P + v] = sig(XP[t, b, H + u0 + v] + acc[P + v])
        for v in T.vectorized(width):
            S[2 * P + v] = tanh(XP[t, b, 2 * H + u0 + v] + acc[2 * P + v])
        for v in T.vectorized(width):
            S[3 * P + v] = sig(XP[t, b, 3 * H + u0 + v] + acc[3 * P + v])
        for v in T.vectorized(width):
            cb[b, u0 + v] = S[P + v] * cb[b, u0 + v] + S[v] * S[2 * P + v]
        for v in T.vectorized(width):
            S[v] = tanh(cb[b, u0 + v])
        for v in T.vectorized(width):
            M[0, b, u0 + v] = S[3 * P + v] * S[v]

    return gates
