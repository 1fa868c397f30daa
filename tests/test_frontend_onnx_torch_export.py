"""Models exported by ``torch.onnx.export(..., dynamo=False)``, compiled, against onnxruntime."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")

from onnx_graphs import run_ort, zero_blocks

import tvm_bsp
from tvm_bsp.frontend import from_onnx, import_onnx

ATOL = 1e-4
I, H, O = 6, 8, 5


class GruNet(torch.nn.Module):
    """2-layer GRU (time-major, zero initial state) + Linear + log_softmax."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = torch.nn.GRU(I, H, num_layers=2)
        self.fc = torch.nn.Linear(H, O)

    def forward(self, x):
        y, _ = self.rnn(x)
        return torch.log_softmax(self.fc(y), dim=-1)


class LstmNet(torch.nn.Module):
    """batch_first 2-layer LSTM with h0/c0 inputs + Linear; returns the final states too."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = torch.nn.LSTM(I, H, num_layers=2, batch_first=True)
        self.fc = torch.nn.Linear(H, O)

    def forward(self, x, h0, c0):
        y, (h, c) = self.rnn(x, (h0, c0))
        return self.fc(y), h, c


def _export(net: torch.nn.Module, path, lstm: bool) -> str:
    net.eval()
    if lstm:
        args = (torch.randn(2, 4, I), torch.zeros(2, 2, H), torch.zeros(2, 2, H))
        names = {"input_names": ["x", "h0", "c0"], "output_names": ["y", "hn", "cn"]}
        dyn = {"x": {0: "B", 1: "T"}, "h0": {1: "B"}, "c0": {1: "B"}}
    else:
        args = (torch.randn(4, 2, I),)
        names = {"input_names": ["x"], "output_names": ["y"]}
        dyn = {"x": {0: "T", 1: "B"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, args, str(path), dynamo=False, dynamic_axes=dyn, **names)
    return str(path)


def _feeds(lstm: bool, T: int, B: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    if not lstm:
        return {"x": rng.standard_normal((T, B, I)).astype(np.float32)}
    return {
        "x": rng.standard_normal((B, T, I)).astype(np.float32),
        "h0": (0.5 * rng.standard_normal((2, B, H))).astype(np.float32),
        "c0": (0.5 * rng.standard_normal((2, B, H))).astype(np.float32),
    }


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    out = {}
    for name, net in (("gru", GruNet()), ("lstm", LstmNet())):
        path = _export(net, tmp_path_factory.mktemp(name) / f"{name}.onnx", name == "lstm")
        out[name] = (net, path, tvm_bsp.compile_model(path), import_onnx(path)[1])
    return out


@pytest.mark.parametrize("name", ["gru", "lstm"])
def test_forward_matches_onnxruntime_and_torch(exported, name):
    import onnx

    net, path, cm, sig = exported[name]
    model = onnx.load(path)
    for T, B in ((1, 1), (7, 3)):
        feeds = _feeds(name == "lstm", T, B, seed=T * B)
        ref = run_ort(model, feeds)
        y, state = cm.forward(feeds[sig.input], sig.state(feeds))
        mine = sig.onnx_outputs(np.asarray(y), np.asarray(state))
        assert set(mine) == set(ref)
        for out, want in ref.items():
            np.testing.assert_allclose(mine[out], want, atol=ATOL, err_msg=out)
        with torch.no_grad():
            want = net(*(torch.from_numpy(feeds[k]) for k in feeds))
        want = want[0] if isinstance(want, tuple) else want
        np.testing.assert_allclose(np.asarray(y), want.numpy(), atol=ATOL)


@pytest.mark.parametrize("name", ["gru", "lstm"])
def test_step_and_push_match_onnxruntime(exported, name):
    import onnx

    _net, path, cm, sig = exported[name]
    assert cm.model.streamable
    lstm = name == "lstm"
    feeds = _feeds(lstm, 5, 2, seed=9)
    ref = run_ort(onnx.load(path), feeds)
    time_axis = 1 if lstm else 0
    state = sig.state(feeds)
    frames = []
    for x_t in np.moveaxis(feeds["x"], time_axis, 0):
        y_t, state = cm.step(x_t, state)
        frames.append(np.asarray(y_t))
    np.testing.assert_allclose(np.stack(frames, axis=time_axis), ref["y"], atol=ATOL)
    if lstm:
        finals = sig.onnx_outputs(ref["y"], np.asarray(state))
        np.testing.assert_allclose(finals["hn"], ref["hn"], atol=ATOL)
        np.testing.assert_allclose(finals["cn"], ref["cn"], atol=ATOL)
    else:  # zero initial state: push from reset
        cm.reset()
        pushed = np.stack([np.asarray(cm.push(x_t)) for x_t in feeds["x"]])
        np.testing.assert_allclose(pushed, ref["y"], atol=ATOL)


def test_names_map_to_the_torch_state_dict(exported):
    """The exporter renames (and reorders) the weights; ``names=state_dict`` restores them."""
    net, path, _cm, _sig = exported["lstm"]
    default = set(from_onnx(path).weights())
    assert all(re.fullmatch(r"[\w.]+", n) for n in default), default  # onnx::X -> onnx__X
    desc = from_onnx(path, names=net.state_dict())
    want = {f"rnn.weight_{m}_l{k}" for m in ("ih", "hh") for k in (0, 1)} | {"fc.weight"}
    assert want <= set(desc.weights())
    for name in want:
        np.testing.assert_array_equal(desc.weights()[name], net.state_dict()[name].numpy())


def test_bspc_auto_on_exported_zero_blocks(tmp_path):
    """Zeroing whole blocks of the torch weights before export: bspc="auto" sparsifies exactly
    those, and the result still matches onnxruntime."""
    import onnx

    torch.manual_seed(1)
    net = GruNet()
    rng = np.random.default_rng(2)
    with torch.no_grad():
        for pname, p in net.rnn.named_parameters():
            if pname.startswith("weight"):
                p.copy_(torch.from_numpy(zero_blocks(p.numpy(), rng, grid=(6, 2), keep=0.3)))
    path = _export(net, tmp_path / "sparse.onnx", lstm=False)
    cm = tvm_bsp.compile_model(path, bspc="auto")
    desc = from_onnx(path)
    mostly_zero = {n for n, w in desc.weights().items() if np.count_nonzero(w) <= w.size // 2}
    assert mostly_zero and set(cm.sparse) == mostly_zero
    model = onnx.load(path)
    for T, B in ((1, 1), (6, 2)):
        feeds = _feeds(False, T, B, seed=T + 3)
        y, _ = cm.forward(feeds["x"])
        np.testing.assert_allclose(np.asarray(y), run_ort(model, feeds)["y"], atol=ATOL)
