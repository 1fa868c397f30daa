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
        m = _sigmoid(o) * np.tanh(c)
        if layer.weight_hr is not None:
            m = m @ layer.weight_hr.astype(np.float64).T
        return m, c
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


def _log_softmax(v: np.ndarray) -> np.ndarray:
    shifted = v - v.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


_ACTIVATIONS = {
    "relu": lambda v: np.maximum(v, 0),
    "tanh": np.tanh,
    "sigmoid": _sigmoid,
    "softmax": lambda v: np.exp(_log_softmax(v)),
    "log_softmax": _log_softmax,
}


def _head(model: RNNModel, y: np.ndarray) -> np.ndarray:
    for item in model.head:
        if isinstance(item, DenseLayer):
            y = y @ item.weight.astype(np.float64).T
            if item.bias is not None:
                y = y + item.bias
        elif isinstance(item, Activation):
            y = _ACTIVATIONS[item.kind](y)
    return y


def _direction(layer: RNNLayer, seq: np.ndarray, state: np.ndarray, index: int) -> np.ndarray:
    """Run one direction over ``seq`` (``(T, B, I)``) from ``state[index]``, updating it."""
    T, B, _ = seq.shape
    S = layer.state_size
    lstm = layer.cell == "lstm"
    h = state[index, 0, :, :S] if lstm else state[index]
    c = state[index, 1] if lstm else None
    bih = 0.0 if layer.bias_ih is None else layer.bias_ih.astype(np.float64)
    xp = seq @ layer.weight_ih.astype(np.float64).T + bih
    out = np.empty((T, B, S))
    for t in reversed(range(T)) if layer.reverse else range(T):
        h, c = _cell_step(layer, xp[t], h, c)
        out[t] = h
    if lstm:
        state[index, 0] = 0.0
        state[index, 0, :, :S], state[index, 1] = h, c
    else:
        state[index] = h
    return out


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
    B = x.shape[1]
    if state is None:
        state = np.zeros(model.state_shape(B))
    state = np.array(state, np.float64)
    if state.shape != model.state_shape(B):
        raise ValueError(f"state must have shape {model.state_shape(B)}, got {state.shape}")
    seq = x
    D = model.num_directions
    for k, layer in enumerate(model.layers):
        outs = [
            _direction(half, seq, state, k * D + d) for d, half in enumerate(layer.directions())
        ]
        seq = np.concatenate(outs, axis=-1)
    y = _head(model, seq)
    if model.batch_first:
        y = y.transpose(1, 0, 2)
    return y, state
