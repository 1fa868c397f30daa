"""OpenCL mat-mat kernel ``y = act(x W^T + b)`` (input projection, dense head), ``W`` in panels.

A work-group per (panel, tile of ``frames`` frames), a thread per lane (row): the tile's
``x[:, cols[e]]`` of a chunk is staged in local memory once for the panel's lanes
(:func:`tvm_bsp.kernels.opencl.products.panel_walk`, the walk of the BSPC sequence kernels too).
Dense weights use the panel layout with every column kept.

Signature (float32 but the int32 panel arrays)::

    x (N,K), panel_ptr (npanels+1,), panel_rows, cols (ncols,), vals, bias (npanels*P,) -> y (N,M)
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from tvm import tirx
from tvm.script.ir_builder import tirx as T

from tvm_bsp.kernels.epilogue import activation_expr
from tvm_bsp.kernels.opencl.products import launch, panel_params, panel_walk
from tvm_bsp.kernels.tir_build import Params, build, loop, size_var, store, when

if TYPE_CHECKING:
    from tvm_bsp.kernels.opencl.knobs import GPURNNKnobs


@functools.lru_cache(maxsize=64)
def gpu_panel_linear(
    rows: int, cols: int, npanels: int, ncols: int, knobs: GPURNNKnobs, activation: str = "none"
) -> tirx.PrimFunc:
    """OpenCL ``y = act(x W^T + b)`` over a symbolic number of frames ``N``.

    Parameters
    ----------
    rows, cols : int
        ``W`` is ``(rows, cols)``.
    npanels, ncols : int
        Panels and stored columns of the packed layout.
    knobs : GPURNNKnobs
        ``panel_rows`` lanes per panel, ``chunk`` columns staged per round, ``frames`` per
        work-group; ``exact``: OpenCL ``exp`` for ``sigmoid`` / ``tanh`` (else polynomials).
    activation : str
        One of :data:`tvm_bsp.kernels.epilogue.ACTIVATIONS`.
    """
    panel_rows, chunk, frames = knobs.panel_rows, knobs.chunk, knobs.frames
    M, K, P, F = rows, cols, panel_rows, frames
    act = activation_expr(activation, knobs.exact)

    def body() -> None:
        T.func_attr({"tirx.noalias": True})
        n = size_var("n")
        param = Params()
        X = param("x", (n, K))
        arrays = panel_params(param, npanels, ncols, P)
        BIAS = param("bias", (npanels * P,))
        Y = param("y", (n, M))
        with launch(npanels, (n + F - 1) // F, P, ("p", "fb", "lane")) as (p, fb, lane):
            acc = panel_walk(
                arrays,
                p,
                lane,
                (P, chunk, F),
                lambda f, col: X[fb * F + f, col],
                lambda f: fb * F + f < n,
            )
            with loop(T.serial(F), "f") as f, when(fb * F + f < n):
                row = arrays[1][p * P + lane]
                store(Y, act(acc[f] + BIAS[p * P + lane]), [fb * F + f, row])

    return build("linear_opencl", body)
