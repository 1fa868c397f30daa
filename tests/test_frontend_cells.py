"""nn.GRUCell / nn.LSTMCell given directly: step is the cell, forward applies it T times."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from rnn_torch_cases import ATOL, kernel_kinds, prune, run_arm64
from torch import nn

import tvm_bsp
from tvm_bsp.frontend import from_torch

I, H = 11, 20


def _cell(kind: str, bias: bool = True) -> nn.Module:
    return (nn.GRUCell if kind == "gru" else nn.LSTMCell)(I, H, bias=bias)


def _torch_steps(cell: nn.Module, kind: str, x: np.ndarray, state: np.ndarray):
    """Apply the cell frame by frame from our state layout; outputs and final state."""
    with torch.no_grad():
        if kind == "gru":
            h, ys = torch.from_numpy(state[0]), []
            for frame in x:
                h = cell(torch.from_numpy(frame), h)
                ys.append(h.numpy())
            return np.stack(ys), h.numpy()[None]
        h, c = torch.from_numpy(state[0, 0]), torch.from_numpy(state[0, 1])
        ys = []
        for frame in x:
            h, c = cell(torch.from_numpy(frame), (h, c))
            ys.append(h.numpy())
        return np.stack(ys), np.stack([h.numpy(), c.numpy()])[None]


def test_import_names_and_state():
    desc = from_torch(nn.LSTMCell(I, H))
    assert desc.num_layers == 1 and desc.cell == "lstm" and desc.streamable
    assert desc.layers[0].names["weight_hh"] == "weight_hh"
    assert desc.state_shape(3) == (1, 2, 3, H)
    assert from_torch(nn.GRUCell(I, H, bias=False)).layers[0].bias_ih is None


CASES = {
    # name: (kind, bias, pruned, knobs)
    "gru": ("gru", True, False, None),
    "gru_bsp": ("gru", True, True, {"min_parallel_macs": 0}),
    "lstm_nobias": ("lstm", False, False, None),
    "lstm_bsp": ("lstm", True, True, None),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def compiled(request):
    kind, bias, pruned, knobs = CASES[request.param]
    torch.manual_seed(len(request.param))
    cell = _cell(kind, bias)
    if pruned:
        prune(cell)
    return request.param, kind, pruned, cell, tvm_bsp.compile_model(cell, knobs=knobs)


def test_step_is_the_cell(compiled):
    name, kind, pruned, cell, cm = compiled
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 4, I)).astype(np.float32)
    state = (0.5 * rng.standard_normal(cm.model.state_shape(4))).astype(np.float32)
    y_ref, s_ref = _torch_steps(cell, kind, x, state)
    y, s = cm.step(x[0], state)
    np.testing.assert_allclose(y, y_ref[0], atol=ATOL, err_msg=name)
    np.testing.assert_allclose(s, s_ref, atol=ATOL, err_msg=name)
    kinds = kernel_kinds(cm)
    assert kinds and all(k.startswith("bspc_" if pruned else "dense_") for k in kinds)


def test_forward_applies_the_cell_t_times(compiled):
    name, kind, _, cell, cm = compiled
    rng = np.random.default_rng(2)
    x = rng.standard_normal((8, 3, I)).astype(np.float32)
    state = (0.5 * rng.standard_normal(cm.model.state_shape(3))).astype(np.float32)
    y_ref, s_ref = _torch_steps(cell, kind, x, state)
    y, s = cm.forward(x, state)
    np.testing.assert_allclose(y, y_ref, atol=ATOL, err_msg=name)
    np.testing.assert_allclose(s, s_ref, atol=ATOL, err_msg=name)
    cm.reset()
    zero = np.zeros_like(state)
    pushed = np.stack([cm.push(frame) for frame in x])
    np.testing.assert_allclose(pushed, _torch_steps(cell, kind, x, zero)[0], atol=ATOL)


def test_cell_inside_a_container_is_refused_by_name():
    class Looped(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.cell = nn.GRUCell(I, H)

        def forward(self, x):
            return self.cell(x)

    with pytest.raises(tvm_bsp.frontend.UnsupportedModuleError, match="'cell' is GRUCell"):
        from_torch(Looped())


@pytest.mark.slow
@pytest.mark.aarch64
def test_pruned_lstm_cell_under_qemu(tmp_path):
    from tvm_bsp.devices.aarch64 import require_arm64

    require_arm64()
    torch.manual_seed(14)
    cell = _cell("lstm")
    prune(cell)
    cm = tvm_bsp.compile_model(cell, target="arm64", knobs={"min_parallel_macs": 0})
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 2, I)).astype(np.float32)
    state = (0.5 * rng.standard_normal(cm.model.state_shape(2))).astype(np.float32)
    outs = run_arm64(cm, x, state, tmp_path)
    y_ref, s_ref = _torch_steps(cell, "lstm", x, state)
    np.testing.assert_allclose(outs["y"], y_ref, atol=ATOL)
    np.testing.assert_allclose(outs["h"], s_ref, atol=ATOL)
    np.testing.assert_allclose(outs["stream"], y_ref, atol=ATOL)
