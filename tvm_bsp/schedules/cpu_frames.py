"""CPU BSPC kernel for frame-major activations: ``x (N, batch) -> y (M, batch)``.

With the frames of a column contiguous (``frames_layout="nb"``), the batch is the vector
dimension and nothing has to be padded along the rows: a panel of ``P`` rows (the panel layout
of :mod:`tvm_bsp.ops.layout`, typically ``P`` = 1..8) keeps ``acc[P][batch]`` in registers,
and per stored column loads the ``batch``-vector ``x[col, :]`` once for the panel's ``P`` rows
(redundant-load elimination), broadcasts each row's value and does one vector FMA per row and
vector of frames. Output rows are contiguous ``batch``-vectors, so the panel's row order costs
nothing and the lightest-padding order (``"reorder"``) is free to use.

This is the layout of a batched RNN that keeps its state as ``(hidden, batch)``; the row-major
``(batch, N)`` contract is served by :mod:`.cpu` (vectorized over rows).
"""

from __future__ import annotations

import tvm
from tvm.script import tirx as T

from tvm_bsp.ops.epilogue import fast_activation
from tvm_bsp.ops.layout import PanelLayout

#: Scope of the per-thread accumulator buffers of the CPU kernels. Allocated inside the
#: (parallel) loop body, a small "global" buffer becomes a stack array of the thread's closure,
#: while "local" goes through ``TVMBackendAllocWorkspace`` / ``FreeWorkspace`` on every call.
ACC_SCOPE = "global"


def frames_kernel(
    layout: PanelLayout, batch: int, config: dict, activation: str | None = None
) -> tvm.tirx.PrimFunc:
    """Generate the frame-major kernel (``x (N, B), thread_ptr, panel_ptr, panel_rows, cols,
    vals, bias -> y (M, B)``); ``layout`` padded to ``unroll`` columns."""
    M, N = layout.shape
    P, B, U = layout.panel_rows, batch, int(config["unroll"])
    nthreads, npanels, ncols = layout.threads, layout.npanels, layout.ncols
    if layout.k_split % U:
        raise ValueError(f"layout padded to {layout.k_split} columns, the kernel needs {U}")
    act = fast_activation(activation)

    @T.prim_func
    def bspc_spmm_frames(
        x: T.Buffer((N, B), "float32"),
        thread_ptr: T.Buffer((nthreads + 1,), "int32"),
        panel_ptr: T.Buffer((npanels + 1,), "int32"),
        panel_rows: T.Buffer((npanels * P,), "int32"),
        cols: T.Buffer((ncols,), "int32"),
        vals: T.Buffer((ncols * P,), "float32"),
        bias: T.Buffer((npanels * P,), "float32"),
        y: T.Buffer((M, B), "float32"),
    ):
        T.func_attr({"tirx.noalias": True})
        for t in T.parallel(nthreads) if nthreads > 1 else T.serial(1):
            acc = T.alloc_buffer((P * B,), "float32", scope=ACC_SCOPE)
            for pp in range(thread_ptr[t + 1] - thread_ptr[t]):
                for j in T.vectorized(P * B):
                    acc[j] = T.float32(0)
                for e in range(
                    (panel_ptr[thread_ptr[t] + pp + 1] - panel_ptr[thread_ptr[t] + pp]) // U
                ):
                    for u in T.unroll(U):
                        for r in T.unroll(P):
                            for f in T.vectorized(B):
                                acc[r * B + f] = acc[r * B + f] + vals[
                                    (panel_ptr[thread_ptr[t] + pp] + e * U + u) * P + r
                                ] * x[cols[panel_ptr[thread_ptr[t] + pp] + e * U + u], f]
                for r in T.unroll(P):
                    for f in T.vectorized(B):
                        y[panel_rows[(thread_ptr[t] + pp) * P + r], f] = act(
                            acc[r * B + f] + bias[(thread_ptr[t] + pp) * P + r]
                        )

    return bspc_spmm_frames
