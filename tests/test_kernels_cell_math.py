"""The cell statements (tvm_bsp.kernels.cell_math), run on numpy arrays, against torch's cells.

The statements are plain arithmetic over a Lane; the CPU and OpenCL kernels emit them as TIR.
Running them on numpy (a Lane holding whole vectors of units) checks the gate math once,
independently of any kernel.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tvm_bsp.kernels.cell_math import CELL_PHASES


def _sig(x):
    return 1.0 / (1.0 + np.exp(-x))


class _NumpyLane:
    """All ``H`` units at once: ``x(g)``, ``a(g)`` are gate slices of length ``H``."""

    sig, tanh = staticmethod(_sig), staticmethod(np.tanh)

    def __init__(self, xp, pre, state, hidden, scale=1.0):
        self.xp, self.pre, self.state, self.H, self.scale = xp, pre, state, hidden, scale
        self.scratch: dict[int, np.ndarray] = {}

    def x(self, gate):
        return self.xp[gate * self.H : (gate + 1) * self.H]

    def a(self, gate):
        return self.pre[gate * self.H : (gate + 1) * self.H]

    def s(self, index):
        return self.scratch[index]

    def load(self, name):
        return self.state[name]

    def run(self, statements):
        for dst, value in statements:
            result = value(self)
            if dst[0] == "s":
                self.scratch[int(dst[1:])] = result
            else:
                self.state[dst] = result
                if dst == "h":
                    self.state["h_new"] = result


def _weights(rng, gates, H, D):
    return (
        rng.standard_normal((gates * H, D)).astype(np.float32) * 0.5,
        rng.standard_normal((gates * H, H)).astype(np.float32) * 0.5,
        rng.standard_normal(gates * H).astype(np.float32) * 0.1,
        rng.standard_normal(gates * H).astype(np.float32) * 0.1,
    )


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_torch_cells_one_step(cell):
    rng = np.random.default_rng(3)
    H, D = 6, 5
    G = 3 if cell == "gru" else 4
    w_ih, w_hh, b_ih, b_hh = _weights(rng, G, H, D)
    x, h, c = (rng.standard_normal(n).astype(np.float32) for n in (D, H, H))
    module = torch.nn.GRUCell(D, H) if cell == "gru" else torch.nn.LSTMCell(D, H)
    with torch.no_grad():
        names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        for name, value in zip(names, (w_ih, w_hh, b_ih, b_hh), strict=True):
            getattr(module, name).copy_(torch.from_numpy(value))
        h0, c0 = torch.from_numpy(h)[None], torch.from_numpy(c)[None]
        expected = module(torch.from_numpy(x)[None], h0 if cell == "gru" else (h0, c0))
    # The kernels' split of the biases: b_hn stays with the recurrent product, the rest is
    # folded into the input projection.
    xp = w_ih @ x + b_ih
    if cell == "gru":
        xp[: 2 * H] += b_hh[: 2 * H]
        state = {"h": h, "bhn": b_hh[2 * H :]}
    else:
        xp += b_hh
        state = {"h": h, "c": c.copy()}
    ((statements, gates),) = CELL_PHASES[cell]
    assert gates == G
    lane = _NumpyLane(xp, w_hh @ h, state, H)
    lane.run(statements)
    if cell == "gru":
        np.testing.assert_allclose(lane.state["h"], expected[0].numpy(), atol=1e-5)
        np.testing.assert_allclose(lane.state["y"], expected[0].numpy(), atol=1e-5)
    else:
        np.testing.assert_allclose(lane.state["h"], expected[0][0].numpy(), atol=1e-5)
        np.testing.assert_allclose(lane.state["c"], expected[1][0].numpy(), atol=1e-5)


def test_kaldi_gru_two_phases():
    rng = np.random.default_rng(4)
    H, D, scale = 5, 4, 0.8
    w_ih, w_hh, b_ih, _ = _weights(rng, 3, H, D)
    x, h = rng.standard_normal(D).astype(np.float32), rng.standard_normal(H).astype(np.float32)
    xp = w_ih @ x + b_ih
    r = _sig(xp[:H] + w_hh[:H] @ h)
    z = _sig(xp[H : 2 * H] + w_hh[H : 2 * H] @ h)
    n = scale * np.tanh(xp[2 * H :] + w_hh[2 * H :] @ (r * h))
    expected = (1 - z) * n + z * h
    (reset, g0), (update, g1) = CELL_PHASES["kaldi_gru"]
    assert (g0, g1) == (2, 1)
    state = {"h": h}
    _NumpyLane(xp, w_hh[: 2 * H] @ h, state, H, scale).run(reset)
    # the second product reads r * h (the reset phase's output)
    _NumpyLane(xp, w_hh[2 * H :] @ state["rh"], state, H, scale).run(update)
    np.testing.assert_allclose(state["h"], expected, atol=1e-5)


def test_projected_lstm_writes_m_not_the_state():
    rng = np.random.default_rng(5)
    H = 4
    xp, pre = rng.standard_normal(4 * H), rng.standard_normal(4 * H)
    c = rng.standard_normal(H)
    ((statements, _),) = CELL_PHASES["lstm_proj"]
    state = {"h": np.zeros(H), "c": c.copy()}
    _NumpyLane(xp, pre, state, H).run(statements)
    gate = [xp[k * H : (k + 1) * H] + pre[k * H : (k + 1) * H] for k in range(4)]
    c_new = _sig(gate[1]) * c + _sig(gate[0]) * np.tanh(gate[2])
    np.testing.assert_allclose(state["c"], c_new, atol=1e-12)
    np.testing.assert_allclose(state["m"], _sig(gate[3]) * np.tanh(c_new), atol=1e-12)
    assert "h_new" not in state and "y" not in state
