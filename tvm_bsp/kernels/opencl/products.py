"""The device kernels of the OpenCL recurrent layers: launches, products and the gate kernel.

Every function here emits one thread-bound nest, which TVM's ``SplitHostDevice`` turns into
one kernel launch (:mod:`tvm_bsp.kernels.opencl.sequence` composes them inside the host time loop):

:func:`unit_step` (dense weight)
    A work-group of ``wg`` threads per (hidden unit ``j``, sequence ``b``): each thread sums
    ``vec`` consecutive columns per round over the ``G`` gate rows of ``j``; the partial sums
    meet in local memory (:func:`tree_sum`) and thread 0 applies the gate math.
:func:`panel_step` (BSPC weight)
    One work-group per (panel, sequence), a thread per lane (row), over the panel walk of
    :func:`panel_walk`; the pre-activations go to a global scratch ``A``.
:func:`gate_step` (BSPC weight)
    A work-item per (unit, sequence) applies the gate math to ``A``.
:func:`elementwise`
    The nest of every work-item-per-unit kernel (gate math, state copies).

The gate math itself is a callback ``update(Apre, base, stride, S, b, j)``: the pre-activation
of gate ``g`` of unit ``j`` is ``Apre[base + g * stride]``, ``S`` a local scratch of 4 values.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from tvm import tirx
from tvm.script.ir_builder import tirx as T

from tvm_bsp.kernels.tir_build import Params, local, loop, shared, store, when

#: Threads of the elementwise kernels (state copies, gate math of the BSPC path).
ELEMENTWISE_THREADS = 64

#: ``update(Apre, base, stride, S, b, j)``: the gate math of unit ``j`` of sequence ``b``.
Update = Callable[[tirx.Buffer, tirx.Expr, int, tirx.Buffer, tirx.Var, tirx.Expr], None]


@contextlib.contextmanager
def launch(
    blocks: tirx.Expr | int, batch: tirx.Expr, threads: int, names: tuple[str, str, str]
) -> Iterator[tuple[tirx.Var, tirx.Var, tirx.Var]]:
    """A kernel of ``blocks x batch`` work-groups of ``threads``.

    Yields the ``blockIdx.x``, ``blockIdx.y`` and ``threadIdx.x`` variables, named ``names``.
    """
    with (
        loop(T.thread_binding(blocks, thread="blockIdx.x"), names[0]) as x,
        loop(T.thread_binding(batch, thread="blockIdx.y"), names[1]) as y,
        loop(T.thread_binding(threads, thread="threadIdx.x"), names[2]) as tx,
    ):
        yield x, y, tx


@contextlib.contextmanager
def elementwise(units: int, nb: tirx.Expr) -> Iterator[tuple[tirx.Var, tirx.Expr]]:
    """A work-item per (unit ``j < units``, sequence ``b``): yields ``(b, j)`` inside the guard."""
    W = ELEMENTWISE_THREADS
    with launch(-(-units // W), nb, W, ("bx", "b", "tx")) as (bx, b, tx):
        j = bx * W + tx
        with when(j < units):
            yield b, j


def tree_sum(red: tirx.Buffer, tx: tirx.Var, width: int, gates: int) -> None:
    """``red[g * width]`` becomes the sum of ``red[g * width : (g + 1) * width]``, every ``g``.

    The levels are unrolled in Python, so each is a statement of its own and TVM's barrier
    insertion puts a barrier between consecutive levels (not inside a condition).
    """
    half = width // 2
    while half:
        with loop(T.unroll(gates), "g") as g, when(tx < half):
            i = g * width + tx
            store(red, red[i] + red[i + half], [i])
        half //= 2


def unit_step(
    U: tirx.Buffer,
    src: tirx.Buffer,
    slot: tirx.Expr | int,
    row0: int,
    shape: tuple[int, int],
    threads: tuple[int, int],
    nb: tirx.Expr,
    update: Update,
) -> None:
    """Dense step: ``a_g(j) = U[row0 + g H + j, :] . src[slot, b, :]``, then ``update``.

    ``shape`` is ``(hidden, gates)``, ``threads`` is ``(work_group, vector)``; ``U`` is the
    row-major weight of every gate, flat.
    """
    (H, G), (wg, vec) = shape, threads
    rounds = -(-H // (wg * vec))
    with launch(H, nb, wg, ("j", "b", "tx")) as (j, b, tx):
        red = shared("red", G * wg)
        acc = local("acc", G)
        S = local("S", 4)
        with loop(T.unroll(G), "g") as g:
            store(acc, T.float32(0), [g])
        with loop(T.serial(rounds), "i") as i, loop(T.unroll(vec), "v") as v:
            col = (i * wg + tx) * vec + v
            with when(col < H), loop(T.unroll(G), "g") as g:
                store(acc, acc[g] + U[(row0 + g * H + j) * H + col] * src[slot, b, col], [g])
        with loop(T.unroll(G), "g") as g:
            store(red, acc[g], [g * wg + tx])
        tree_sum(red, tx, wg, G)
        with when(tx == 0):
            update(red, 0, wg, S, b, j)


def panel_params(param: Params, npanels: int, ncols: int, lanes: int) -> tuple:
    """The panel arrays of a kernel's weight: ``panel_ptr, panel_rows, cols, vals``."""
    return (
        param("panel_ptr", (npanels + 1,), "int32"),
        param("panel_rows", (npanels * lanes,), "int32"),
        param("cols", (ncols,), "int32"),
        param("vals", (ncols * lanes,)),
    )


def panel_walk(
    arrays: tuple[tirx.Buffer, ...],
    panel: tirx.Expr,
    lane: tirx.Var,
    shape: tuple[int, int, int],
    source: Callable[[tirx.Expr, tirx.Expr], tirx.Expr],
    present: Callable[[tirx.Expr], tirx.Expr] | None = None,
) -> tirx.Buffer:
    """``acc[f] = sum_e vals[e, lane] * source(f, cols[e])`` over the kept columns of ``panel``.

    ``shape`` is ``(lanes, chunk, frames)``. The work-group stages ``chunk`` columns of every
    frame in local memory per round, each loaded once for all ``lanes`` (BSPC's redundant-load
    elimination); ``present(f)`` guards the loads of a frame past the end. ``arrays`` are
    ``(panel_ptr, panel_rows, cols, vals)``. Returns the local ``acc`` of ``frames`` values.
    """
    (P, CH, F), (PP, _, COLS, VALS) = shape, arrays
    xs = shared("xs", F * CH)
    acc = local("acc", F)
    start, count = PP[panel], PP[panel + 1] - PP[panel]
    with _frames(F) as f:
        store(acc, T.float32(0), [f])
    with loop(T.serial((count + CH - 1) // CH), "c") as c:
        with loop(T.serial(-(-(F * CH) // P)), "q") as q:
            i = q * P + lane
            f, e = (0, i) if F == 1 else (i // CH, i % CH)
            guard = tirx.all(i < F * CH, c * CH + e < count)
            if present is not None:
                guard = tirx.all(guard, present(f))
            with when(guard):
                store(xs, source(f, COLS[start + c * CH + e]), [i])
        with loop(T.serial(T.min(CH, count - c * CH)), "e") as e, _frames(F) as f:
            store(acc, acc[f] + VALS[(start + c * CH + e) * P + lane] * xs[f * CH + e], [f])
    return acc


@contextlib.contextmanager
def _frames(frames: int) -> Iterator[tirx.Expr | int]:
    """``for f in range(frames)``, or ``f = 0`` without a loop for one frame."""
    if frames == 1:
        yield 0
        return
    with loop(T.serial(frames), "f") as f:
        yield f


def panel_step(
    arrays: tuple[tirx.Buffer, ...],
    panels: tuple[int, int],
    shape: tuple[int, int],
    src: tirx.Buffer,
    slot: tirx.Expr | int,
    A: tirx.Buffer,
    rows: int,
    nb: tirx.Expr,
) -> None:
    """BSPC product: ``A[b * rows + row] = U[row, :] . src[slot, b, :]`` over a panel range.

    ``panels`` is ``(first panel, count)``, ``shape`` is ``(lanes, chunk)``.
    """
    (panel0, count), (P, CH) = panels, shape
    with launch(count, nb, P, ("p", "b", "lane")) as (p, b, lane):
        acc = panel_walk(arrays, panel0 + p, lane, (P, CH, 1), lambda f, col: src[slot, b, col])
        store(A, acc[0], [b * rows + arrays[1][(panel0 + p) * P + lane]])


def gate_step(A: tirx.Buffer, hidden: int, rows: int, nb: tirx.Expr, update: Update) -> None:
    """BSPC gate kernel: unit ``j`` of sequence ``b`` reads gate ``g`` at ``A[b*rows+g*H+j]``."""
    with elementwise(hidden, nb) as (b, j):
        update(A, b * rows + j, hidden, local("S", 4), b, j)
