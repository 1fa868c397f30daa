"""Pick, instantiate and feed the OpenCL RNN kernels of a layer (:mod:`.sequence`).

The OpenCL counterparts of :func:`tvm_bsp.kernels.cpu.rnn.linear_kernel` and
:func:`~tvm_bsp.kernels.cpu.rnn.sequence_kernel`, with the same return values, so the Relax
lowering treats both targets alike. Weights are packed at compile time (numpy); BSPC matrices
are validated by their constructor.
"""

from __future__ import annotations

import numpy as np
import tvm

from tvm_bsp.bspc.matrix import BSPCMatrix
from tvm_bsp.kernels.cpu.rnn import SequenceKernel
from tvm_bsp.kernels.layer_weights import LayerWeights, Weight
from tvm_bsp.kernels.layout import PanelLayout, pack_panels
from tvm_bsp.kernels.opencl.knobs import GPURNNKnobs
from tvm_bsp.kernels.opencl.sequence import gpu_bspc_sequence, gpu_dense_sequence, gpu_panel_linear
from tvm_bsp.kernels.rnn_pack import bspc_row_range

#: The panel arrays the OpenCL kernels take, in order.
GPU_PANEL_ARRAYS = ("panel_ptr", "panel_rows", "cols", "vals")


def _tag(func: tvm.tirx.PrimFunc, kind: str, knobs: GPURNNKnobs) -> tvm.tirx.PrimFunc:
    return func.without_attr("global_symbol").with_attrs(
        {
            "op_pattern": 8,  # opaque: never fused
            "tirx.is_scheduled": True,
            "tvm_bsp.kernel": kind,
            "tvm_bsp.knobs": knobs.to_json(),
        }
    )


def _as_bspc(weight: Weight) -> BSPCMatrix:
    """A dense weight as a one-block BSPC matrix (every row and column with a non-zero kept)."""
    if isinstance(weight, BSPCMatrix):
        return weight
    return BSPCMatrix.from_dense(np.asarray(weight, np.float32))


def _layout(matrix: BSPCMatrix, knobs: GPURNNKnobs, bias=None) -> PanelLayout:
    return pack_panels(matrix, panel_rows=knobs.panel_rows, k_split=1, threads=1, bias=bias)


def gpu_linear_kernel(
    weight: Weight, bias: np.ndarray | None, knobs: GPURNNKnobs, activation: str = "none"
) -> tuple[tvm.tirx.PrimFunc, list[np.ndarray], int]:
    """OpenCL kernel of ``y = act(x W^T + b)`` over a symbolic number of frames.

    Parameters
    ----------
    weight : numpy.ndarray or BSPCMatrix
        ``(M, K)``; a dense weight is packed in the same panel layout.
    bias : numpy.ndarray, optional
        ``(M,)``.
    knobs : GPURNNKnobs
    activation : str
        One of :data:`tvm_bsp.kernels.epilogue.ACTIVATIONS`.

    Returns
    -------
    func : PrimFunc
        ``func(x, *consts, y)``.
    consts : list of numpy.ndarray
        Panel arrays and the per-lane bias.
    rows : int
        Output features ``M``.
    """
    M, K = weight.shape
    layout = _layout(_as_bspc(weight), knobs, bias)
    func = gpu_panel_linear(M, K, layout.npanels, layout.ncols, knobs, activation)
    consts = [layout.arrays[n] for n in GPU_PANEL_ARRAYS] + [layout.arrays["bias"]]
    kind = "bspc_linear_opencl" if isinstance(weight, BSPCMatrix) else "dense_linear_opencl"
    return _tag(func, kind, knobs), consts, M


def _concat_layouts(first: PanelLayout, second: PanelLayout) -> list[np.ndarray]:
    """The panel arrays of two layouts back to back (the second's column offsets shifted)."""
    a, b = first.arrays, second.arrays
    return [
        np.concatenate([a["panel_ptr"][:-1], b["panel_ptr"] + a["cols"].size]).astype(np.int32),
        np.concatenate([a["panel_rows"], b["panel_rows"]]).astype(np.int32),
        np.concatenate([a["cols"], b["cols"]]).astype(np.int32),
        np.concatenate([a["vals"], b["vals"]]).astype(np.float32),
    ]


def gpu_sequence_kernel(weights: LayerWeights, knobs: GPURNNKnobs) -> SequenceKernel:
    """The OpenCL time-loop kernel of one recurrent layer.

    The result is that of :func:`tvm_bsp.kernels.cpu.rnn.sequence_kernel` (``consts`` are
    the packed recurrent weight and ``b_hn``, zeros for cells without it). Projected LSTMs
    are refused.
    """
    if weights.proj is not None:
        raise NotImplementedError("projected LSTMs (proj_size > 0) have no OpenCL kernel")
    cell, u, H, layer, scale = weights.cell, weights.u, weights.hidden, weights.layer, weights.scale
    input_bias, bhn = weights.biases()
    if isinstance(u, BSPCMatrix):
        if cell == "kaldi_gru":
            rz = _layout(bspc_row_range(u, 0, 2 * H), knobs)
            n = _layout(bspc_row_range(u, 2 * H, 3 * H), knobs)
            arrays, rz_panels = _concat_layouts(rz, n), rz.npanels
        else:
            layout = _layout(u, knobs)
            arrays, rz_panels = [layout.arrays[k] for k in GPU_PANEL_ARRAYS], 0
        npanels, ncols = arrays[0].size - 1, arrays[2].size
        func = gpu_bspc_sequence(cell, H, npanels, ncols, knobs, rz_panels, float(scale), layer)
        consts = [*arrays, bhn]
        kind = f"bspc_{cell}_sequence_opencl"
    else:
        func = gpu_dense_sequence(cell, H, knobs, float(scale), layer)
        consts = [np.ascontiguousarray(np.asarray(u, np.float32).ravel()), bhn]
        kind = f"dense_{cell}_sequence_opencl"
    return SequenceKernel(_tag(func, kind, knobs), consts, input_bias, H)
