"""LSTMs with a projection (``proj_size > 0``): reference, dense and BSPC kernels vs torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from rnn_torch_cases import (
    ATOL,
    from_torch_state,
    kernel_kinds,
    prune,
    random_state,
    run_arm64,
    to_torch_state,
)
from torch import nn

import tvm_bsp
from tvm_bsp.frontend import RNNLayer, from_torch, reference_forward

I, H, R, O = 13, 37, 11, 4


class Stack(nn.Module):
    def __init__(self, rnn: nn.Module) -> None:
        super().__init__()
        self.rnn = rnn
        self.head = nn.Linear(R * (2 if rnn.bidirectional else 1), O)

    def forward(self, x, h=None):
        y, h = self.rnn(x, h)
        return self.head(y), h


def _torch(module, x, state):
    with torch.no_grad():
        y, h = module(torch.from_numpy(x), to_torch_state(state, "lstm", R))
    return y.numpy(), from_torch_state(h, H)


def test_import_and_reference():
    torch.manual_seed(0)
    lstm = nn.LSTM(I, H, 2, proj_size=R)
    desc = from_torch(lstm)
    assert (desc.proj_size, desc.hidden_size, desc.output_size) == (R, H, R)
    assert desc.layers[1].input_size == R
    assert desc.layers[0].names["weight_hr"] == "weight_hr_l0"
    assert "weight_hr_l1" in desc.weights()
    x = np.random.default_rng(0).standard_normal((5, 2, I)).astype(np.float32)
    state = random_state(desc, 2, 1)
    y, h = reference_forward(desc, x, state)
    y_ref, h_ref = _torch(lstm, x, state)
    np.testing.assert_allclose(y, y_ref, atol=1e-5)
    np.testing.assert_allclose(h, h_ref, atol=1e-5)


def test_projection_shapes_are_checked():
    rng = np.random.default_rng(0)
    w_ih, w_hh = rng.standard_normal((4 * H, I)), rng.standard_normal((4 * H, R))
    with pytest.raises(ValueError, match=rf"\(P, H\) = \({R}, {H}\), got \(3, {H}\)"):
        RNNLayer("lstm", w_ih, w_hh, weight_hr=rng.standard_normal((3, H)))
    with pytest.raises(ValueError, match="lstm layers, not gru"):
        RNNLayer("gru", w_ih[: 3 * H], w_hh[: 3 * H], weight_hr=rng.standard_normal((R, H)))
    with pytest.raises(ValueError, match="must be \\(4 \\* H, H\\)"):  # a projection is missing
        RNNLayer("lstm", w_ih, w_hh)


CASES = {
    # name: (layers, bidirectional, pruned, knobs)
    "proj2": (2, False, False, None),
    "proj2_par": (2, False, False, {"min_parallel_macs": 0, "lanes": 8}),
    "proj2_bsp_par": (2, False, True, {"min_parallel_macs": 0}),
    "proj1_bsp": (1, False, True, None),
    "proj1_bi": (1, True, False, None),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def compiled(request):
    layers, bidirectional, pruned, knobs = CASES[request.param]
    torch.manual_seed(len(request.param) + 3)
    module = Stack(nn.LSTM(I, H, layers, proj_size=R, bidirectional=bidirectional)).eval()
    if pruned:
        prune(module.rnn)
    cm = tvm_bsp.compile_model(module, knobs=knobs)
    return request.param, pruned, module, cm


@pytest.mark.parametrize(("T", "B"), [(1, 1), (7, 3)])
def test_forward_matches_torch(compiled, T, B):
    name, pruned, module, cm = compiled
    x = np.random.default_rng(T * B).standard_normal((T, B, I)).astype(np.float32)
    state = random_state(cm.model, B, T)
    y, h = cm.forward(x, state)
    y_ref, h_ref = _torch(module, x, state)
    np.testing.assert_allclose(y, y_ref, atol=ATOL, err_msg=name)
    np.testing.assert_allclose(h, h_ref, atol=ATOL, err_msg=name)
    assert not h[:, 0, :, R:].any(), "h is zero past the projection"
    kinds = kernel_kinds(cm)
    prefix = "bspc_lstm_proj" if pruned else "dense_lstm_proj"
    assert kinds and all(k.startswith(prefix) for k in kinds), kinds
    if pruned:  # U and W_hr pruned; W_hr runs densified inside the kernel
        assert {"rnn.weight_hh_l0", "rnn.weight_hr_l0"} <= set(cm.sparse)


def test_streaming_matches_torch(compiled):
    name, _, module, cm = compiled
    if not cm.model.streamable:  # bidirectional: no step
        assert cm.meta["streamable"] is False
        return
    x = np.random.default_rng(9).standard_normal((6, 2, I)).astype(np.float32)
    state = random_state(cm.model, 2, 9)
    y_ref, h_ref = _torch(module, x, state)
    outs, s = [], state
    for frame in x:
        y_t, s = cm.step(frame, s)
        outs.append(y_t)
    np.testing.assert_allclose(np.stack(outs), y_ref, atol=ATOL, err_msg=name)
    np.testing.assert_allclose(s, h_ref, atol=ATOL, err_msg=name)
    cm.reset()
    zero_ref, _ = _torch(module, x, np.zeros_like(state))
    pushed = np.stack([cm.push(frame) for frame in x])
    np.testing.assert_allclose(pushed, zero_ref, atol=ATOL, err_msg=name)


def test_opencl_refuses_projection_by_name():
    module = Stack(nn.LSTM(I, H, 1, proj_size=R)).eval()
    with pytest.raises(
        NotImplementedError, match=r"LSTM projection \(rnn\.weight_hr_l0: proj_size=11\)"
    ):
        tvm_bsp.compile_model(module, target="opencl-mali")


@pytest.mark.slow
@pytest.mark.aarch64
def test_projected_bspc_under_qemu(tmp_path):
    from tvm_bsp.devices.aarch64 import require_arm64

    require_arm64()
    torch.manual_seed(12)
    module = Stack(nn.LSTM(I, H, 2, proj_size=R)).eval()
    prune(module.rnn)
    cm = tvm_bsp.compile_model(module, target="arm64", knobs={"min_parallel_macs": 0})
    x = np.random.default_rng(2).standard_normal((6, 2, I)).astype(np.float32)
    state = random_state(cm.model, 2, 3)
    outs = run_arm64(cm, x, state, tmp_path)
    y_ref, h_ref = _torch(module, x, state)
    np.testing.assert_allclose(outs["y"], y_ref, atol=ATOL)
    np.testing.assert_allclose(outs["h"], h_ref, atol=ATOL)
    np.testing.assert_allclose(outs["stream"], y_ref, atol=ATOL)
