"""The importer: torch modules -> RNNModel (checked with the numpy reference) -> Relax."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import tvm
from torch import nn
from tvm import relax

from tvm_bsp.frontend import (
    LINEAR_OP,
    RNN_OPS,
    Activation,
    DenseLayer,
    KaldiGRU,
    RNNLayer,
    RNNModel,
    UnsupportedModuleError,
    from_torch,
    reference_forward,
    to_relax,
)
from tvm_bsp.passes.ir_utils import extern_name
from tvm_bsp.prune import bsp_mask
from tvm_bsp.prune.masked import add_mask


class Stack(nn.Module):
    """One RNN then a head, as the importer expects."""

    def __init__(self, rnn: nn.Module, head: nn.Module | None = None) -> None:
        super().__init__()
        self.rnn = rnn
        if head is not None:
            self.head = head

    def forward(self, x, h=None):
        y, h = self.rnn(x, h)
        return (self.head(y) if hasattr(self, "head") else y), h


def _randomize_bn(model: KaldiGRU) -> None:
    with torch.no_grad():
        for bn in model.bn:
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)


def _torch_state(h) -> np.ndarray:
    return (torch.stack(h, 1) if isinstance(h, tuple) else h).detach().numpy()


def _make(cell: str, layers: int, batch_first: bool, bias: bool) -> nn.Module:
    if cell == "gru":
        return nn.GRU(13, 37, layers, bias=bias, batch_first=batch_first)
    if cell == "lstm":
        return nn.LSTM(13, 37, layers, bias=bias, batch_first=batch_first)
    model = KaldiGRU(13, 37, layers, bias=bias, batch_first=batch_first)
    _randomize_bn(model)
    return model


@pytest.mark.parametrize("cell", ["gru", "lstm", "kaldi_gru"])
@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_reference_of_import_equals_torch(cell, layers, batch_first, bias):
    torch.manual_seed(layers)
    head = nn.Sequential(nn.Linear(37, 11), nn.Tanh(), nn.Dropout(0.3), nn.Linear(11, 5))
    model = Stack(_make(cell, layers, batch_first, bias), head).eval()
    desc = from_torch(model)
    assert (desc.cell, desc.num_layers, desc.batch_first) == (cell, layers, batch_first)
    assert desc.output_size == 5
    x = torch.randn(3, 7, 13) if batch_first else torch.randn(7, 3, 13)
    state = torch.randn(*desc.state_shape(3))
    h0 = (state[:, 0].contiguous(), state[:, 1].contiguous()) if cell == "lstm" else state
    with torch.no_grad():
        y, h = model(x, h0)
    y_ref, h_ref = reference_forward(desc, x.numpy(), state.numpy())
    np.testing.assert_allclose(y_ref, y.numpy(), atol=1e-5)
    np.testing.assert_allclose(h_ref, _torch_state(h), atol=1e-5)


def test_top_level_rnn_and_names():
    desc = from_torch(nn.LSTM(4, 6, 2))
    assert desc.head == []
    assert list(desc.weights()) == ["weight_ih_l0", "weight_hh_l0", "weight_ih_l1", "weight_hh_l1"]
    desc = from_torch(Stack(nn.GRU(4, 6), nn.Linear(6, 2)))
    assert "rnn.weight_hh_l0" in desc.weights() and "head.weight" in desc.weights()


def test_masks_from_parametrizations():
    torch.manual_seed(0)
    gru = nn.GRU(8, 12, 2)
    mask = bsp_mask(gru.weight_hh_l1.detach(), 6, 2, 2.0, 1.0)
    add_mask(gru, "weight_hh_l1", mask)
    desc = from_torch(Stack(gru, nn.Linear(12, 3)))
    assert list(desc.masks()) == ["rnn.weight_hh_l1"]
    np.testing.assert_array_equal(desc.masks()["rnn.weight_hh_l1"], mask.numpy())
    assert (desc.layers[1].weight_hh[~mask.numpy()] == 0).all()


def test_kaldi_gru_dropout_semantics():
    torch.manual_seed(1)
    model = KaldiGRU(5, 8, 1, dropout=0.2, batchnorm=False, bias=True)
    desc = from_torch(model)
    assert desc.layers[0].candidate_scale == pytest.approx(0.8)
    assert desc.layers[0].bias_hh is None
    model.train()
    x = torch.randn(4, 2, 5)
    y1, _ = model(x)
    y2, _ = model(x)
    assert not torch.allclose(y1, y2)  # a fresh Bernoulli mask per call in training
    model.eval()
    with torch.no_grad():
        np.testing.assert_allclose(reference_forward(desc, x.numpy())[0], model(x)[0], atol=1e-6)


@pytest.mark.parametrize(
    ("module", "match"),
    [
        (nn.RNN(3, 4), "RNN is not supported"),
        (nn.RNNCell(3, 4), "RNNCell is not supported"),
        (Stack(nn.RNN(3, 4)), "RNN"),
        (Stack(nn.GRU(3, 4), nn.Conv1d(4, 4, 1)), "'head' \\(Conv1d\\)"),
        (Stack(nn.GRU(3, 4), nn.Sequential(nn.Linear(4, 4), nn.GELU())), "'head.1' \\(GELU\\)"),
        (Stack(nn.Linear(3, 4)), "first child"),
        (nn.Linear(3, 4), "no child modules"),
    ],
)
def test_unsupported_modules_are_named(module, match):
    with pytest.raises(UnsupportedModuleError, match=match):
        from_torch(module)


def test_two_rnns_rejected():
    model = Stack(nn.GRU(3, 4), nn.Sequential(nn.GRU(4, 4)))
    with pytest.raises(UnsupportedModuleError, match="only one recurrent"):
        from_torch(model)


def test_description_validation():
    rng = np.random.default_rng(0)
    layer = RNNLayer("gru", rng.standard_normal((12, 3)), rng.standard_normal((12, 4)))
    with pytest.raises(ValueError, match="reads"):
        RNNModel([layer, layer])
    with pytest.raises(ValueError, match="expects"):
        RNNModel([layer], [DenseLayer(np.zeros((2, 5)))])
    with pytest.raises(ValueError, match="gru"):
        RNNLayer("gru", np.zeros((12, 3)), np.zeros((10, 3)))
    with pytest.raises(ValueError, match="activation"):
        Activation("gelu")


def _placeholders(func: relax.Function) -> list[str]:
    names: list[str] = []
    relax.analysis.post_order_visit(
        func.body, lambda e: names.append(extern_name(e)) if extern_name(e) else None
    )
    return names


@pytest.mark.parametrize("cell", ["gru", "lstm", "kaldi_gru"])
def test_to_relax_structure(cell):
    torch.manual_seed(0)
    desc = from_torch(Stack(_make(cell, 2, True, True), nn.Linear(37, 5)))
    mod = to_relax(desc)
    assert {gv.name_hint for gv in mod.get_global_vars()} == {"forward", "step"}
    forward = mod["forward"]
    assert _placeholders(forward) == [RNN_OPS[cell]] * 2 + [LINEAR_OP]
    B, T, features = forward.params[0].ty.shape
    assert int(features) == 13
    assert isinstance(B, tvm.tirx.Var) and isinstance(T, tvm.tirx.Var) and B.name != T.name
    state_rank = 4 if cell == "lstm" else 3
    assert len(forward.params[1].ty.shape) == state_rank
    names = {b.var.name for blk in forward.body.blocks for b in blk.bindings}
    assert {"rnn_weight_ih_l0", "rnn_weight_hh_l1", "head_weight"} <= names
