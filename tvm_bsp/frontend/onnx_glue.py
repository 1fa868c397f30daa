"""Layout glue of the ONNX importer: ``Transpose``, ``Squeeze``, ``Reshape``, shapes, slices.

:class:`GlueOps` is a mixin of the importer's graph walk (:mod:`.onnx_import`), which provides
``seq``, ``consume``, ``new``, ``seq_id`` and ``rename``; values are those of
:mod:`.onnx_values`.
"""

from __future__ import annotations

import numpy as np

from tvm_bsp.frontend.onnx_values import (
    Const,
    Dim,
    Input,
    ShapeVec,
    StateIn,
    StateOut,
    UnsupportedOnnxError,
    Zeros,
    ints,
    reshape_dims,
    reshape_seq,
    where,
)


class GlueOps:
    """Handlers ``op_<OpType>(node, inputs) -> outputs`` of the layout glue."""

    def op_Identity(self, node, ins):
        return [ins[0]]

    def op_Cast(self, node, ins):
        if isinstance(ins[0], ShapeVec):
            return [ins[0]]
        from onnx import TensorProto

        to = next((a.i for a in node.attribute if a.name == "to"), None)
        if to != TensorProto.FLOAT:
            raise UnsupportedOnnxError(f"{where(node)}: a cast of the sequence to type {to}")
        return [self.new(self.consume(ins[0], node).axes)]

    def op_Transpose(self, node, ins):
        seq = self.consume(ins[0], node)
        perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
        perm = list(range(len(seq.axes)))[::-1] if perm is None else perm
        return [self.new(tuple(seq.axes[p] for p in perm))]

    def _axes(self, node, ins, rank: int) -> list[int]:
        if len(ins) > 1 and ins[1] is not None:
            axes = ints(ins[1], node, "axes")
        else:
            axes = next((list(a.ints) for a in node.attribute if a.name == "axes"), None)
            if axes is None:
                raise UnsupportedOnnxError(f"{where(node)}: needs explicit axes")
        return sorted(a % rank for a in axes)

    def op_Squeeze(self, node, ins):
        if isinstance(ins[0], ShapeVec) and len(ins[0].dims) == 1:
            return [ShapeVec(ins[0].dims, scalar=True)]
        seq = self.consume(ins[0], node)
        axes = self._axes(node, ins, len(seq.axes))
        for a in axes:
            label, size = seq.axes[a]
            if size != Dim(1) or label not in ("1", "D"):
                raise UnsupportedOnnxError(f"{where(node)}: cannot squeeze axis {a} of {seq}")
        return [self.new(ax for i, ax in enumerate(seq.axes) if i not in axes)]

    def op_Unsqueeze(self, node, ins):
        if isinstance(ins[0], ShapeVec) and ins[0].scalar:
            return [ShapeVec(ins[0].dims)]
        seq = self.consume(ins[0], node)
        axes = self._axes(node, ins, len(seq.axes) + 1)
        out = list(seq.axes)
        for a in axes:
            out.insert(a, ("1", Dim(1)))
        return [self.new(out)]

    def op_Reshape(self, node, ins):
        seq = self.consume(ins[0], node)
        if isinstance(ins[1], ShapeVec):
            target = [
                d.coeff
                if d.static and d.coeff <= 0
                else Dim(d.coeff, tuple(sorted(self.rename.get(s, s) for s in d.syms)))
                for d in ins[1].dims
            ]
        else:
            target = ints(ins[1], node, "the target shape")
        dims = reshape_dims(seq.axes, target, node)
        return [reshape_seq(seq, dims, node, self.seq_id)]

    def op_Shape(self, node, ins):
        seq = self.seq(ins[0], node)
        dims = tuple(d for _, d in seq.axes)
        attrs = {a.name: a.i for a in node.attribute}
        return [ShapeVec(dims[attrs.get("start", 0) : attrs.get("end", len(dims))])]

    def op_Gather(self, node, ins):
        if not isinstance(ins[0], ShapeVec):
            raise UnsupportedOnnxError(f"{where(node)}: Gather is supported on shapes only")
        idx = np.asarray(ins[1].value) if isinstance(ins[1], Const) else None
        if idx is None or idx.ndim > 1:
            raise UnsupportedOnnxError(f"{where(node)}: Gather needs constant indices")
        picked = tuple(ins[0].dims[int(i)] for i in idx.reshape(-1))
        return [ShapeVec(picked, scalar=idx.ndim == 0)]

    def op_Concat(self, node, ins):
        ins = [v for v in ins if v is not None]
        if all(isinstance(v, StateOut) for v in ins):
            kinds = {v.kind for v in ins}
            axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
            if len(kinds) != 1 or axis not in (0, -3):
                raise UnsupportedOnnxError(f"{where(node)}: final states join on axis 0 only")
            return [StateOut(kinds.pop(), tuple(s for v in ins for s in v.slots))]
        if all(isinstance(v, ShapeVec | Const) for v in ins):
            dims: list[Dim] = []
            for v in ins:
                if isinstance(v, ShapeVec):
                    dims.extend(v.dims)
                else:  # 0 and -1 stay special for Reshape
                    dims.extend(Dim(i) for i in ints(v, node, "a shape part"))
            return [ShapeVec(tuple(dims))]
        raise UnsupportedOnnxError(f"{where(node)}: Concat of sequences is not supported")

    def op_ConstantOfShape(self, node, ins):
        from onnx import numpy_helper

        value = next((a.t for a in node.attribute if a.name == "value"), None)
        if value is not None and np.any(numpy_helper.to_array(value)):
            raise UnsupportedOnnxError(f"{where(node)}: only zeros of a symbolic shape")
        if not isinstance(ins[0], ShapeVec):
            raise UnsupportedOnnxError(f"{where(node)}: the shape must be a shape vector")
        return [Zeros(ins[0].dims)]

    def op_Slice(self, node, ins):
        src = ins[0]
        if isinstance(src, Zeros):
            starts, ends = ints(ins[1], node, "starts"), ints(ins[2], node, "ends")
            axes = ints(ins[3], node, "axes") if len(ins) > 3 and ins[3] is not None else [0]
            dims = list(src.dims)
            if axes == [0] and dims and dims[0].static:
                n = dims[0].coeff
                dims[0] = Dim(len(range(*slice(starts[0], ends[0]).indices(n))))
            return [Zeros(tuple(dims))]
        if isinstance(src, Input):
            src = StateIn(src.name, 0, src.shape[0] if src.shape else None)
        if not isinstance(src, StateIn):
            raise UnsupportedOnnxError(f"{where(node)}: Slice is supported on state inputs only")
        starts, ends = ints(ins[1], node, "starts"), ints(ins[2], node, "ends")
        axes = ints(ins[3], node, "axes") if len(ins) > 3 and ins[3] is not None else [0]
        steps = ints(ins[4], node, "steps") if len(ins) > 4 and ins[4] is not None else [1]
        if axes != [0] or steps != [1] or starts[0] < 0 or ends[0] < 0:
            raise UnsupportedOnnxError(f"{where(node)}: only forward slices of axis 0")
        stop = ends[0] if src.stop is None else min(ends[0] + src.start, src.stop)
        return [StateIn(src.input, src.start + starts[0], stop)]
