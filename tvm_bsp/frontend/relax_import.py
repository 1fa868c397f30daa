"""Translate an :class:`~tvm_bsp.frontend.model.RNNModel` into a Relax IRModule.

The module has two public functions (``T`` and ``B`` are symbolic, so one build serves any
utterance length and batch):

``forward(x, state) -> (y, state')``
    ``x`` is ``(T, B, I)`` (``(B, T, I)`` for ``batch_first`` models), ``y`` likewise with
    ``O`` features; ``state`` is ``(L, B, H)`` for GRUs, ``(L, 2, B, H)`` for LSTMs
    (``[:, 0]`` = ``h``, ``[:, 1]`` = ``c``).
``step(x_t, state) -> (y_t, state')``
    One frame, ``x_t`` ``(B, I)`` and ``y_t`` ``(B, O)``: the same graph with ``T = 1``.
    Only for streamable models: a model with a reverse (or bidirectional) layer has no
    ``step``, a backward direction needs the whole utterance.

State layouts (bidirectional: ``L * 2`` rows, projected LSTMs) are those of
:mod:`tvm_bsp.frontend.model`. A reverse direction is ``flip(time) -> the forward kernels ->
flip``; a bidirectional layer is both directions and a ``concat`` of their outputs on the
feature axis, so no kernel knows about directions. A projected LSTM's call takes ``w_hr``
as an eighth argument (the kernel applies it inside the time loop); its ``y`` has ``P``
features and its ``hT`` is ``(B, H)`` with zeros past ``P``.

Recurrent layers and dense layers are *placeholder calls* that :mod:`tvm_bsp.passes` lower::

    R.call_dps_packed("tvm_bsp.rnn.gru",       (x, state, k, w_ih, w_hh, b_ih, b_hh), [y, hT])
    R.call_dps_packed("tvm_bsp.rnn.kaldi_gru", (x, state, k, w_ih, w_hh, b_ih, s), [y, hT])
    R.call_dps_packed("tvm_bsp.rnn.lstm",      (x, state, k, w_ih, w_hh, b_ih, b_hh), [y, hT, cT])
    R.call_dps_packed("tvm_bsp.linear",        (x2d, w, b), y2d)

with the equations of :mod:`tvm_bsp.frontend.model`: ``k`` (an ``int64`` prim value, the
direction's row of the state, ``layer * D + direction``) says where it starts from:
``state[k]`` of the stacked state (no slicing op: the kernel reads its part); ``s`` is the
kaldi candidate scale (a ``float32`` prim value), absent biases are zeros. Every weight
and bias is a constant bound to a variable named after its parameter (``rnn.weight_hh_l0``):
the passes find weights by these names.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax, tirx

from tvm_bsp.frontend.model import Activation, DenseLayer, RNNLayer, RNNModel

#: Placeholder extern names of the recurrent layers, by cell.
RNN_OPS: dict[str, str] = {
    "gru": "tvm_bsp.rnn.gru",
    "kaldi_gru": "tvm_bsp.rnn.kaldi_gru",
    "lstm": "tvm_bsp.rnn.lstm",
}
#: Placeholder extern name of a dense layer ``y = x W^T + b``.
LINEAR_OP = "tvm_bsp.linear"


_ACTIVATIONS = {
    "relu": relax.op.nn.relu,
    "tanh": relax.op.tanh,
    "sigmoid": relax.op.sigmoid,
    "softmax": lambda v: relax.op.nn.softmax(v, axis=-1),
    "log_softmax": lambda v: relax.op.nn.log_softmax(v, axis=-1),
}


def _tensor(shape, dtype: str = "float32") -> relax.TensorType:
    return relax.TensorType(list(shape), dtype)


class _Builder:
    """Emits the body of ``forward`` (one instance per module)."""

    def __init__(self, bb: relax.BlockBuilder, model: RNNModel) -> None:
        self.bb = bb
        self.model = model
        self.constants: dict[str, relax.Expr] = {}

    def const(self, value: np.ndarray, name: str) -> relax.Var:
        """Bind the (shared, per name) constant of a parameter to a variable named after it."""
        if name not in self.constants:
            self.constants[name] = relax.const(np.ascontiguousarray(value, np.float32))
        return self.bb.emit(self.constants[name], name_hint=name)

    def direction(self, index: int, k: int, layer: RNNLayer, x, state, T, B):
        """One direction of layer ``k`` from ``state[index]``: ``(y (T, B, S), finals)``."""
        bb, H = self.bb, layer.hidden_size
        gh = layer.gates * H
        w_ih = self.const(layer.weight_ih, layer.name("weight_ih", k))
        w_hh = self.const(layer.weight_hh, layer.name("weight_hh", k))
        b_ih = self.const(_bias(layer.bias_ih, gh), layer.name("bias_ih", k))
        outs = [_tensor((T, B, layer.state_size)), _tensor((B, H))]
        prim = relax.prim_value(tirx.IntImm("int64", index))
        if layer.cell == "kaldi_gru":
            last = relax.prim_value(tirx.FloatImm("float32", layer.candidate_scale))
        else:
            last = self.const(_bias(layer.bias_hh, gh), layer.name("bias_hh", k))
        if layer.cell == "lstm":
            outs.append(_tensor((B, H)))
        if layer.reverse:
            x = bb.emit(relax.op.flip(x, axis=0))
        args = [x, state, prim, w_ih, w_hh, b_ih, last]
        if layer.weight_hr is not None:
            args.append(self.const(layer.weight_hr, layer.name("weight_hr", k)))
        call = relax.call_dps_packed(RNN_OPS[layer.cell], args, outs)
        suffix = "_reverse" if layer.reverse else ""
        res = bb.emit(call, name_hint=f"rnn_l{k}{suffix}")
        finals = [bb.emit(relax.TupleGetItem(res, i)) for i in range(1, len(outs))]
        y = bb.emit(relax.TupleGetItem(res, 0))
        if layer.reverse:
            y = bb.emit(relax.op.flip(y, axis=0))
        return y, finals

    def layer(self, k: int, layer: RNNLayer, x: relax.Expr, state: relax.Expr, T, B):
        """Layer ``k`` (both directions of a bidirectional one, outputs concatenated)."""
        D = self.model.num_directions
        ys, finals = [], []
        for d, half in enumerate(layer.directions()):
            y, last = self.direction(k * D + d, k, half, x, state, T, B)
            ys.append(y)
            finals.extend(last)
        if len(ys) == 1:
            return ys[0], finals
        return self.bb.emit(relax.op.concat(ys, axis=2)), finals

    def head(self, y: relax.Expr, T, B) -> relax.Expr:
        bb = self.bb
        width = self.model.rnn_output_size
        flat = bb.emit(relax.op.reshape(y, (T * B, width)))
        for k, item in enumerate(self.model.head):
            if isinstance(item, DenseLayer):
                out = item.weight.shape[0]
                w = self.const(item.weight, item.names.get("weight", f"head.{k}.weight"))
                b = self.const(_bias(item.bias, out), item.names.get("bias", f"head.{k}.bias"))
                call = relax.call_dps_packed(LINEAR_OP, [flat, w, b], _tensor((T * B, out)))
                flat = bb.emit(call, name_hint=f"head_{k}")
                width = out
            elif isinstance(item, Activation):
                flat = bb.emit(_ACTIVATIONS[item.kind](flat))
        return bb.emit(relax.op.reshape(flat, (T, B, width)))


def _bias(value: np.ndarray | None, rows: int) -> np.ndarray:
    return np.zeros(rows, np.float32) if value is None else value


def _state_type(model: RNNModel, B) -> relax.TensorType:
    return _tensor(model.state_shape(B))  # type: ignore[arg-type]


def _body(build: _Builder, seq: relax.Expr, state: relax.Expr, T, B) -> tuple[relax.Expr, ...]:
    """Layers and head on a time-major ``seq``; returns ``(y (T, B, O), new state)``."""
    bb, model = build.bb, build.model
    finals: list[relax.Expr] = []
    for k, layer in enumerate(model.layers):
        seq, last = build.layer(k, layer, seq, state, T, B)
        finals.extend(last)
    y = build.head(seq, T, B)
    stacked = bb.emit(relax.op.stack(finals, 0))  # one copy for all layers (and h, c)
    if model.cell == "lstm":
        stacked = bb.emit(relax.op.reshape(stacked, model.state_shape(B)))
    return y, stacked


def to_relax(model: RNNModel) -> tvm.IRModule:
    """Build the Relax module of ``model`` (see the module docstring).

    ``step`` is its own copy of the graph with ``T = 1`` (no nested call, static time
    shapes); both functions bind the same constant objects, which the VM stores once.
    A model with a reverse direction (:attr:`RNNModel.streamable` False) gets no ``step``.

    Parameters
    ----------
    model : RNNModel

    Returns
    -------
    tvm.IRModule
        Functions ``forward`` and ``step``, with the recurrent and dense layers as placeholder
        calls (to be lowered by :func:`tvm_bsp.passes.LowerRNN`).
    """
    build = _Builder(relax.BlockBuilder(), model)
    I, O = model.input_size, model.output_size

    bb = build.bb
    T = tirx.Var("T", "int64")
    B = tirx.Var("B", "int64")
    x = relax.Var("x", _tensor((B, T, I) if model.batch_first else (T, B, I)))
    state = relax.Var("state", _state_type(model, B))
    with bb.function("forward", [x, state]):
        with bb.dataflow():
            seq = bb.emit(relax.op.permute_dims(x, [1, 0, 2])) if model.batch_first else x
            y, new_state = _body(build, seq, state, T, B)
            if model.batch_first:
                y = bb.emit(relax.op.permute_dims(y, [1, 0, 2]))
            out = bb.emit_output(relax.Tuple([y, new_state]))
        bb.emit_func_output(out)
    forward = bb.get()["forward"]
    if not model.streamable:
        return tvm.IRModule({"forward": forward})

    # A builder of its own, so that step's variables keep the parameter names (one name
    # supply per module would suffix them).
    bb = build.bb = relax.BlockBuilder()
    B1 = tirx.Var("B", "int64")
    x_t = relax.Var("x_t", _tensor((B1, I)))
    state1 = relax.Var("state", _state_type(model, B1))
    one = tirx.IntImm("int64", 1)
    with bb.function("step", [x_t, state1]):
        with bb.dataflow():
            seq = bb.emit(relax.op.reshape(x_t, (one, B1, I)))
            y, new_state = _body(build, seq, state1, one, B1)
            y_t = bb.emit(relax.op.reshape(y, (B1, O)))
            out = bb.emit_output(relax.Tuple([y_t, new_state]))
        bb.emit_func_output(out)
    return tvm.IRModule({"forward": forward, "step": bb.get()["step"]})
