"""Bidirectional and reverse-direction RNNs: import, numpy reference and compiled, vs torch."""

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
from tvm_bsp.frontend import RNNLayer, RNNModel, from_torch, reference_forward

I, H, O = 13, 24, 5


class Stack(nn.Module):
    def __init__(self, rnn: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.rnn = rnn
        self.head = head

    def forward(self, x, h=None):
        y, h = self.rnn(x, h)
        return self.head(y), h


def _module(cell: str, layers: int, batch_first: bool, head: bool) -> nn.Module:
    kind = nn.GRU if cell == "gru" else nn.LSTM
    rnn = kind(I, H, layers, bidirectional=True, batch_first=batch_first)
    return Stack(rnn, nn.Sequential(nn.Linear(2 * H, O), nn.Tanh())).eval() if head else rnn


def _torch(module, cell, x, state):
    with torch.no_grad():
        y, h = module(torch.from_numpy(x), to_torch_state(state, cell))
    return y.numpy(), from_torch_state(h, H)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_import_layout_and_reference(cell):
    torch.manual_seed(0)
    module = _module(cell, 2, False, False)
    desc = from_torch(module)
    assert desc.num_directions == 2 and desc.rnn_output_size == 2 * H
    assert desc.layers[1].input_size == 2 * H
    assert desc.layers[0].backward.names["weight_hh"] == "weight_hh_l0_reverse"
    assert desc.state_shape(3) == ((4, 3, H) if cell == "gru" else (4, 2, 3, H))
    assert not desc.streamable
    x = np.random.default_rng(0).standard_normal((6, 3, I)).astype(np.float32)
    state = random_state(desc, 3, 1)
    y, h = reference_forward(desc, x, state)
    y_ref, h_ref = _torch(module, cell, x, state)
    np.testing.assert_allclose(y, y_ref, atol=1e-5)
    np.testing.assert_allclose(h, h_ref, atol=1e-5)


CASES = {
    # name: (cell, layers, batch_first, head, pruned, knobs)
    "gru2": ("gru", 2, False, False, False, None),
    "gru2_bsp_head_par": ("gru", 2, False, True, True, {"min_parallel_macs": 0}),
    "lstm1_bf_head": ("lstm", 1, True, True, False, None),
    "lstm2_bsp": ("lstm", 2, False, False, True, None),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def compiled(request):
    cell, layers, batch_first, head, pruned, knobs = CASES[request.param]
    torch.manual_seed(len(request.param))
    module = _module(cell, layers, batch_first, head)
    if pruned:
        prune(module)
    cm = tvm_bsp.compile_model(module, knobs=knobs)
    return request.param, cell, batch_first, pruned, module, cm


@pytest.mark.parametrize(("T", "B"), [(1, 1), (7, 3)])
def test_compiled_matches_torch(compiled, T, B):
    name, cell, batch_first, pruned, module, cm = compiled
    rng = np.random.default_rng(T + B)
    x = rng.standard_normal((B, T, I) if batch_first else (T, B, I)).astype(np.float32)
    state = random_state(cm.model, B, T)
    y, h = cm.forward(x, state)
    y_ref, h_ref = _torch(module, cell, x, state)
    np.testing.assert_allclose(y, y_ref, atol=ATOL, err_msg=name)
    np.testing.assert_allclose(h, h_ref, atol=ATOL, err_msg=name)
    kinds = kernel_kinds(cm)
    assert len(kinds) == 2 * cm.model.num_layers
    assert all(k.startswith("bspc_" if pruned else "dense_") for k in kinds), kinds
    if pruned:  # both directions' weights are BSPC
        assert any(n.endswith("_reverse") for n in cm.sparse)


def test_no_step_for_a_backward_direction(compiled):
    _, _, _, _, _, cm = compiled
    assert cm.meta["streamable"] is False and cm.meta["directions"] == 2
    assert "step" not in [gv.name_hint for gv in cm.ir.get_global_vars()]
    frame = np.zeros((1, cm.model.input_size), np.float32)
    for call in (cm.step, cm.push):  # the session's check (tvm_bsp.runtime.session)
        with pytest.raises(ValueError, match=r"cannot stream.*layer 0 is bidirectional"):
            call(frame)


def test_single_reverse_layer_by_hand():
    """A reverse-only layer (ONNX direction="reverse"), built without torch."""
    rng = np.random.default_rng(3)
    layer = RNNLayer(
        "gru",
        rng.standard_normal((3 * H, I)) * 0.3,
        rng.standard_normal((3 * H, H)) * 0.3,
        rng.standard_normal(3 * H) * 0.1,
        rng.standard_normal(3 * H) * 0.1,
        reverse=True,
    )
    model = RNNModel([layer])
    assert not model.streamable and model.num_directions == 1
    cm = tvm_bsp.compile_model(model)
    x = rng.standard_normal((8, 2, I)).astype(np.float32)
    state = random_state(model, 2, 4)
    y, h = cm.forward(x, state)
    # torch reference: a reverse GRU is the forward GRU on the time-flipped input
    gru = nn.GRU(I, H)
    with torch.no_grad():
        for role in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(gru, f"{role}_l0").copy_(torch.from_numpy(getattr(layer, role)))
        y_ref, h_ref = gru(torch.from_numpy(x[::-1].copy()), torch.from_numpy(state))
    np.testing.assert_allclose(y, y_ref.numpy()[::-1], atol=ATOL)
    np.testing.assert_allclose(h, h_ref.numpy(), atol=ATOL)


def test_description_checks_the_backward_half():
    rng = np.random.default_rng(0)
    fwd = RNNLayer("gru", rng.standard_normal((12, 3)), rng.standard_normal((12, 4)))
    with pytest.raises(ValueError, match="reverse=True"):
        RNNLayer("gru", fwd.weight_ih, fwd.weight_hh, backward=fwd)
    other = RNNLayer(
        "gru", rng.standard_normal((15, 3)), rng.standard_normal((15, 5)), reverse=True
    )
    with pytest.raises(ValueError, match=r"expected \('gru', 3, 4, 0\), got \('gru', 3, 5, 0\)"):
        RNNLayer("gru", fwd.weight_ih, fwd.weight_hh, backward=other)
    bi = RNNLayer("gru", fwd.weight_ih, fwd.weight_hh, backward=RNNLayer(
        "gru", fwd.weight_ih, fwd.weight_hh, reverse=True))  # fmt: skip
    with pytest.raises(ValueError, match="directions"):
        RNNModel([bi, RNNLayer("gru", rng.standard_normal((12, 8)), fwd.weight_hh)])


@pytest.mark.slow
@pytest.mark.aarch64
def test_bidirectional_bspc_under_qemu(tmp_path):
    from tvm_bsp.devices.aarch64 import require_arm64

    require_arm64()
    torch.manual_seed(11)
    module = _module("lstm", 2, False, True)
    prune(module)
    cm = tvm_bsp.compile_model(module, target="arm64", knobs={"min_parallel_macs": 0})
    assert cm.sparse and not cm.runnable
    rng = np.random.default_rng(5)
    x = rng.standard_normal((6, 2, I)).astype(np.float32)
    state = random_state(cm.model, 2, 6)
    outs = run_arm64(cm, x, state, tmp_path)
    y_ref, h_ref = _torch(module, "lstm", x, state)
    np.testing.assert_allclose(outs["y"], y_ref, atol=ATOL)
    np.testing.assert_allclose(outs["h"], h_ref, atol=ATOL)
    assert "stream" not in outs


@pytest.mark.slow
@pytest.mark.opencl
def test_bidirectional_bspc_on_pocl():
    """OpenCL reuses its forward kernels for both directions (flip and concat are Relax ops)."""
    from tvm_bsp.kernels.targets import resolve_target
    from tvm_bsp.testing.opencl import opencl_available, run_relax_function

    if not opencl_available():
        pytest.skip("no OpenCL device (POCL)")
    torch.manual_seed(13)
    module = _module("gru", 2, False, False)  # (the POCL runner has no tanh for the head)
    prune(module)
    cm = tvm_bsp.compile_model(module, target="opencl-mali")
    assert cm.sparse
    rng = np.random.default_rng(6)
    x = rng.standard_normal((5, 2, I)).astype(np.float32)
    state = random_state(cm.model, 2, 7)
    target = resolve_target("opencl-mali", host="host")
    y, h = run_relax_function(cm.ir, "forward", [x, state], target)
    y_ref, h_ref = _torch(module, "gru", x, state)
    np.testing.assert_allclose(y, y_ref, atol=ATOL, rtol=0)
    np.testing.assert_allclose(h, h_ref, atol=ATOL, rtol=0)
