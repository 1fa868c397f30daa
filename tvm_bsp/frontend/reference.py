"""A numpy (float64) reference of an :class:`~tvm_bsp.frontend.model.RNNModel`.

It runs the equations of :mod:`tvm_bsp.frontend.model` frame by frame, without torch or TVM,
so compiled modules can be checked anywhere (e.g. inside an emulator that has numpy only).
"""

from __future__ import annotations

import numpy as np

from tvm_bsp.frontend.model import Activation, DenseLayer, RNNLayer, RNNModel


def _sigmoid(v: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-v))


def _cell_step(layer: RNNLayer, xp: np.ndarray, h: np.ndarray, c: np.ndarray | None):
    """One step given the input projection ``xp = W x + b_ih`` (``(B, G*H)``)."""
    H = layer.hidden_size
    U = layer.weight_hh.astype(np.float64)
    bhh = np.zeros(U.shape[0]) if layer.bias_hh is None else layer.bias_hh.astype(np.float64)
    if layer.cell == "lstm":
        a = xp + h @ U.T + bhh
        i, f, g, o = (a[:, k * H : (k + 1) * H] for k in range(4))
        c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        return _sigmoid(o) * np.tanh(c), c
    if layer.cell == "gru":
        a = h @ U.T + bhh
        r = _sigmoid(xp[:, :H] + a[:, :H])
        z = _sigmoid(xp[:, H : 2 * H] + a[:, H : 2 * H])
        n = np.tanh(xp[:, 2 * H :] + r * a[:, 2 * H :])
    else:  # kaldi_gru
        a = h @ U[: 2 * H].T
        r = _sigmoid(xp[:, :H] + a[:, :H])
        z = _sigmoid(xp[:, H : 2 * H] + a[:, H:])
        n = layer.candidate_scale * np.tanh(xp[:, 2 * H :] + (r * h) @ U[2 * H :].T)
    return (1.0 - z) * n + z * h, None


def _head(model: RNNModel, y: np.ndarray) -> np.ndarray:
    for item in model.head:
        if isinstance(item, DenseLayer):
            y = y @ item.weight.astype(np.float64).T
            if item.bias is not None:
                y = y + item.bias
        elif isinstance(item, Activation):
            y = {"relu": lambda v: np.maximum(v, 0), "tanh": np.tanh, "sigmoid": _sigmoid}[
                item.kind
            ](y)
    return y


def reference_forward(
    model: RNNModel, x: np.ndarray, state: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Run ``model`` on a sequence.

    Parameters
    ----------
    model : RNNModel
    x : numpy.ndarray
        ``(T, B, I)``, or ``(B, T, I)`` if ``model.batch_first``.
    state : numpy.ndarray, optional
        Initial state (:meth:`RNNModel.state_shape`); zeros if omitted.

    Returns
    -------
    y : numpy.ndarray
        ``(T, B, O)`` (or ``(B, T, O)``), float64.
    state : numpy.ndarray
        The final state, float64.
    """
    x = np.asarray(x, np.float64)
    if model.batch_first:
        x = x.transpose(1, 0, 2)
    T, B, _ = x.shape
    if state is None:
        state = np.zeros(model.state_shape(B))
    state = np.array(state, np.float64)
    seq = x
    for k, layer in enumerate(model.layers):
        h = state[k, 0] if layer.cell == "lstm" else state[k]
        c = state[k, 1] if layer.cell == "lstm" else None
        bih = 0.0 if layer.bias_ih is None else layer.bias_ih.astype(np.float64)
        xp = seq @ layer.weight_ih.astype(np.float64).T + bih
        out = np.empty((T, B, layer.hidden_size))
        for t in range(T):
            h, c = _cell_step(layer, xp[t], h, c)
            out[t] = h
        if layer.cell == "lstm":
            state[k, 0], state[k, 1] = h, c
        else:
            state[k] = h
        seq = out
    y = _head(model, seq)
    if model.batch_first:
        y = y.transpose(1, 0, 2)
    return y, state
