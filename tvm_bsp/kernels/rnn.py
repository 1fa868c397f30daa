"""GRU/LSTM compute: canonical TE definitions, and the scheduled kernels that implement them.

TE compute (no schedule; the reference semantics of the kernels, equations in
:mod:`tvm_bsp.frontend.model`):

- :func:`linear_compute`: ``y = x W^T + b`` over ``N`` frames, the input projection of all
  frames of an utterance as one mat-mat product (``N`` may be a symbolic ``T * B``);
- :func:`cell_compute`: one time step of a ``gru``, ``kaldi_gru`` or ``lstm`` cell from the
  input projection ``xp``: recurrent product(s) and gate math.

A whole sequence cannot be written in TE (``te.scan`` is refused by ``create_prim_func``), so
the sequence is a generated TIR kernel with the time loop inside (:mod:`.cpu.sequence`),
with the mat-mat kernels of :mod:`.cpu.linear`; :mod:`.cpu.rnn`
picks and feeds them (:func:`sequence_kernel`, :func:`linear_kernel`). Tests check that the
templates compute what these definitions say.
"""

from __future__ import annotations

import tvm
from tvm import te, tirx

from tvm_bsp.kernels.cpu.rnn import SequenceKernel, linear_kernel, sequence_kernel
from tvm_bsp.kernels.rnn_knobs import CELL_GATES

__all__ = [
    "SequenceKernel",
    "cell_compute",
    "cell_prim_func",
    "linear_compute",
    "linear_kernel",
    "sequence_kernel",
]


def linear_compute(x: te.Tensor, w: te.Tensor, b: te.Tensor) -> te.Tensor:
    """``y[n, m] = sum_k x[n, k] * w[m, k] + b[m]``."""
    N, K = x.shape
    M = w.shape[0]
    k = te.reduce_axis((0, K), name="k")
    acc = te.compute((N, M), lambda n, m: te.sum(x[n, k] * w[m, k], axis=k), name="acc")
    return te.compute((N, M), lambda n, m: acc[n, m] + b[m], name="y")


def _matmul_t(h: te.Tensor, u: te.Tensor, name: str, row0: int = 0, rows: int | None = None):
    """``a[b, r] = sum_k h[b, k] * u[row0 + r, k]``."""
    B, K = h.shape
    rows = int(u.shape[0]) - row0 if rows is None else rows
    k = te.reduce_axis((0, K), name=f"{name}_k")
    return te.compute((B, rows), lambda b, r: te.sum(h[b, k] * u[row0 + r, k], axis=k), name=name)


def cell_compute(
    cell: str,
    xp: te.Tensor,
    h: te.Tensor,
    u: te.Tensor,
    bhn: te.Tensor | None = None,
    c: te.Tensor | None = None,
    scale: float = 1.0,
) -> list[te.Tensor]:
    """One step of a recurrent cell.

    Parameters
    ----------
    cell : {"gru", "kaldi_gru", "lstm"}
    xp : te.Tensor
        ``(B, G*H)`` input projection of the step, biases included except ``b_hn``.
    h : te.Tensor
        ``(B, H)`` state.
    u : te.Tensor
        ``(G*H, H)`` recurrent weight.
    bhn : te.Tensor, optional
        ``(H,)`` recurrent candidate bias (``gru`` only).
    c : te.Tensor, optional
        ``(B, H)`` cell state (``lstm`` only).
    scale : float
        Candidate scale (``kaldi_gru`` only).

    Returns
    -------
    list of te.Tensor
        ``[h']``, or ``[h', c']`` for ``lstm``.
    """
    B, H = h.shape
    sig, tanh = tirx.sigmoid, tirx.tanh
    one = tirx.const(1.0, "float32")
    if cell == "lstm":
        a = _matmul_t(h, u, "a")

        def gate(g, fn):
            return te.compute((B, H), lambda b, j: fn(xp[b, g * H + j] + a[b, g * H + j]))

        i, f, g, o = gate(0, sig), gate(1, sig), gate(2, tanh), gate(3, sig)
        c_new = te.compute((B, H), lambda b, j: f[b, j] * c[b, j] + i[b, j] * g[b, j], name="c")
        h_new = te.compute((B, H), lambda b, j: o[b, j] * tanh(c_new[b, j]), name="h")
        return [h_new, c_new]
    if cell == "gru":
        a = _matmul_t(h, u, "a")
        r = te.compute((B, H), lambda b, j: sig(xp[b, j] + a[b, j]), name="r")
        n = te.compute(
            (B, H),
            lambda b, j: tanh(xp[b, 2 * H + j] + r[b, j] * (a[b, 2 * H + j] + bhn[j])),
            name="n",
        )
    elif cell == "kaldi_gru":
        a = _matmul_t(h, u, "a", 0, 2 * H)
        rh = te.compute((B, H), lambda b, j: sig(xp[b, j] + a[b, j]) * h[b, j], name="rh")
        an = _matmul_t(rh, u, "an", 2 * H, H)
        s = tirx.const(scale, "float32")
        n = te.compute((B, H), lambda b, j: s * tanh(xp[b, 2 * H + j] + an[b, j]), name="n")
    else:
        raise ValueError(f"unknown cell {cell!r}; cells are {sorted(CELL_GATES)}")
    z = te.compute((B, H), lambda b, j: sig(xp[b, H + j] + a[b, H + j]), name="z")
    h_new = te.compute((B, H), lambda b, j: (one - z[b, j]) * n[b, j] + z[b, j] * h[b, j], name="h")
    return [h_new]


def cell_prim_func(cell: str, batch: int, hidden: int, scale: float = 1.0) -> tvm.tirx.PrimFunc:
    """The unscheduled PrimFunc of :func:`cell_compute`.

    Arguments in order: ``xp, h[, c], u[, bhn]`` then the outputs ``h'[, c']``.
    """
    G, H = CELL_GATES[cell], hidden
    xp = te.placeholder((batch, G * H), "float32", name="xp")
    h = te.placeholder((batch, H), "float32", name="h")
    u = te.placeholder((G * H, H), "float32", name="u")
    c = te.placeholder((batch, H), "float32", name="c") if cell == "lstm" else None
    bhn = te.placeholder((H,), "float32", name="bhn") if cell == "gru" else None
    outs = cell_compute(cell, xp, h, u, bhn, c, scale)
    inputs = [xp, h, *([c] if c is not None else []), u, *([bhn] if bhn is not None else [])]
    return te.create_prim_func([*inputs, *outs])
