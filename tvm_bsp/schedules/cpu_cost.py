"""A small cost model that picks CPU knob values for a given BSPC matrix (no measurement).

The static knob defaults of :mod:`.cpu` suit a typical matrix; the best panel height, row
order and thread count depend on the sparsity pattern (padding grows with the row rate) and
on the work size (a parallel launch costs microseconds). :func:`suggest_spmm_config` compares
candidates with, per thread,

``time = max(compute, bytes / bandwidth) + panel overhead + scattered stores (+ launch)``

where ``compute`` counts per stored panel column and frame tile the vector FMAs and the
broadcasts of ``x``, and the bandwidth is that of L2 when a thread's values fit in it, else
of L3. The constants were measured on a Zen 5 host (AVX-512) and only rank candidates; a
tuner measures.
"""

from __future__ import annotations

from typing import Any

import tvm

from tvm_bsp.bspc.matrix import BSPCMatrix
from tvm_bsp.ops.layout import panel_column_count
from tvm_bsp.schedules.targets import is_arm

FMA_NS = 0.11  # one vector FMA
BROADCAST_NS = 0.3  # one broadcast of x[b, col] (index load, often an L1 miss per frame row)
FRAME_LOAD_NS = 0.1  # one load of x[col, :] (frame-major) or one value broadcast
PANEL_NS = 2.5  # per panel and batch tile: zero, reduce, epilogue, loop overhead
SCATTER_NS = 0.2  # per scattered output element
L2_BYTES = 1 << 20  # per core
L2_GBPS = 200.0
L3_GBPS = 65.0  # one core streaming from the last-level cache
LAUNCH_NS = 2500.0  # one parallel launch of the runtime's thread pool
PARALLEL_GAIN = 0.8  # use threads only when they cut the estimate by this factor


def vector_lanes(target: tvm.target.Target) -> int:
    """float32 lanes of the widest vector register the target has."""
    from tvm.target import codegen

    if is_arm(target):
        return 4
    try:
        if codegen.llvm_cpu_has_features("avx512f", target):
            return 16
        if codegen.llvm_cpu_has_features("avx2", target):
            return 8
    except Exception:  # a target LLVM cannot query
        pass
    return 4


def estimate_ns(
    matrix: BSPCMatrix, batch: int, config: dict[str, Any], lanes: int, cols: int | None = None
) -> float:
    """Estimated nanoseconds of one call of the CPU BSPC kernel with ``config``."""
    P, order, Bt = config["panel_rows"], config["row_order"], config["batch_tile"]
    threads = config["threads"]
    if cols is None:
        cols = panel_column_count(matrix, P, order)
    M = matrix.shape[0]
    panels = -(-M // P) + matrix.row_blocks  # upper bound: one partial panel per stripe
    if config.get("frames_layout", "bn") == "nb":  # vectors over frames: no scatter, no tiles
        vecs = -(-batch // lanes)
        compute = cols * (FMA_NS * P * vecs + FRAME_LOAD_NS * (P + vecs))
        nbytes = cols * (P + 1) * 4 / threads
        memory = nbytes / (L2_GBPS if nbytes <= L2_BYTES else L3_GBPS)
        fixed = panels * (PANEL_NS + FRAME_LOAD_NS * P * vecs)
        per_thread = max(compute / threads, memory) + fixed / threads
        return per_thread + (LAUNCH_NS if threads > 1 else 0.0)
    tiles = batch // Bt
    compute = cols * tiles * (FMA_NS * Bt * -(-P // lanes) + BROADCAST_NS * Bt)
    nbytes = cols * (P + 1) * 4 / threads
    memory = nbytes / (L2_GBPS if nbytes <= L2_BYTES else L3_GBPS) * tiles
    fixed = PANEL_NS * panels * tiles
    scatter = SCATTER_NS * M * batch if order == "reorder" else 0.0
    per_thread = max(compute / threads, memory) + (fixed + scatter) / threads
    return per_thread + (LAUNCH_NS if threads > 1 else 0.0)


def suggest_spmm_config(
    matrix: BSPCMatrix,
    batch: int,
    target: tvm.target.Target,
    knobs: list,
    fixed: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Knob values for ``matrix`` chosen by the cost model (a full config of ``knobs``).

    Parameters
    ----------
    matrix : BSPCMatrix
    batch : int
    target : tvm.target.Target
        An ``llvm`` target (its vector width matters).
    knobs : list of Knob
        The template's knobs; their defaults fill what the model does not choose.
    fixed : dict, optional
        Knob values chosen by the caller; the model optimizes the others around them (the
        caller's values still override the result).
    """
    by_name = {k.name: k for k in knobs}
    base = {k.name: k.default for k in knobs}
    fixed = dict(fixed or {})
    base["frames_layout"] = fixed.get("frames_layout", base.get("frames_layout", "bn"))
    lanes = vector_lanes(target)
    if base["frames_layout"] == "nb":
        heights = [p for p in by_name["panel_rows"].choices if p <= 8]
        orders: tuple[str, ...] = ("reorder",)
    else:
        heights = [p for p in by_name["panel_rows"].choices if lanes <= p <= 2 * lanes]
        orders = ("reorder", "natural") if batch == 1 else ("natural",)
    heights = [fixed["panel_rows"]] if "panel_rows" in fixed else heights or [base["panel_rows"]]
    orders = (fixed["row_order"],) if "row_order" in fixed else orders
    tile = base["batch_tile"]
    best: dict[int, tuple[float, dict[str, Any]]] = {}
    for P in heights:
        for order in orders:
            cols = panel_column_count(matrix, P, order)
            thread_choices = [fixed["threads"]] if "threads" in fixed else [1, base["threads"]]
            for threads in sorted(set(thread_choices)):
                config = {
                    **base,
                    "panel_rows": P,
                    "row_order": order,
                    "threads": threads,
                    "k_split": 2 if batch == 1 else 1,
                    "unroll": 2 if batch == 1 else 1,
                    "batch_tile": tile,
                    **{k: v for k, v in fixed.items() if k in base},
                }
                ns = estimate_ns(matrix, batch, config, lanes, cols)
                if threads not in best or ns < best[threads][0]:
                    best[threads] = (ns, config)
    if len(best) == 1:
        return next(iter(best.values()))[1]
    single = best[1]
    multi = best.get(base["threads"], single)
    return multi[1] if multi[0] < PARALLEL_GAIN * single[0] else single[1]
