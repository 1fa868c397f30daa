"""Import ONNX models into an :class:`~tvm_bsp.frontend.model.RNNModel`.

Accepted graphs: one sequence input (``(T, B, I)``, or ``(B, T, I)`` transposed before the
first recurrent node: then the model is ``batch_first``), a chain of ``GRU`` / ``LSTM`` nodes
(:mod:`tvm_bsp.frontend.onnx_rnn` has the equations), then a head of ``MatMul`` (+ ``Add``) /
``Gemm`` layers and ``Relu``, ``Tanh``, ``Sigmoid``, ``Softmax``, ``LogSoftmax`` over the
features, joined by the glue exporters emit (``Transpose``, ``Squeeze``, ``Unsqueeze``,
``Reshape``, ``Concat``, ``Identity``, ``Cast``, ``Shape`` / ``Gather``, and any of these folded
on constants; :mod:`tvm_bsp.frontend.onnx_values`). Initial states are graph inputs (whole or
``Slice`` d on the first axis, as ``torch.onnx.export`` writes them), final states graph
outputs (``Y_h`` / ``Y_c``, possibly ``Concat`` ed). Anything else raises
:class:`UnsupportedOnnxError` naming the node and its op type: ``RNN`` nodes, peepholes,
``input_forget``, ``sequence_lens``, non-default activations, ``clip``, ``layout=1``, branches.

:func:`import_onnx` also returns an :class:`OnnxSignature`, which maps the graph's inputs and
outputs to ``forward``'s state and results (ONNX keeps ``h`` and ``c`` apart, the description
stacks them).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tvm_bsp.frontend.model import DenseLayer, HeadLayer, RNNLayer, RNNModel
from tvm_bsp.frontend.onnx_glue import GlueOps
from tvm_bsp.frontend.onnx_head import ACTS, SOFTMAX, HeadOps
from tvm_bsp.frontend.onnx_values import (
    Const,
    Dim,
    Input,
    Seq,
    StateIn,
    StateOut,
    UnsupportedOnnxError,
    Value,
    Zeros,
    normalize,
    sym,
    where,
)

_FOLDABLE = {
    "Constant", "Identity", "Transpose", "Squeeze", "Unsqueeze", "Reshape", "Concat", "Gather",
    "Shape", "Cast", "Slice", "Add", "Sub", "Mul", "Div", "Neg", "Range", "ConstantOfShape",
    "Expand", "Flatten", "Split", "Size",
}  # fmt: skip


@dataclass
class OnnxSignature:
    """How the ONNX graph's inputs and outputs map to the compiled ``forward``.

    Attributes
    ----------
    input : str
        The sequence input.
    batch_first : bool
    cell : str
    state_shape : callable
        ``batch -> shape`` of the description state.
    state_inputs : dict
        ``{input name: {row: (kind, state index)}}``, ``kind`` ``"h"`` or ``"c"``.
    outputs : dict
        ``{output name: (kind, state indices)}`` with kind ``"y"`` (the sequence output),
        ``"y_flat"`` (it, flattened to ``(T * B, O)``), ``"h"`` or ``"c"``.
    """

    input: str
    batch_first: bool
    cell: str
    state_shape: Any
    state_inputs: dict[str, dict[int, tuple[str, int]]] = field(default_factory=dict)
    outputs: dict[str, tuple[str, tuple[int, ...]]] = field(default_factory=dict)

    def state(self, feeds: Mapping[str, np.ndarray]) -> np.ndarray | None:
        """The description state for ONNX feeds (``None`` if no state input is fed)."""
        given = [n for n in self.state_inputs if n in feeds]
        if not given:
            return None
        state = np.zeros(self.state_shape(np.shape(feeds[given[0]])[1]), np.float32)
        for name in given:
            arr = np.asarray(feeds[name], np.float32)
            for row, (kind, slot) in self.state_inputs[name].items():
                if self.cell == "lstm":
                    state[slot, 0 if kind == "h" else 1] = arr[row]
                else:
                    state[slot] = arr[row]
        return state

    def onnx_outputs(self, y: np.ndarray, state: np.ndarray) -> dict[str, np.ndarray]:
        """What the ONNX graph outputs, from ``forward``'s ``(y, state)``."""
        out = {}
        for name, (kind, slots) in self.outputs.items():
            if kind == "y":
                out[name] = y
            elif kind == "y_flat":
                out[name] = y.reshape(-1, y.shape[-1])
            elif self.cell == "lstm":
                out[name] = state[list(slots), 0 if kind == "h" else 1]
            else:
                out[name] = state[list(slots)]
        return out


def from_onnx(model: Any, names: Mapping[str, Any] | None = None) -> RNNModel:
    """Describe an ONNX model (see the module docstring for accepted graphs).

    Parameters
    ----------
    model : onnx.ModelProto, or a path to a ``.onnx`` file
    names : mapping, optional
        ``{name: array}`` (e.g. the source torch model's ``state_dict()``): a weight of the
        description equal to one of these arrays takes its name (so that a prune export
        directory written from the torch model matches). Default names are the ONNX
        initializer names (``.forward`` / ``.backward`` appended per direction of a
        bidirectional node), characters other than letters, digits, ``_`` and ``.`` replaced
        by ``_`` (``onnx::GRU_183`` becomes ``onnx__GRU_183``).

    Returns
    -------
    RNNModel

    Raises
    ------
    UnsupportedOnnxError
        Naming the node (and op type) or graph input/output that cannot be translated.
    """
    return import_onnx(model, names)[0]


def import_onnx(
    model: Any, names: Mapping[str, Any] | None = None
) -> tuple[RNNModel, OnnxSignature]:
    """:func:`from_onnx`, plus the :class:`OnnxSignature` of the graph."""
    import onnx

    if isinstance(model, str | os.PathLike):
        model = onnx.load(os.fspath(model))
    if not isinstance(model, onnx.ModelProto):
        raise TypeError(f"expected an onnx.ModelProto or a .onnx path, got {type(model).__name__}")
    opset = {o.domain or "ai.onnx": o.version for o in model.opset_import}
    walk = _Walk(opset.get("ai.onnx", 1))
    desc, sig = walk.run(model.graph)
    _safe_names(desc)
    if names:
        _rename(desc, names)
    return desc, sig


class _Walk(GlueOps, HeadOps):
    """Runs the graph on abstract values (one instance per import)."""

    def __init__(self, opset: int) -> None:
        self.opset = opset
        self.env: dict[str, Value] = {}
        self.layers: list[RNNLayer] = []
        self.head: list[HeadLayer] = []
        self.seq_id = 0
        self.x_seq: Seq | None = None
        self.x_name: str | None = None
        self.batch_first: bool | None = None
        self.rename: dict[str, str] = {}
        self.state_in: dict[str, dict[int, tuple[str, int]]] = {}
        self.inputs: dict[str, Input] = {}
        self.last_dense = -1  # seq id produced by the newest MatMul/Gemm

    # ------------------------------------------------------------------ driver
    def run(self, graph) -> tuple[RNNModel, OnnxSignature]:
        from onnx import numpy_helper

        for init in graph.initializer:
            self.env[init.name] = Const(numpy_helper.to_array(init), init.name)
        for inp in graph.input:
            if inp.name not in self.env:
                dims = inp.type.tensor_type.shape.dim
                shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)
                self.env[inp.name] = self.inputs[inp.name] = Input(inp.name, shape)
        for node in graph.node:
            outs = self.node(node)
            for name, value in zip(node.output, outs, strict=False):
                if name:
                    self.env[name] = value
        if not self.layers:
            raise UnsupportedOnnxError("the graph has no GRU or LSTM node")
        try:
            model = RNNModel(self.layers, self.head, bool(self.batch_first))
        except ValueError as err:
            raise UnsupportedOnnxError(f"the recurrent nodes do not form one stack: {err}") from err
        sig = OnnxSignature(
            self.x_name or "", model.batch_first, model.cell, model.state_shape, self.state_in
        )
        for out in graph.output:
            sig.outputs[out.name] = self.output(out.name)
        return model, sig

    def output(self, name: str) -> tuple[str, tuple[int, ...]]:
        value = self.env[name]
        if isinstance(value, StateOut):
            return value.kind, value.slots
        if isinstance(value, Seq) and value.id == self.seq_id:
            want = ("B", "T", "F") if self.batch_first else ("T", "B", "F")
            if value.labels == want:
                return "y", ()
            if value.labels == ("T*B", "F") and not self.batch_first:
                return "y_flat", ()
            raise UnsupportedOnnxError(
                f"graph output '{name}' has axes {value}; expected {want} (the input's layout)"
            )
        raise UnsupportedOnnxError(
            f"graph output '{name}' is neither the last sequence of the chain nor a final state"
        )

    def node(self, node) -> list[Value]:
        if node.domain not in ("", "ai.onnx"):
            raise UnsupportedOnnxError(f"{where(node)}: operator domain '{node.domain}'")
        ins: list[Value | None] = []
        for n in node.input:
            if n and n not in self.env:
                raise UnsupportedOnnxError(f"{where(node)}: input '{n}' is not defined before it")
            ins.append(self.env[n] if n else None)
        op = node.op_type
        if op == "RNN":
            raise UnsupportedOnnxError(
                f"{where(node)}: the plain ONNX RNN cell is not supported; only GRU and LSTM"
            )
        if op in _FOLDABLE and all(isinstance(v, Const) for v in ins if v is not None):
            return self.fold(node, ins)
        handler = getattr(self, f"op_{op}", None)
        if op in ("GRU", "LSTM"):
            return self.op_rnn(node, ins)
        if op in ACTS or op in SOFTMAX:
            return self.op_activation(node, ins)
        if handler is None:
            raise UnsupportedOnnxError(f"{where(node)}: operator {op} is not supported")
        return handler(node, ins)

    def fold(self, node, ins) -> list[Value]:
        from onnx.reference import ReferenceEvaluator

        feeds = {n: v.value for n, v in zip(node.input, ins, strict=True) if n}
        outs = ReferenceEvaluator(node, opsets={"": self.opset}).run(None, feeds)
        return [Const(np.asarray(o), name) for o, name in zip(outs, node.output, strict=False)]

    # ------------------------------------------------------------------ sequences
    def seq(self, value, node) -> Seq:
        if isinstance(value, Input):
            if len(value.shape) != 3 or value.shape[2] is None:
                raise UnsupportedOnnxError(
                    f"{where(node)}: graph input '{value.name}' as the sequence must be 3-D "
                    f"with a static feature size, got shape {value.shape}"
                )
            if self.x_name not in (None, value.name):
                raise UnsupportedOnnxError(
                    f"{where(node)}: a second sequence input '{value.name}' "
                    f"(the first is '{self.x_name}')"
                )
            if self.x_seq is None:
                self.x_name = value.name
                axes = (("X0", sym("X0")), ("X1", sym("X1")), ("F", Dim(int(value.shape[2]))))
                self.x_seq = Seq(axes, self.seq_id)
            return self.x_seq
        if not isinstance(value, Seq):
            raise UnsupportedOnnxError(
                f"{where(node)}: expected the activation sequence as input, got "
                f"{type(value).__name__}"
            )
        return value

    def consume(self, value, node) -> Seq:
        seq = self.seq(value, node)
        if seq.id != self.seq_id:
            raise UnsupportedOnnxError(
                f"{where(node)}: the graph branches (this node reads a sequence another node "
                "already read); only a chain input -> recurrent layers -> head is supported"
            )
        self.seq_id += 1
        return seq

    def new(self, axes) -> Seq:
        return Seq(normalize(axes), self.seq_id)

    # ------------------------------------------------------------------ recurrent nodes
    def op_rnn(self, node, ins):
        from tvm_bsp.frontend.onnx_rnn import rnn_layer

        if self.head:
            raise UnsupportedOnnxError(
                f"{where(node)}: a recurrent node after head layers (the chain must be "
                "recurrent layers, then the head)"
            )
        x = self.seq(ins[0], node)
        if self.batch_first is None:
            if x.labels not in (("X0", "X1", "F"), ("X1", "X0", "F")):
                raise UnsupportedOnnxError(f"{where(node)}: input axes {x} are not (T, B, I)")
            self.batch_first = x.labels[0] == "X1"
            self.rename = {x.labels[0]: "T", x.labels[1]: "B"}
        elif x.labels != ("T", "B", "F"):
            raise UnsupportedOnnxError(f"{where(node)}: input axes {x} are not (T, B, features)")
        self.consume(x, node)
        if len(ins) > 4 and ins[4] is not None:
            raise UnsupportedOnnxError(
                f"{where(node)}: sequence_lens is not supported (every sequence of a batch "
                "runs the full length); remove the input"
            )
        layer = rnn_layer(node, ins, x.width)
        nd, slot0 = layer.num_directions, len(self.layers) * layer.num_directions
        for kind, at in (("h", 5), ("c", 6)):
            if len(ins) > at and ins[at] is not None:
                self.bind_state(ins[at], kind, slot0, nd, node)
        self.layers.append(layer)
        slots = tuple(range(slot0, slot0 + nd))
        y = Seq(
            (("T", sym("T")), ("D", Dim(nd)), ("B", sym("B")), ("H", Dim(layer.state_size))),
            self.seq_id,
        )
        return [y, StateOut("h", slots), StateOut("c", slots)]

    def bind_state(self, value, kind: str, slot0: int, nd: int, node) -> None:
        if isinstance(value, Zeros) or (isinstance(value, Const) and not np.any(value.value)):
            return  # zeros: the default state
        if isinstance(value, Input):
            value = StateIn(value.name, 0, value.shape[0] if value.shape else None)
        if not isinstance(value, StateIn):
            raise UnsupportedOnnxError(
                f"{where(node)}: initial_{kind} must be a graph input, a Slice of one or zeros"
            )
        stop = value.start + nd if value.stop is None else value.stop
        if stop - value.start != nd:
            raise UnsupportedOnnxError(
                f"{where(node)}: initial_{kind} has {stop - value.start} rows of "
                f"'{value.input}', the node has {nd} direction(s)"
            )
        rows = self.state_in.setdefault(value.input, {})
        for d in range(nd):
            if value.start + d in rows:
                raise UnsupportedOnnxError(
                    f"{where(node)}: row {value.start + d} of '{value.input}' is already "
                    "the initial state of another layer"
                )
            rows[value.start + d] = (kind, slot0 + d)


def _safe_names(model: RNNModel) -> None:
    """Parameter names the compile path can bind to Relax variables (``onnx::X`` -> ``onnx__X``)."""
    holders = [layer.names for _, _, layer in model.directions()]
    holders += [item.names for item in model.head if isinstance(item, DenseLayer)]
    for names in holders:
        for role, name in names.items():
            names[role] = re.sub(r"[^\w.]", "_", name)


def _as_array(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _rename(model: RNNModel, names: Mapping[str, Any]) -> None:
    """Give description weights the names of equal arrays in ``names``."""
    table = [(k, _as_array(v)) for k, v in names.items()]
    used: set[str] = set()

    def find(arr: np.ndarray) -> str | None:
        for key, val in table:
            if key not in used and val.shape == arr.shape and np.array_equal(val, arr):
                used.add(key)
                return key
        return None

    for _, _, layer in model.directions():
        for role in layer.roles():
            key = find(getattr(layer, role))
            if key:
                layer.names[role] = key
    for item in model.head:
        if isinstance(item, DenseLayer):
            key = find(item.weight)
            if key:
                item.names["weight"] = key
