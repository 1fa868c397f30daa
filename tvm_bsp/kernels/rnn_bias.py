"""Where each cell's biases go in the kernels: folded into the input projection, or ``b_hn``.

``torch.nn.GRU`` adds ``b_hr``, ``b_hz`` outside the reset gate, so they fold into the input
projection's bias; ``b_hn`` is multiplied by ``r`` and stays a kernel input. The LSTM's
``b_hh`` folds entirely. The pytorch-kaldi GRU has no recurrent bias (``bias_hh`` is ignored).
Equations in :mod:`tvm_bsp.frontend.model`.
"""

from __future__ import annotations

import numpy as np


def split_biases(
    cell: str, hidden: int, bias_ih: np.ndarray, bias_hh: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """The bias of the input projection and ``b_hn`` of one layer.

    Parameters
    ----------
    cell : {"gru", "kaldi_gru", "lstm"}
    hidden : int
        Units ``H``.
    bias_ih : numpy.ndarray
        ``(G*H,)``.
    bias_hh : numpy.ndarray, optional
        ``(G*H,)``; ``None`` for none.

    Returns
    -------
    input_bias : numpy.ndarray
        ``(G*H,)`` float32: ``bias_ih`` plus the recurrent biases that fold.
    bhn : numpy.ndarray
        ``(H,)`` float32: ``b_hn`` of a ``torch.nn.GRU``, zeros for the other cells.
    """
    H = hidden
    input_bias = np.asarray(bias_ih, np.float32).copy()
    if bias_hh is None or cell == "kaldi_gru":
        return input_bias, np.zeros(H, np.float32)
    b_hh = np.asarray(bias_hh, np.float32)
    if cell == "gru":
        input_bias[: 2 * H] += b_hh[: 2 * H]
        return input_bias, np.ascontiguousarray(b_hh[2 * H : 3 * H])
    input_bias += b_hh
    return input_bias, np.zeros(H, np.float32)
