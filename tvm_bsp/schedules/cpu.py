"""CPU schedule templates (x86 and aarch64 ``llvm`` targets) for the panel kernels.

Both kernels are generated as TVMScript with every knob a compile-time constant:

``spmm``  (BSPC weight in the panel layout of :mod:`tvm_bsp.ops.layout`)
    ``for t in parallel(threads)``: thread ``t`` walks its panels (its balanced row stripes).
    Per panel and batch tile: ``acc[batch_tile][k_split][P]`` lives in registers; the panel's
    columns are walked in groups of ``k_split * unroll`` (the layout pads every panel to that
    multiple, so there is no remainder loop); per column one vector load of the ``P`` values,
    one broadcast of ``x[b, col]`` per frame of the tile (loaded once for all ``P`` rows of the
    panel), one vector FMA. The ``k_split`` partial sums (independent FMA chains hide the FMA
    latency) are added, then ``act(acc + bias)`` is stored: one contiguous vector store per
    frame when the panel's rows are consecutive (``row_order="natural"``), else an unguarded
    scatter to the lanes' original rows (dummy lanes repeat lane 0's row and value).
``dense``  (dense weight packed the same way, every column of every panel)
    ``W`` as ``(M/P, N, P)`` panels; the same inner loop with constant extents and no index
    loads, parallel over contiguous panel ranges.

``spmm`` with ``frames_layout="nb"``
    frame-major activations ``x (N, batch) -> y (M, batch)``, vectorized over frames: see
    :mod:`.cpu_frames`.

The templates' knobs (:data:`SPMM_KNOBS`, :data:`DENSE_KNOBS`, with :func:`spmm_knobs` /
:func:`dense_knobs` restricting ``batch_tile`` to divisors of the batch and choosing defaults
for the batch and target) are what a tuner samples; :mod:`.cpu_cost` refines the defaults for
a given matrix. Knobs of ``spmm`` (default for one frame on this host):

================  ===============================  =========================================
knob              choices                          effect
================  ===============================  =========================================
frames_layout     bn (batch 1), bn/nb              PrimFunc layout and vectorized dimension
panel_rows        1, 2, 4, 8, 16, 32, 64 (16)      rows per panel = vector lanes (bn)
k_split           1, 2, 4, 8 (2)                   independent accumulators (FMA latency)
unroll            1, 2, 4 (1)                      column groups per iteration, no remainder
batch_tile        divisors of batch up to 32 (<=8) frames sharing one load of the values
threads           1, 2, 4, 8 (host cores)          balanced groups of row stripes
row_order         reorder / natural                rows in a stripe: by work or ascending
================  ===============================  =========================================
"""

from __future__ import annotations

import os

import tvm
from tvm.script import tirx as T

from tvm_bsp.ops.epilogue import fast_activation
from tvm_bsp.ops.layout import PanelLayout
from tvm_bsp.schedules.cpu_frames import ACC_SCOPE, frames_kernel
from tvm_bsp.schedules.knobs import Knob

_THREADS = (1, 2, 4, 8)
_BATCH_TILES = (1, 2, 4, 8, 16, 32)


def _host_threads() -> int:
    n = os.cpu_count() or 1
    return max(t for t in _THREADS if t <= n)


def _batch_tiles(batch: int) -> tuple[int, ...]:
    return tuple(b for b in _BATCH_TILES if batch % b == 0) or (1,)


def spmm_knobs(batch: int, threads_default: int | None = None) -> list[Knob]:
    """Knobs of the CPU BSPC kernel for ``batch`` frames, defaults tuned on x86 AVX-512.

    Parameters
    ----------
    batch : int
        Frames per call.
    threads_default : int, optional
        Default of the ``threads`` knob (host core count, capped at 8, if omitted).
    """
    tiles = _batch_tiles(batch)
    tile_default = max(b for b in tiles if b <= 8)
    threads = threads_default or _host_threads()
    layouts = ("bn",) if batch == 1 else ("bn", "nb")
    return [
        Knob(
            "frames_layout",
            layouts,
            "bn",
            "x (batch, N) vectorized over rows, or frame-major x (N, batch) vectorized over "
            "frames (changes the PrimFunc's x and y shapes, see cpu_frames)",
        ),
        Knob("panel_rows", (1, 2, 4, 8, 16, 32, 64), 16, "rows per panel (vector lanes for bn)"),
        Knob("k_split", (1, 2, 4, 8), 2, "independent accumulators over a panel's columns"),
        Knob("unroll", (1, 2, 4), 1, "column groups per loop iteration (no remainder loop)"),
        Knob("batch_tile", tiles, tile_default, "frames sharing one load of the panel values"),
        Knob("threads", _THREADS, threads, "parallel thread groups of balanced row stripes"),
        Knob(
            "row_order",
            ("reorder", "natural"),
            "reorder" if batch == 1 else "natural",
            "rows inside a stripe: by work (less padding) or ascending (vector stores)",
        ),
    ]


def dense_knobs(batch: int, threads_default: int | None = None) -> list[Knob]:
    """Knobs of the CPU dense kernel for ``batch`` frames."""
    tiles = _batch_tiles(batch)
    threads = threads_default or _host_threads()
    return [
        Knob("panel_rows", (8, 16, 32, 64), 32 if batch == 1 else 16, "rows per panel"),
        Knob("k_split", (1, 2, 4), 1, "independent accumulators over the columns"),
        Knob("batch_tile", tiles, max(b for b in tiles if b <= 16), "frames per register tile"),
        Knob("threads", _THREADS, threads, "parallel thread groups of panels"),
    ]


#: The knobs for a single frame on this host (see :func:`spmm_knobs`).
SPMM_KNOBS = spmm_knobs(1)
#: The dense knobs for a single frame on this host (see :func:`dense_knobs`).
DENSE_KNOBS = dense_knobs(1)


def spmm_kernel(
    layout: PanelLayout, batch: int, config: dict, activation: str | None = None
) -> tvm.tirx.PrimFunc:
    """Generate the CPU BSPC kernel for a packed layout.

    The PrimFunc takes ``x (batch, N)``, the layout's ``thread_ptr, panel_ptr, panel_rows,
    cols, vals, bias`` and writes ``y (batch, M)``. ``config`` must be a full config of
    :func:`spmm_knobs` whose ``panel_rows``, ``threads`` and ``row_order`` match the layout,
    which must be padded to a multiple of ``k_split * unroll`` columns. With
    ``frames_layout="nb"`` the frame-major kernel of :mod:`.cpu_frames` is returned instead.
    """
    if config.get("frames_layout", "bn") == "nb":
        return frames_kernel(layout, batch, config, activation)
    M, N = layout.shape
    P, Bt = layout.panel_rows, int(config["batch_tile"])
    K, U = int(config["k_split"]), int(config["unroll"])
    KU = K * U
    if layout.k_split % KU:
        raise ValueError(f"layout padded to {layout.k_split} columns, the kernel needs {KU}")
    nthreads = layout.threads
    npanels, ncols = layout.npanels, layout.ncols
    natural = layout.row_order == "natural"
    act = fast_activation(activation)
    B = batch
    KP = K * P
    if B % Bt:
        raise ValueError(f"batch_tile {Bt} does not divide batch {B}")

    @T.prim_func
    def bspc_spmm(
        x: T.Buffer((B, N), "float32"),
        thread_ptr: T.Buffer((nthreads + 1,), "int32"),
        panel_ptr: T.Buffer((npanels + 1,), "int32"),
        panel_rows: T.Buffer((npanels * P,), "int32"),
        cols: T.Buffer((ncols,), "int32"),
        vals: T.Buffer((ncols * P,), "float32"),
        bias: T.Buffer((npanels * P,), "float32"),
        y: T.Buffer((B, M), "float32"),
    ):
        T.func_attr({"tirx.noalias": True})
        for t in T.parallel(nthreads) if nthreads > 1 else T.serial(1):
            acc = T.alloc_buffer((Bt * KP,), "float32", scope=ACC_SCOPE)
            for pp in range(thread_ptr[t + 1] - thread_ptr[t]):
                for bo in range(B // Bt):
                    for j in T.vectorized(Bt * KP):
                        acc[j] = T.float32(0)
                    for e in range(
                        (panel_ptr[thread_ptr[t] + pp + 1] - panel_ptr[thread_ptr[t] + pp]) // KU
                    ):
                        for u in T.unroll(U):
                            for k in T.unroll(K):
                                for bt in T.unroll(Bt):
                                    for i in T.vectorized(P):
                                        acc[bt * KP + k * P + i] = acc[bt * KP + k * P + i] + vals[
                                            (panel_ptr[thread_ptr[t] + pp] + e * KU + u * K + k)
                                            * P
                                            + i
                                        ] * x[
                                            bo * Bt + bt,
                                            cols[
                                                panel_ptr[thread_ptr[t] + pp] + e * KU + u * K + k
                                            ],
                                        ]
                    for bt in T.unroll(Bt):
                        for k in T.unroll(K - 1):
                            for i in T.vectorized(P):
                                acc[bt * KP + i] = acc[bt * KP + i] + acc[bt * KP + (k + 1) * P + i]
                        for i in T.vectorized(P):
                            acc[bt * KP + i] = act(
                                acc[bt * KP + i] + bias[(thread_ptr[t] + pp) * P + i]
                            )
                        if natural:
                            if (
                                panel_rows[(thread_ptr[t] + pp) * P + P - 1]
                                == panel_rows[(thread_ptr[t] + pp) * P] + P - 1
                            ):
                                for i in T.vectorized(P):
                                    y[bo * Bt + bt, panel_rows[(thread_ptr[t] + pp) * P] + i] = acc[
                                        bt * KP + i
                                    ]
                            else:
                                for i in T.vectorized(P):
                                    y[bo * Bt + bt, panel_rows[(thread_ptr[t] + pp) * P + i]] = acc[
                                        bt * KP + i
                                    ]
                        else:
                            for i in T.vectorized(P):
                                y[bo * Bt + bt, panel_rows[(thread_ptr[t] + pp) * P + i]] = acc[
                                    bt * KP + i
                                ]

    return bspc_spmm


def dense_kernel(
    M: int, N: int, batch: int, config: dict, activation: str | None = None
) -> tvm.tirx.PrimFunc:
    """Generate the CPU dense kernel ``y = act(W x + bias)``.

    The PrimFunc takes ``x (batch, N)``, ``w`` packed by :func:`tvm_bsp.ops.dense.pack_dense`
    (``(ceil(M/P) * N * P,)``), ``bias (ceil(M/P) * P,)`` and writes ``y (batch, M)``.
    """
    P, K, Bt = int(config["panel_rows"]), int(config["k_split"]), int(config["batch_tile"])
    nthreads = int(config["threads"])
    B = batch
    if B % Bt:
        raise ValueError(f"batch_tile {Bt} does not divide batch {B}")
    if N % K:
        K = 1  # a column count that k_split does not divide: one accumulator
    npanels = -(-M // P)
    full = npanels if M % P == 0 else npanels - 1  # panels whose P rows are all real
    chunk = -(-npanels // nthreads)
    act = fast_activation(activation)
    KP = K * P
    tail = M - full * P

    @T.prim_func
    def dense(
        x: T.Buffer((B, N), "float32"),
        w: T.Buffer((npanels * N * P,), "float32"),
        bias: T.Buffer((npanels * P,), "float32"),
        y: T.Buffer((B, M), "float32"),
    ):
        T.func_attr({"tirx.noalias": True})
        for t in T.parallel(nthreads) if nthreads > 1 else T.serial(1):
            acc = T.alloc_buffer((Bt * KP,), "float32", scope=ACC_SCOPE)
            for pp in range(T.min(chunk, npanels - t * chunk)):
                for bo in range(B // Bt):
                    for j in T.vectorized(Bt * KP):
                        acc[j] = T.float32(0)
                    for e in range(N // K):
                        for k in T.unroll(K):
                            for bt in T.unroll(Bt):
                                for i in T.vectorized(P):
                                    acc[bt * KP + k * P + i] = (
                                        acc[bt * KP + k * P + i]
                                        + w[((t * chunk + pp) * N + e * K + k) * P + i]
                                        * x[bo * Bt + bt, e * K + k]
                                    )
                    for bt in T.unroll(Bt):
                        for k in T.unroll(K - 1):
                            for i in T.vectorized(P):
                                acc[bt * KP + i] = acc[bt * KP + i] + acc[bt * KP + (k + 1) * P + i]
                        for i in T.vectorized(P):
                            acc[bt * KP + i] = act(
                                acc[bt * KP + i] + bias[(t * chunk + pp) * P + i]
                            )
                        if t * chunk + pp < full:
                            for i in T.vectorized(P):
                                y[bo * Bt + bt, (t * chunk + pp) * P + i] = acc[bt * KP + i]
                        else:
                            for i in range(tail):
                                y[bo * Bt + bt, full * P + i] = acc[bt * KP + i]

    return dense
