"""OpenCL schedule templates (Mali, Adreno) for the panel kernels.

``spmm`` (BSPC panel layout of :mod:`tvm_bsp.ops.layout`, packed with one thread group)
    One work-group per panel: ``threadIdx.x`` = the ``P`` lanes (rows) of the panel,
    ``threadIdx.y`` = ``batch_threads`` groups of frames. The panel's columns are walked in
    chunks of ``chunk`` columns: the work-group first stages ``x[b, cols[e]]`` of the chunk for
    all frames in local (shared) memory, once per panel for all its rows (redundant-load
    elimination), then every thread accumulates ``vals[e * P + lane] * xs[b, e]`` over the
    chunk (consecutive lanes read consecutive values: coalesced). The epilogue and the store to
    the lane's original row follow.
``dense``
    The same with the dense panel packing (:mod:`tvm_bsp.ops.dense_pack`): constant chunk
    count, no column indices.
"""

from __future__ import annotations

import tvm
from tvm.script import tirx as T

from tvm_bsp.ops.epilogue import fast_activation
from tvm_bsp.ops.layout import PanelLayout
from tvm_bsp.schedules.knobs import Knob

_LOCAL_BYTES = 16384  # work-group local memory of the smallest targets (Mali)
_MAX_THREADS = 256


def _batch_threads(batch: int, panel_rows: int = 16) -> tuple[int, ...]:
    return tuple(b for b in (1, 2, 4, 8, 16) if batch % b == 0 and b * panel_rows <= _MAX_THREADS)


def spmm_knobs(batch: int) -> list[Knob]:
    """Knobs of the OpenCL BSPC kernel for ``batch`` frames."""
    bt = _batch_threads(batch)
    chunks = tuple(c for c in (16, 32, 64, 128) if c * batch * 4 <= _LOCAL_BYTES) or (16,)
    return [
        Knob("panel_rows", (16, 32, 64, 128), 32, "rows per panel = threads along x"),
        Knob("chunk", chunks, chunks[min(1, len(chunks) - 1)], "columns staged per step"),
        Knob("batch_threads", bt, max(b for b in bt if b <= 8), "threads along the batch"),
        Knob("row_order", ("reorder", "natural"), "reorder", "row order inside a stripe"),
    ]


def dense_knobs(batch: int) -> list[Knob]:
    """Knobs of the OpenCL dense kernel for ``batch`` frames."""
    bt = _batch_threads(batch)
    chunks = tuple(c for c in (16, 32, 64, 128) if c * batch * 4 <= _LOCAL_BYTES) or (16,)
    return [
        Knob("panel_rows", (16, 32, 64, 128), 32, "rows per work-group"),
        Knob("chunk", chunks, chunks[min(1, len(chunks) - 1)], "columns staged per step"),
        Knob("batch_threads", bt, max(b for b in bt if b <= 8), "threads along the batch"),
    ]


def _check(batch: int, P: int, Bg: int, CH: int) -> None:
    if batch % Bg:
        raise ValueError(f"batch_threads {Bg} does not divide batch {batch}")
    if P * Bg > _MAX_THREADS:
        raise ValueError(f"{P} x {Bg} threads exceed {_MAX_THREADS} per work-group")
    if CH * batch * 4 > _LOCAL_BYTES:
        raise ValueError(f"chunk {CH} x batch {batch} floats exceed {_LOCAL_BYTES} bytes")


def spmm_kernel(
    layout: PanelLayout, batch: int, config: dict, activation: str | None = None
) -> tvm.tirx.PrimFunc:
    """Generate the OpenCL BSPC kernel (``x, panel_ptr, panel_rows, cols, vals, bias, y``)."""
    M, N = layout.shape
    P, CH, Bg = layout.panel_rows, int(config["chunk"]), int(config["batch_threads"])
    B = batch
    _check(B, P, Bg, CH)
    npanels, ncols = layout.npanels, layout.ncols
    FB = B // Bg  # frames per thread
    NT = P * Bg  # threads per work-group
    LOADS = -(-(CH * B) // NT)  # staging loads per thread and chunk
    act = fast_activation(activation)

    @T.prim_func
    def bspc_spmm_opencl(
        x: T.Buffer((B, N), "float32"),
        panel_ptr: T.Buffer((npanels + 1,), "int32"),
        panel_rows: T.Buffer((npanels * P,), "int32"),
        cols: T.Buffer((ncols,), "int32"),
        vals: T.Buffer((ncols * P,), "float32"),
        bias: T.Buffer((npanels * P,), "float32"),
        y: T.Buffer((B, M), "float32"),
    ):
        T.func_attr({"tirx.noalias": True})
        for p in T.thread_binding(npanels, thread="blockIdx.x"):
            for ty in T.thread_binding(Bg, thread="threadIdx.y"):
                for lane in T.thread_binding(P, thread="threadIdx.x"):
                    xs = T.alloc_buffer((B * CH,), "float32", scope="shared")
                    acc = T.alloc_buffer((FB,), "float32", scope="local")
                    for f in range(FB):
                        acc[f] = T.float32(0)
                    for c in range((panel_ptr[p + 1] - panel_ptr[p] + CH - 1) // CH):
                        for j in range(LOADS):
                            if (j * NT + ty * P + lane) < CH * B and c * CH + (
                                j * NT + ty * P + lane
                            ) % CH < (panel_ptr[p + 1] - panel_ptr[p]):
                                xs[j * NT + ty * P + lane] = x[
                                    (j * NT + ty * P + lane) // CH,
                                    cols[panel_ptr[p] + c * CH + (j * NT + ty * P + lane) % CH],
                                ]
                        for e in range(T.min(CH, panel_ptr[p + 1] - panel_ptr[p] - c * CH)):
                            for f in range(FB):
                                acc[f] = (
                                    acc[f]
                                    + vals[(panel_ptr[p] + c * CH + e) * P + lane]
                                    * xs[(f * Bg + ty) * CH + e]
                                )
                    for f in range(FB):  # a dummy lane rewrites lane 0's value
                        y[f * Bg + ty, panel_rows[p * P + lane]] = act(acc[f] + bias[p * P + lane])

    return bspc_spmm_opencl


def dense_kernel(
    M: int, N: int, batch: int, config: dict, activation: str | None = None
) -> tvm.tirx.PrimFunc:
    """Generate the OpenCL dense kernel (``x, w, bias, y``; ``w`` from ``pack_dense``)."""
    P, CH, Bg = int(config["panel_rows"]), int(config["chunk"]), int(config["batch_threads"])
    B = batch
    _check(B, P, Bg, CH)
    npanels = -(-M // P)
    FB = B // Bg
    NT = P * Bg
    LOADS = -(-(CH * B) // NT)
    nchunks = -(-N // CH)
    act = fast_activation(activation)

    @T.prim_func
    def dense_opencl(
        x: T.Buffer((B, N), "float32"),
        w: T.Buffer((npanels * N * P,), "float32"),
        bias: T.Buffer((npanels * P,), "float32"),
        y: T.Buffer((B, M), "float32"),
    ):
        T.func_attr({"tirx.noalias": True})
        for p in T.thread_binding(npanels, thread="blockIdx.x"):
            for ty in T.thread_binding(Bg, thread="threadIdx.y"):
                for lane in T.thread_binding(P, thread="threadIdx.x"):
                    xs = T.alloc_buffer((B * CH,), "float32", scope="shared")
                    acc = T.alloc_buffer((FB,), "float32", scope="local")
                    for f in range(FB):
                        acc[f] = T.float32(0)
                    for c in range(nchunks):
                        for j in range(LOADS):
                            if (j * NT + ty * P + lane) < CH * B and (
                                c * CH + (j * NT + ty * P + lane) % CH < N
                            ):
                                xs[j * NT + ty * P + lane] = x[
                                    (j * NT + ty * P + lane) // CH,
                                    c * CH + (j * NT + ty * P + lane) % CH,
                                ]
                        for e in range(T.min(CH, N - c * CH)):
                            for f in range(FB):
                                acc[f] = (
                                    acc[f]
                                    + w[(p * N + c * CH + e) * P + lane]
                                    * xs[(f * Bg + ty) * CH + e]
                                )
                    if p * P + lane < M:
                        for f in range(FB):
                            y[f * Bg + ty, p * P + lane] = act(acc[f] + bias[p * P + lane])

    return dense_opencl
