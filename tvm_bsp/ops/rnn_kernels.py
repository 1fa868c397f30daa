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
from tvm_bsp.ops.layout import pack_panels
from tvm_bsp.ops.rnn_knobs import CELL_GATES, RNNKnobs
from tvm_bsp.ops.rnn_linear import bspc_linear, dense_linear
from tvm_bsp.ops.rnn_pack import bspc_row_range, pack_gate_tiles, pack_row_panels, pad_rows
from tvm_bsp.ops.rnn_seq_bspc import (
    PANEL_ARRAYS,
    PanelShape,
    bspc_gru_sequence,
    bspc_kaldi_gru_sequence,
    bspc_lstm_sequence,
)
from tvm_bsp.ops.rnn_seq_dense import (
    dense_gru_sequence,
    dense_kaldi_gru_sequence,
    dense_lstm_sequence,
)
from tvm_bsp.ops.rnn_seq_proj import bspc_lstm_proj_sequence, dense_lstm_proj_sequence

Weight = np.ndarray | BSPCMatrix


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
    natural: bool = False,
    names: tuple[str, ...] = PANEL_ARRAYS,
):
    layout = pack_panels(
        matrix,
        panel_rows=knobs.lanes,
        k_split=knobs.k_split,
        threads=knobs.threads if parallel else 1,
        row_order="natural" if natural else "reorder",
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
        func = bspc_linear(PanelShape.of(layout), K, knobs.frames, parallel, activation)
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


def sequence_kernel(
    cell: str,
    u: Weight,
    bias_ih: np.ndarray,
    bias_hh: np.ndarray | None,
    scale: float,
    knobs: RNNKnobs,
    layer: int = 0,
    proj: Weight | None = None,
) -> SequenceKernel:
    """The time-loop kernel of one recurrent layer (equations in :mod:`tvm_bsp.frontend.model`).

    Parameters
    ----------
    cell : {"gru", "kaldi_gru", "lstm"}
    u : numpy.ndarray or BSPCMatrix
        ``(G*H, H)`` recurrent weight (``(4H, R)`` for a projected LSTM).
    bias_ih, bias_hh : numpy.ndarray
        ``(G*H,)`` biases (``bias_hh`` is ignored for ``kaldi_gru``).
    scale : float
        Candidate scale of ``kaldi_gru``.
    knobs : RNNKnobs
    layer : int
        Which layer of the stacked state the kernel starts from.
    proj : numpy.ndarray or BSPCMatrix, optional
        ``(R, H)`` projection ``W_hr`` of an LSTM (:mod:`tvm_bsp.ops.rnn_seq_proj`). It is
        always packed dense (a BSPC ``W_hr`` is expanded: correct, but not faster).
    """
    G = CELL_GATES[cell]
    if proj is not None:
        return _proj_kernel(cell, u, bias_ih, bias_hh, knobs, layer, proj)
    H = u.shape[1]
    if u.shape[0] != G * H:
        raise ValueError(f"a {cell} recurrent weight must be ({G * H}, {H}), got {u.shape}")
    P, exact = knobs.lanes, knobs.exact
    parallel = knobs.parallel(macs(u))
    zeros = np.zeros(G * H, np.float32)
    b_hh = zeros if bias_hh is None or cell == "kaldi_gru" else np.asarray(bias_hh, np.float32)
    input_bias = np.asarray(bias_ih, np.float32).copy()
    consts: list[np.ndarray] = []
    if cell == "gru":
        input_bias[: 2 * H] += b_hh[: 2 * H]
    elif cell == "lstm":
        input_bias += b_hh
    if isinstance(u, BSPCMatrix):
        if cell == "kaldi_gru":
            rz, rz_arrays = _panels(bspc_row_range(u, 0, 2 * H), knobs, parallel)
            n, n_arrays = _panels(bspc_row_range(u, 2 * H, 3 * H), knobs, parallel)
            func = bspc_kaldi_gru_sequence(
                H, PanelShape.of(rz), PanelShape.of(n), P, parallel, scale, exact, layer
            )
            consts = [*rz_arrays, *n_arrays]
        else:
            layout, arrays = _panels(u, knobs, parallel)
            maker = bspc_gru_sequence if cell == "gru" else bspc_lstm_sequence
            func = maker(H, PanelShape.of(layout), P, parallel, exact, layer)
            consts = list(arrays)
        kind = f"bspc_{cell}_sequence"
    else:
        u = np.asarray(u, np.float32)
        if cell == "gru":
            func = dense_gru_sequence(H, P, parallel, exact, layer)
            consts = [pack_gate_tiles(u, 3, P)]
        elif cell == "lstm":
            func = dense_lstm_sequence(H, P, parallel, exact, layer)
            consts = [pack_gate_tiles(u, 4, P)]
        else:
            func = dense_kaldi_gru_sequence(H, P, parallel, scale, exact, layer)
            consts = [pack_gate_tiles(u[: 2 * H], 2, P), pack_gate_tiles(u[2 * H :], 1, P)]
        kind = f"dense_{cell}_sequence"
    if cell == "gru":
        consts.append(np.ascontiguousarray(b_hh[2 * H :]))
    return SequenceKernel(_tag(func, kind, knobs, parallel), consts, input_bias, H)


def _proj_kernel(
    cell: str,
    u: Weight,
    bias_ih: np.ndarray,
    bias_hh: np.ndarray | None,
    knobs: RNNKnobs,
    layer: int,
    proj: Weight,
) -> SequenceKernel:
    """:func:`sequence_kernel` of a projected LSTM layer."""
    w_hr = proj.to_dense() if isinstance(proj, BSPCMatrix) else np.asarray(proj, np.float32)
    if cell != "lstm":
        raise ValueError(f"a projection (proj) applies to lstm layers, not {cell}")
    R, H = w_hr.shape
    if u.shape != (4 * H, R) or R >= H:
        raise ValueError(
            f"a projected lstm needs U (4H, R) and W_hr (R, H) with R < H; got U {u.shape}, "
            f"W_hr {w_hr.shape}"
        )
    P, exact = knobs.lanes, knobs.exact
    parallel = knobs.parallel(macs(u) + R * H)
    input_bias = np.asarray(bias_ih, np.float32).copy()
    if bias_hh is not None:
        input_bias += np.asarray(bias_hh, np.float32)
    w_packed = pack_gate_tiles(w_hr, 1, P)
    if isinstance(u, BSPCMatrix):
        layout, arrays = _panels(u, knobs, parallel)
        func = bspc_lstm_proj_sequence(H, R, PanelShape.of(layout), P, parallel, exact, layer)
        consts, kind = [*arrays, w_packed], "bspc_lstm_proj_sequence"
    else:
        func = dense_lstm_proj_sequence(H, R, P, parallel, exact, layer)
        u_packed = pack_gate_tiles(np.asarray(u, np.float32), 4, P)
        consts, kind = [u_packed, w_packed], "dense_lstm_proj_sequence"
    return SequenceKernel(_tag(func, kind, knobs, parallel), consts, input_bias, H, R)
