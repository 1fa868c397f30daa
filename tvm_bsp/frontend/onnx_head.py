"""Head layers of the ONNX importer: ``MatMul`` (+ ``Add``), ``Gemm`` and activations.

:class:`HeadOps` is a mixin of the importer's graph walk (:mod:`.onnx_import`), which provides
``consume``, ``new``, ``layers``, ``head``, ``opset`` and ``last_dense``.
"""

from __future__ import annotations

import numpy as np

from tvm_bsp.frontend.model import Activation, DenseLayer
from tvm_bsp.frontend.onnx_values import Const, Dim, Seq, UnsupportedOnnxError, where

ACTS = {"Relu": "relu", "Tanh": "tanh", "Sigmoid": "sigmoid"}
SOFTMAX = {"Softmax": "softmax", "LogSoftmax": "log_softmax"}


class HeadOps:
    """Handlers of the head: dense layers and activations over each frame's features."""

    def _head_seq(self, value, node) -> Seq:
        if not self.layers:
            raise UnsupportedOnnxError(f"{where(node)}: only layout glue may precede the first "
                                       "recurrent node")  # fmt: skip
        seq = self.consume(value, node)
        return seq

    def op_MatMul(self, node, ins):
        seq = self._head_seq(ins[0], node)
        w = ins[1]
        if not isinstance(w, Const) or np.ndim(w.value) != 2 or seq.labels[-1] != "F":
            raise UnsupportedOnnxError(
                f"{where(node)}: a head MatMul must multiply the features of {seq} by a "
                "constant 2-D matrix"
            )
        return [self._dense(seq, np.asarray(w.value).T, None, {"weight": w.name or node.input[1]},
                            node)]  # fmt: skip

    def op_Gemm(self, node, ins):
        seq = self._head_seq(ins[0], node)
        attrs = {a.name: (a.f if a.type == a.FLOAT else a.i) for a in node.attribute}
        if attrs.get("transA", 0) or len(seq.axes) != 2 or not isinstance(ins[1], Const):
            raise UnsupportedOnnxError(
                f"{where(node)}: a head Gemm must read a 2-D sequence {seq} (no transA) "
                "and a constant B"
            )
        b = np.asarray(ins[1].value, np.float32)
        weight = (b if attrs.get("transB", 0) else b.T) * attrs.get("alpha", 1.0)
        names = {"weight": ins[1].name or node.input[1]}
        bias = None
        if len(ins) > 2 and ins[2] is not None:
            c = self._bias(ins[2], weight.shape[0], node) * attrs.get("beta", 1.0)
            bias, names["bias"] = c, ins[2].name or node.input[2]
        return [self._dense(seq, weight, bias, names, node)]

    def _dense(self, seq: Seq, weight, bias, names, node) -> Seq:
        if weight.shape[1] != seq.width:
            raise UnsupportedOnnxError(
                f"{where(node)}: the weight reads {weight.shape[1]} features, {seq} has {seq.width}"
            )
        self.head.append(DenseLayer(weight, bias, names))
        out = self.new((*seq.axes[:-1], ("F", Dim(int(weight.shape[0])))))
        self.last_dense = out.id
        return out

    def _bias(self, value, width: int, node) -> np.ndarray:
        c = np.asarray(value.value, np.float32)
        if c.size == 1:
            return np.full(width, float(c.reshape(-1)[0]), np.float32)
        if c.shape[-1] != width or c.size != width:
            raise UnsupportedOnnxError(
                f"{where(node)}: a bias of shape {c.shape} for {width} features"
            )
        return c.reshape(width)

    def op_Add(self, node, ins):
        seq_at = [i for i, v in enumerate(ins) if isinstance(v, Seq)]
        if len(seq_at) != 1 or not isinstance(ins[1 - seq_at[0]], Const):
            raise UnsupportedOnnxError(f"{where(node)}: Add of a sequence and a constant only")
        seq = ins[seq_at[0]]
        const = ins[1 - seq_at[0]]
        if seq.id != self.last_dense or not self.head or not isinstance(self.head[-1], DenseLayer):
            raise UnsupportedOnnxError(
                f"{where(node)}: an Add (bias) must directly follow a head MatMul/Gemm"
            )
        if np.ndim(const.value) > len(seq.axes):
            raise UnsupportedOnnxError(f"{where(node)}: the bias broadcasts to more axes")
        self._head_seq(seq, node)
        dense = self.head[-1]
        c = self._bias(const, dense.weight.shape[0], node)
        dense.bias = c if dense.bias is None else dense.bias + c
        dense.names.setdefault("bias", const.name or node.input[1 - seq_at[0]])
        out = self.new(seq.axes)
        self.last_dense = out.id
        return [out]

    def op_activation(self, node, ins):
        seq = self._head_seq(ins[0], node)
        op = node.op_type
        if op in SOFTMAX:
            default = -1 if self.opset >= 13 else 1
            axis = next((a.i for a in node.attribute if a.name == "axis"), default)
            if axis % len(seq.axes) != len(seq.axes) - 1 or seq.labels[-1] != "F":
                raise UnsupportedOnnxError(
                    f"{where(node)}: {op} over axis {axis} of {seq}; only over the features"
                )
        self.head.append(Activation(SOFTMAX.get(op) or ACTS[op]))
        return [self.new(seq.axes)]
