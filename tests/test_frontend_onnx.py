"""The ONNX frontend against onnxruntime: spec-written graphs (onnx.helper) and torch exports."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from onnx_graphs import feeds_for, rnn_graph, run_ort

import tvm_bsp
from tvm_bsp.frontend import import_onnx, reference_forward

ATOL = 1e-4


def _check(model, sig, run, feeds) -> None:
    """``run(x, state) -> (y, state)`` against onnxruntime on every graph output."""
    ref = run_ort(model, feeds)
    y, state = run(feeds[sig.input], sig.state(feeds))
    mine = sig.onnx_outputs(np.asarray(y), np.asarray(state))
    assert set(mine) == set(ref)
    for name, want in ref.items():
        np.testing.assert_allclose(mine[name], want, atol=ATOL, err_msg=name)


GRAPHS = {
    # name: rnn_graph keywords
    "gru_lbr1": {"op": "GRU", "lbr": 1},
    "gru_lbr0": {"op": "GRU", "lbr": 0},
    "gru_lbr0_2layers_gemm": {"op": "GRU", "lbr": 0, "layers": 2, "head": "gemm"},
    "gru_reverse": {"op": "GRU", "direction": "reverse", "final": "Softmax"},
    "gru_bidir_2layers": {"op": "GRU", "direction": "bidirectional", "layers": 2},
    "gru_nobias_nostate": {"op": "GRU", "bias": False, "init_state": False, "head": None},
    "lstm": {"op": "LSTM", "layers": 2},
    "lstm_bidir_gemm": {"op": "LSTM", "direction": "bidirectional", "head": "gemm"},
    "lstm_reverse_nobias": {"op": "LSTM", "direction": "reverse", "bias": False, "final": None},
}


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_description_matches_onnxruntime(name):
    """The imported description (numpy reference) computes what onnxruntime computes."""
    model = rnn_graph(**GRAPHS[name], seed=len(name))
    desc, sig = import_onnx(model)
    assert desc.num_directions == (2 if "bidir" in name else 1)
    for T, B in ((1, 1), (6, 3)):
        _check(model, sig, lambda x, s: reference_forward(desc, x, s), feeds_for(model, T, B))


def test_gate_order_and_cells():
    """ONNX z, r, h rows land in the description's r, z, n order; lbr picks the cell."""
    model = rnn_graph("GRU", lbr=0, sizes=(3, 2, 2))
    desc, _ = import_onnx(model)
    W = next(i for i in model.graph.initializer if i.name == "W0")
    from onnx import numpy_helper

    w = numpy_helper.to_array(W)[0]
    layer = desc.layers[0]
    assert layer.cell == "kaldi_gru" and layer.bias_hh is None
    np.testing.assert_array_equal(layer.weight_ih[:2], w[2:4])  # r
    np.testing.assert_array_equal(layer.weight_ih[2:4], w[:2])  # z
    assert import_onnx(rnn_graph("GRU", lbr=1))[0].cell == "gru"


COMPILED = ["gru_lbr0_2layers_gemm", "gru_lbr1", "lstm", "gru_bidir_2layers", "lstm_reverse_nobias"]


@pytest.fixture(scope="module", params=COMPILED)
def compiled(request):
    name = request.param
    model = rnn_graph(**GRAPHS[name], seed=len(name))
    return name, model, tvm_bsp.compile_model(model), import_onnx(model)[1]


def test_compiled_forward_matches_onnxruntime(compiled):
    _name, model, cm, sig = compiled
    for T, B in ((1, 1), (7, 2)):
        _check(model, sig, cm.forward, feeds_for(model, T, B, seed=T + B))


def test_compiled_stream_matches_onnxruntime(compiled):
    _name, model, cm, sig = compiled
    if not cm.model.streamable:
        with pytest.raises(Exception, match=r"(?i)stream|step|reverse|bidirectional"):
            cm.step(np.zeros((1, cm.model.input_size), np.float32))
        return
    feeds = feeds_for(model, 5, 2, seed=4)
    ref = run_ort(model, feeds)
    state = sig.state(feeds)
    frames = []
    for x_t in feeds["x"]:
        y_t, state = cm.step(x_t, state)
        frames.append(y_t)
    np.testing.assert_allclose(np.stack(frames), ref["y"], atol=ATOL)
    np.testing.assert_allclose(sig.onnx_outputs(ref["y"], state)["hn"], ref["hn"], atol=ATOL)
    if sig.state(feeds) is None or not np.any(sig.state(feeds)):
        cm.reset()
        pushed = np.stack([cm.push(x_t) for x_t in feeds["x"]])
        np.testing.assert_allclose(pushed, ref["y"], atol=ATOL)


def test_push_from_zero_state():
    model = rnn_graph("GRU", init_state=False, seed=3)
    cm = tvm_bsp.compile_model(model)
    feeds = feeds_for(model, 6, 2)
    ref = run_ort(model, feeds)
    cm.reset()
    np.testing.assert_allclose(np.stack([cm.push(x) for x in feeds["x"]]), ref["y"], atol=ATOL)


@pytest.mark.parametrize("op", ["GRU", "LSTM"])
def test_bspc_auto_on_onnx_weights(op):
    """Weights with zero blocks become BSPC with bspc="auto" and still match onnxruntime."""
    model = rnn_graph(op, layers=2, sparse=True, lbr=0, seed=11)
    cm = tvm_bsp.compile_model(model, bspc="auto")
    desc, sig = import_onnx(model)
    mostly_zero = {n for n, w in desc.weights().items() if np.count_nonzero(w) <= w.size // 2}
    assert mostly_zero and set(cm.sparse) == mostly_zero
    for T, B in ((1, 1), (6, 2)):
        _check(model, sig, cm.forward, feeds_for(model, T, B, seed=T))


def test_compile_model_takes_a_path(tmp_path):
    import onnx

    model = rnn_graph("GRU", head=None, final=None, seed=5)
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    cm = tvm_bsp.compile_model(str(path))
    _check(model, import_onnx(path)[1], cm.forward, feeds_for(model, 4, 2))
    with pytest.raises(ValueError, match="submodule"):
        tvm_bsp.compile_model(path, submodule="rnn")


def test_weight_names_that_are_not_identifiers_compile(monkeypatch):
    """Exporters name weights ``onnx::GRU_12`` or ``/rnn/W``: such names compile as they are
    (Relax accepts them as variable names), without the ONNX frontend's renaming."""
    from tvm_bsp.frontend import onnx_import

    model = rnn_graph("GRU", layers=2, seed=7)
    renamed = {init.name: f"/rnn/onnx::{init.name}:0" for init in model.graph.initializer}
    for init in model.graph.initializer:
        init.name = renamed[init.name]
    for node in model.graph.node:
        node.input[:] = [renamed.get(i, i) for i in node.input]
    monkeypatch.setattr(onnx_import, "_safe_names", lambda desc: None)
    cm = tvm_bsp.compile_model(model)
    desc, sig = import_onnx(model)
    assert any("::" in n for n in desc.weights())
    _check(model, sig, cm.forward, feeds_for(model, 5, 2, seed=1))
