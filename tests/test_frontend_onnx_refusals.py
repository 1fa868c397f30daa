"""The ONNX frontend refuses what the description cannot express, naming the node and op."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx_graphs import rnn_graph

from tvm_bsp.frontend import UnsupportedOnnxError, from_onnx


def _node(model: onnx.ModelProto, name: str) -> onnx.NodeProto:
    return next(n for n in model.graph.node if n.name == name)


def _refused(model: onnx.ModelProto, *fragments: str) -> str:
    with pytest.raises(UnsupportedOnnxError) as err:
        from_onnx(model)
    msg = str(err.value)
    for f in fragments:
        assert f in msg, f"{f!r} not in {msg!r}"
    return msg


def _add_init(model: onnx.ModelProto, name: str, value: np.ndarray) -> None:
    model.graph.initializer.append(numpy_helper.from_array(value, name))


def test_error_is_a_value_error():
    assert issubclass(UnsupportedOnnxError, ValueError)


def test_plain_rnn_node_refused():
    model = rnn_graph("GRU", init_state=False, head=None, final=None)
    node = _node(model, "rnn0")
    node.op_type = "RNN"
    del node.attribute[:]
    node.attribute.append(helper.make_attribute("hidden_size", 5))
    _refused(model, "node 'rnn0' (RNN)", "RNN cell is not supported")


def test_lstm_peepholes_refused():
    model = rnn_graph("LSTM", init_state=False, head=None, final=None)
    _add_init(model, "P0", np.zeros((1, 3 * 5), np.float32))
    node = _node(model, "rnn0")
    node.input.extend(["", "", "P0"])  # X W R B seq_lens h0 c0 P
    assert len(node.input) == 8
    _refused(model, "node 'rnn0' (LSTM)", "peephole", "input P")


def test_lstm_input_forget_refused():
    model = rnn_graph("LSTM", init_state=False, head=None, final=None, extra={"input_forget": 1})
    _refused(model, "node 'rnn0' (LSTM)", "input_forget")


@pytest.mark.parametrize("as_input", [True, False])
def test_sequence_lens_refused(as_input):
    model = rnn_graph("GRU", init_state=False, head=None, final=None)
    if as_input:
        model.graph.input.append(helper.make_tensor_value_info("lens", TensorProto.INT32, ["B"]))
    else:
        _add_init(model, "lens", np.array([6], np.int32))
    node = _node(model, "rnn0")
    node.input[4] = "lens"
    _refused(model, "node 'rnn0' (GRU)", "sequence_lens")


def test_unknown_op_refused():
    model = rnn_graph("GRU", init_state=False, head=None, final=None)
    ident = next(n for n in model.graph.node if n.op_type == "Identity")
    ident.op_type = "Erf"
    ident.name = "my_erf"
    _refused(model, "node 'my_erf' (Erf)", "not supported")


def test_unknown_domain_refused():
    model = rnn_graph("GRU", init_state=False, head=None, final=None)
    ident = next(n for n in model.graph.node if n.op_type == "Identity")
    ident.domain = "com.example"
    ident.name = "custom"
    _refused(model, "node 'custom' (Identity)", "com.example")


def test_graph_branch_refused():
    """Two nodes reading the same sequence is not a chain."""
    model = rnn_graph("GRU", init_state=False, head=None, final=None)
    nodes = list(model.graph.node)
    squeeze = next(n for n in nodes if n.op_type == "Squeeze")
    ident = next(n for n in nodes if n.op_type == "Identity")
    relu = helper.make_node("Relu", [squeeze.output[0]], ["r"], name="relu_a")
    tanh = helper.make_node("Tanh", [squeeze.output[0]], ["t"], name="tanh_b")
    ident.input[0] = "t"
    del model.graph.node[:]
    at = nodes.index(ident)
    model.graph.node.extend([*nodes[:at], relu, tanh, *nodes[at:]])
    _refused(model, "node 'tanh_b' (Tanh)", "branches")


@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
def test_softmax_over_non_feature_axis_refused(op, axis):
    model = rnn_graph("GRU", init_state=False, final=op)
    final = next(n for n in model.graph.node if n.op_type == op)
    final.name = "final_sm"
    del final.attribute[:]
    final.attribute.append(helper.make_attribute("axis", axis))
    _refused(model, f"node 'final_sm' ({op})", f"axis {axis}", "features")


def test_accepted_baseline():
    """The unmodified graphs the refusals start from import fine (the tests refuse the edit)."""
    for op in ("GRU", "LSTM"):
        from_onnx(rnn_graph(op, init_state=False, head=None, final=None))
    from_onnx(rnn_graph("GRU", init_state=False, final="Softmax"))
