"""One recurrent layer as the kernel builders of every target take it, checked once.

:func:`tvm_bsp.kernels.cpu.rnn.sequence_kernel` (CPU) and
:func:`tvm_bsp.kernels.opencl.rnn.gpu_sequence_kernel` (OpenCL) both take a
:class:`LayerWeights` and the target's knobs; the Relax lowering builds it once per layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tvm_bsp.bspc.matrix import BSPCMatrix
from tvm_bsp.kernels.rnn_bias import split_biases
from tvm_bsp.kernels.rnn_knobs import CELL_GATES

Weight = np.ndarray | BSPCMatrix


@dataclass(frozen=True, eq=False)
class LayerWeights:
    """The weights of one recurrent layer (equations in :mod:`tvm_bsp.frontend.model`).

    Attributes
    ----------
    cell : {"gru", "kaldi_gru", "lstm"}
    u : numpy.ndarray or BSPCMatrix
        ``(G*H, H)`` recurrent weight (``(4H, R)`` for a projected LSTM).
    bias_ih : numpy.ndarray
        ``(G*H,)``.
    bias_hh : numpy.ndarray, optional
        ``(G*H,)`` (ignored for ``kaldi_gru``).
    scale : float
        Candidate scale of ``kaldi_gru``.
    layer : int
        Which layer of the stacked state the kernel starts from.
    proj : numpy.ndarray or BSPCMatrix, optional
        ``(R, H)`` projection ``W_hr`` of an LSTM (``R < H``).

    Raises
    ------
    ValueError
        On an unknown cell or shapes that do not fit together.
    """

    cell: str
    u: Weight
    bias_ih: np.ndarray
    bias_hh: np.ndarray | None = None
    scale: float = 1.0
    layer: int = 0
    proj: Weight | None = None

    def __post_init__(self) -> None:
        if self.cell not in CELL_GATES:
            raise ValueError(f"cell must be one of {sorted(CELL_GATES)}, got {self.cell!r}")
        if self.proj is not None:
            if self.cell != "lstm":
                raise ValueError(f"a projection (proj) applies to lstm layers, not {self.cell}")
            R, H = self.proj.shape
            if self.u.shape != (4 * H, R) or R >= H:
                raise ValueError(
                    "a projected lstm needs U (4H, R) and W_hr (R, H) with R < H; got U "
                    f"{self.u.shape}, W_hr {self.proj.shape}"
                )
            return
        G, H = self.gates, self.u.shape[1]
        if self.u.shape[0] != G * H:
            raise ValueError(
                f"a {self.cell} recurrent weight must be ({G * H}, {H}), got {self.u.shape}"
            )

    @property
    def gates(self) -> int:
        """Gates ``G`` of the cell."""
        return CELL_GATES[self.cell]

    @property
    def hidden(self) -> int:
        """Units ``H``."""
        return self.u.shape[0] // self.gates

    def biases(self) -> tuple[np.ndarray, np.ndarray]:
        """``(input_bias, b_hn)`` (:func:`tvm_bsp.kernels.rnn_bias.split_biases`)."""
        return split_biases(self.cell, self.hidden, self.bias_ih, self.bias_hh)
