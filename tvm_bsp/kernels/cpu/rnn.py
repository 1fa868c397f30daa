"""Pick, instantiate and feed the RNN kernel templates for one layer.

:func:`linear_kernel` and :func:`sequence_kernel` take the weights as they are (a dense
numpy matrix or a :class:`~tvm_bsp.bspc.BSPCMatrix`) and the knobs, and return the PrimFunc
plus its constant inputs in the kernel's packed layout, in parameter order. Everything here
is compile-time numpy; the kernels never see an unvalidated BSPC matrix (the
``BSPCMatrix`` constructor validates).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tvm

from tvm_bsp.bspc.matrix import BSPCMatrix
from tvm_bsp.kernels.cpu.linear import bspc_linear, dense_linear
from tvm_bsp.kernels.cpu.products import PANEL_ARRAYS
from tvm_bsp.kernels.cpu.sequence import cpu_sequence
from tvm_bsp.kernels.layer_weights import LayerWeights, Weight
from tvm_bsp.kernels.layout import PanelShape, pack_panels
from tvm_bsp.kernels.rnn_knobs import RNNKnobs
from tvm_bsp.kernels.rnn_pack import bspc_row_range, pack_gate_tiles, pack_row_panels, pad_rows


def macs(weight: Weight) -> int:
    """Multiply-adds of one product with ``weight`` per frame (stored values for BSPC)."""
    return weight.nnz if isinstance(weight, BSPCMatrix) else int(np.prod(weight.shape))


#: The panel-layout arrays the BSPC mat-mat kernel takes, in order (before ``bias``).
LINEAR_PANEL_ARRAYS = ("thread_ptr", "panel_ptr", "panel_rows", "cols", "vals")


def _panels(
    matrix: BSPCMatrix,
    knobs: RNNKnobs,
    parallel: bool,
    bias=None,
    matmat: bool = False,
    names: tuple[str, ...] = PANEL_ARRAYS,
):
    layout = pack_panels(
        matrix,
        panel_rows=knobs.lanes,
        k_split=knobs.k_split,
        threads=knobs.threads if parallel else 1,
        row_order=knobs.row_order(matmat),
        bias=bias,
    )
    return layout, [layout.arrays[n] for n in names]


def _tag(func: tvm.tirx.PrimFunc, kind: str, knobs: RNNKnobs, parallel: bool):
    return func.without_attr("global_symbol").with_attrs(
        {
            "op_pattern": 8,  # opaque: never fused
            "tirx.is_scheduled": True,
            "tvm_bsp.kernel": kind,
            "tvm_bsp.knobs": knobs.to_json(),
            "tvm_bsp.parallel": parallel,
        }
    )


def linear_kernel(
    weight: Weight, bias: np.ndarray | None, knobs: RNNKnobs, activation: str = "none"
) -> tuple[tvm.tirx.PrimFunc, list[np.ndarray], int]:
    """Kernel of ``y = act(x W^T + b)`` over a symbolic number of frames.

    Returns
    -------
    func : PrimFunc
        ``func(x, *consts, y)``.
    consts : list of numpy.ndarray
        The packed weight (and index arrays) and bias.
    rows : int
        Output features ``M``.
    """
    M, K = weight.shape
    parallel = knobs.parallel(macs(weight))
    if isinstance(weight, BSPCMatrix):
        layout, arrays = _panels(weight, knobs, parallel, bias, True, LINEAR_PANEL_ARRAYS)
        func = bspc_linear(PanelShape.of(layout), K, knobs.frames, parallel, activation, True)
        consts = [*arrays, layout.arrays["bias"]]
        return _tag(func, "bspc_linear", knobs, parallel), consts, M
    P = knobs.lanes
    func = dense_linear(M, K, P, knobs.frames, parallel, activation, knobs.k_split)
    consts = [pack_row_panels(weight, P), pad_rows(bias, M, P)]
    return _tag(func, "dense_linear", knobs, parallel), consts, M


@dataclass(frozen=True)
class SequenceKernel:
    """A sequence kernel and what feeds it.

    Attributes
    ----------
    func : PrimFunc
        ``func(xp, state, *consts, y, hT[, cT])``: ``state`` is the stacked state of all
        layers, the kernel starts from ``state[layer]``; ``y`` has ``outputs`` features.
    consts : list of numpy.ndarray
        Packed recurrent weight(s) and, for ``torch.nn.GRU``, ``b_hn``.
    input_bias : numpy.ndarray
        ``(G*H,)``: the biases to add in the input projection (recurrent biases of gates that
        do not see the reset gate folded in).
    hidden : int
    outputs : int
        Features of ``y`` (``hidden``, or the projection size of a projected LSTM).
    """

    func: tvm.tirx.PrimFunc
    consts: list[np.ndarray]
    input_bias: np.ndarray
    hidden: int
    outputs: int = 0

    def __post_init__(self) -> None:
        if not self.outputs:
            object.__setattr__(self, "outputs", self.hidden)


def sequence_kernel(weights: LayerWeights, knobs: RNNKnobs) -> SequenceKernel:
    """The time-loop kernel of one recurrent layer on the CPU (:mod:`.sequence`).

    A projected LSTM's ``W_hr`` is always packed dense (a BSPC ``W_hr`` is expanded: correct,
    but not faster).
    """
    if weights.proj is not None:
        return _proj_kernel(weights, knobs)
    cell, u, G, H = weights.cell, weights.u, weights.gates, weights.hidden
    P = knobs.lanes
    parallel = knobs.parallel(macs(u))
    input_bias, bhn = weights.biases()
    if isinstance(u, BSPCMatrix):
        if cell == "kaldi_gru":
            parts = [bspc_row_range(u, 0, 2 * H), bspc_row_range(u, 2 * H, 3 * H)]
        else:
            parts = [u]
        layouts = [_panels(part, knobs, parallel) for part in parts]
        panels = tuple(PanelShape.of(layout) for layout, _ in layouts)
        consts = [array for _, arrays in layouts for array in arrays]
    else:
        u = np.asarray(u, np.float32)
        panels = None
        if cell == "kaldi_gru":
            consts = [pack_gate_tiles(u[: 2 * H], 2, P), pack_gate_tiles(u[2 * H :], 1, P)]
        else:
            consts = [pack_gate_tiles(u, G, P)]
    func = cpu_sequence(cell, H, panels, P, parallel, knobs.exact, weights.layer, weights.scale)
    if cell == "gru":
        consts.append(bhn)
    kind = f"{'dense' if panels is None else 'bspc'}_{cell}_sequence"
    return SequenceKernel(_tag(func, kind, knobs, parallel), consts, input_bias, H)


def _proj_kernel(weights: LayerWeights, knobs: RNNKnobs) -> SequenceKernel:
    """:func:`sequence_kernel` of a projected LSTM layer."""
    u, proj = weights.u, weights.proj
    w_hr = proj.to_dense() if isinstance(proj, BSPCMatrix) else np.asarray(proj, np.float32)
    R, H = w_hr.shape
    P, exact, layer = knobs.lanes, knobs.exact, weights.layer
    parallel = knobs.parallel(macs(u) + R * H)
    input_bias, _ = weights.biases()
    w_packed = pack_gate_tiles(w_hr, 1, P)
    if isinstance(u, BSPCMatrix):
        layout, arrays = _panels(u, knobs, parallel)
        panels = (PanelShape.of(layout),)
        consts, kind = [*arrays, w_packed], "bspc_lstm_proj_sequence"
    else:
        panels = None
        u_packed = pack_gate_tiles(np.asarray(u, np.float32), 4, P)
        consts, kind = [u_packed, w_packed], "dense_lstm_proj_sequence"
    func = cpu_sequence("lstm", H, panels, P, parallel, exact, layer, 1.0, R)
    return SequenceKernel(_tag(func, kind, knobs, parallel), consts, input_bias, H, R)
