"""ONNX ``GRU`` / ``LSTM`` nodes to :class:`~tvm_bsp.frontend.model.RNNLayer` s.

ONNX stacks the gates as ``z, r, h`` (GRU) and ``i, o, f, c`` (LSTM), the description as
``r, z, n`` and ``i, f, g, o`` (torch's order); ``W`` / ``R`` / ``B`` hold every direction
(``[num_directions, ...]``), ``B`` the input biases then the recurrent ones.

GRU with ``linear_before_reset=1`` is torch's GRU (``"gru"``). With ``linear_before_reset=0``
(the ONNX default) the reset gate multiplies the state before the recurrent product,
``h~ = tanh(W_h x + Wb_h + R_h (r * h) + Rb_h)``: the ``"kaldi_gru"`` cell with candidate scale
1, every recurrent bias folded into the input bias (``Rb_h`` sits outside the product, so the
fold is exact).

Weight names: the initializer name of ``W`` / ``R`` (``.forward`` / ``.backward`` appended for
the two halves of a bidirectional node; ``.input`` / ``.recurrent`` for the two halves of ``B``),
so that BSPC files can be matched to them (the importer then replaces characters other than
letters, digits, ``_`` and ``.`` with ``_``: the compile path finds weights by such names).
"""

from __future__ import annotations

import numpy as np
import onnx

from tvm_bsp.frontend.model import RNNLayer
from tvm_bsp.frontend.onnx_values import Const, UnsupportedOnnxError, where

#: Rows of each description gate within the ONNX gate stack.
_ORDER = {"GRU": (1, 0, 2), "LSTM": (0, 2, 3, 1)}
_DEFAULT_ACTS = {"GRU": ["sigmoid", "tanh"], "LSTM": ["sigmoid", "tanh", "tanh"]}
_DIRECTIONS = {"forward": 1, "reverse": 1, "bidirectional": 2}


def attributes(node: onnx.NodeProto) -> dict:
    """The node's attributes as Python values (strings decoded)."""
    out = {}
    for a in node.attribute:
        v = onnx.helper.get_attribute_value(a)
        if isinstance(v, bytes):
            v = v.decode()
        elif isinstance(v, list):
            v = [x.decode() if isinstance(x, bytes) else x for x in v]
        out[a.name] = v
    return out


def check_attributes(node: onnx.NodeProto) -> tuple[str, int, int]:
    """Refuse what the description cannot express.

    Returns ``(direction, number of directions, linear_before_reset)``.
    """
    attrs = attributes(node)
    op = node.op_type
    direction = attrs.get("direction", "forward")
    if direction not in _DIRECTIONS:
        raise UnsupportedOnnxError(f"{where(node)}: unknown direction {direction!r}")
    nd = _DIRECTIONS[direction]
    acts = [a.lower() for a in attrs.get("activations", [])]
    if acts and acts != _DEFAULT_ACTS[op] * nd:
        raise UnsupportedOnnxError(
            f"{where(node)}: activations {attrs['activations']} are not supported; only the "
            f"defaults {_DEFAULT_ACTS[op]} per direction"
        )
    for name in ("clip", "activation_alpha", "activation_beta"):
        if name in attrs:
            raise UnsupportedOnnxError(f"{where(node)}: attribute '{name}' is not supported")
    if attrs.get("layout", 0) != 0:
        raise UnsupportedOnnxError(
            f"{where(node)}: layout={attrs['layout']} (batch-major) is not supported; export "
            "with layout=0 (a Transpose before the node is fine)"
        )
    if op == "LSTM" and attrs.get("input_forget", 0):
        raise UnsupportedOnnxError(
            f"{where(node)}: input_forget=1 (coupled input and forget gates) is not supported"
        )
    return direction, nd, int(attrs.get("linear_before_reset", 0))


def _reorder(stack: np.ndarray, op: str) -> np.ndarray:
    parts = np.split(stack, len(_ORDER[op]), axis=0)
    return np.concatenate([parts[i] for i in _ORDER[op]], axis=0)


def _const(value, node, what: str) -> Const:
    if not isinstance(value, Const):
        raise UnsupportedOnnxError(
            f"{where(node)}: input {what} must be an initializer or a constant, not a graph input"
        )
    return value


def rnn_layer(node: onnx.NodeProto, inputs: list, input_size: int) -> RNNLayer:
    """The description layer (with its backward half if bidirectional) of a GRU/LSTM node."""
    op = node.op_type
    direction, nd, lbr = check_attributes(node)
    W = _const(inputs[1], node, "W")
    R = _const(inputs[2], node, "R")
    B = _const(inputs[3], node, "B") if len(inputs) > 3 and inputs[3] is not None else None
    if op == "LSTM" and len(inputs) > 7 and inputs[7] is not None:
        raise UnsupportedOnnxError(f"{where(node)}: peephole weights (input P) are not supported")
    gates = len(_ORDER[op])
    w, r = np.asarray(W.value, np.float32), np.asarray(R.value, np.float32)
    if w.ndim != 3 or r.ndim != 3 or w.shape[0] != nd or r.shape[0] != nd:
        raise UnsupportedOnnxError(
            f"{where(node)}: W and R must be ({nd}, G*H, .), got {w.shape} and {r.shape}"
        )
    hidden = r.shape[2]
    hs = attributes(node).get("hidden_size", hidden)
    if hs != hidden or r.shape[1] != gates * hidden or w.shape[1] != gates * hidden:
        raise UnsupportedOnnxError(
            f"{where(node)}: hidden_size={hs} but W is {w.shape} and R is {r.shape}"
        )
    if w.shape[2] != input_size:
        raise UnsupportedOnnxError(
            f"{where(node)}: W reads {w.shape[2]} features, the input has {input_size}"
        )
    b = None if B is None else np.asarray(B.value, np.float32)
    if b is not None and b.shape != (nd, 2 * gates * hidden):
        raise UnsupportedOnnxError(
            f"{where(node)}: B must be ({nd}, {2 * gates * hidden}), got {b.shape}"
        )
    halves = []
    for d in range(nd):
        suffix = (".forward", ".backward")[d] if nd == 2 else ""
        names = {
            "weight_ih": f"{W.name or node.input[1]}{suffix}",
            "weight_hh": f"{R.name or node.input[2]}{suffix}",
        }
        bias_ih = bias_hh = None
        if b is not None:
            bias_ih = _reorder(b[d, : gates * hidden], op)
            bias_hh = _reorder(b[d, gates * hidden :], op)
            names["bias_ih"] = f"{B.name or node.input[3]}{suffix}.input"
            names["bias_hh"] = f"{B.name or node.input[3]}{suffix}.recurrent"
        cell = "lstm" if op == "LSTM" else ("gru" if lbr else "kaldi_gru")
        if cell == "kaldi_gru" and bias_hh is not None:
            bias_ih, bias_hh = bias_ih + bias_hh, None
            del names["bias_hh"]
        halves.append(
            dict(
                cell=cell,
                weight_ih=_reorder(w[d], op),
                weight_hh=_reorder(r[d], op),
                bias_ih=bias_ih,
                bias_hh=bias_hh,
                names=names,
                reverse=direction == "reverse" or d == 1,
            )
        )
    back = RNNLayer(**halves[1]) if nd == 2 else None
    return RNNLayer(**halves[0], backward=back)
