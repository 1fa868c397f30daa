"""ONNX test graphs written to the spec with ``onnx.helper`` (random weights), and runners."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def _init(inits: list, name: str, value: np.ndarray) -> str:
    inits.append(numpy_helper.from_array(np.asarray(value), name))
    return name


def zero_blocks(w: np.ndarray, rng: np.random.Generator, grid=(3, 2), keep=0.5) -> np.ndarray:
    """Zero whole blocks of a 2-D weight (a BSP-like pattern)."""
    out = w.copy()
    rows = np.array_split(np.arange(w.shape[0]), grid[0])
    cols = np.array_split(np.arange(w.shape[1]), grid[1])
    for r in rows:
        for c in cols:
            if rng.random() > keep:
                out[np.ix_(r, c)] = 0
    return out


def rnn_graph(
    op: str = "GRU",
    layers: int = 1,
    direction: str = "forward",
    lbr: int = 1,
    bias: bool = True,
    init_state: bool = True,
    head: str | None = "matmul",
    final: str | None = "LogSoftmax",
    sizes: tuple[int, int, int] = (6, 5, 4),
    seed: int = 0,
    sparse: bool = False,
    extra: dict | None = None,
) -> onnx.ModelProto:
    """``x (T, B, I)`` -> ``layers`` GRU/LSTM nodes -> head -> ``y``, final states ``hn`` (``cn``).

    ``head``: ``"matmul"`` (MatMul + Add, Relu, MatMul + Add), ``"gemm"`` (Reshape to 2-D,
    Gemm, Tanh, Gemm, Reshape back through Shape/Gather/Concat) or None. ``extra`` holds
    attributes added to every recurrent node.
    """
    rng = np.random.default_rng(seed)
    I, H, O = sizes
    nd = 2 if direction == "bidirectional" else 1
    G = 3 if op == "GRU" else 4
    inits: list = []
    nodes: list = []
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["T", "B", I])]
    states = ["h0"] + (["c0"] if op == "LSTM" else [])
    if init_state:
        for s in states:
            inputs.append(
                helper.make_tensor_value_info(s, TensorProto.FLOAT, [layers * nd, "B", H])
            )
    seq, width, finals = "x", I, {s: [] for s in states}
    for k in range(layers):

        def w(shape, k=k):
            a = (0.4 * rng.standard_normal(shape)).astype(np.float32)
            if sparse:
                a = np.stack([zero_blocks(m, rng) for m in a])
            return a

        W = _init(inits, f"W{k}", w((nd, G * H, width)))
        R = _init(inits, f"R{k}", w((nd, G * H, H)))
        Bn = _init(inits, f"B{k}", (0.3 * rng.standard_normal((nd, 2 * G * H))).astype(np.float32))
        ins = [seq, W, R, Bn if bias else "", ""]
        if init_state:
            starts = _init(inits, f"st{k}", np.array([k * nd], np.int64))
            ends = _init(inits, f"en{k}", np.array([(k + 1) * nd], np.int64))
            for s in states:
                nodes.append(helper.make_node("Slice", [s, starts, ends], [f"{s}_{k}"]))
                ins.append(f"{s}_{k}")
        outs = [f"Y{k}", f"Yh{k}"] + ([f"Yc{k}"] if op == "LSTM" else [])
        attrs = {"hidden_size": H, "direction": direction, **(extra or {})}
        if op == "GRU":
            attrs["linear_before_reset"] = lbr
        nodes.append(helper.make_node(op, ins, outs, name=f"rnn{k}", **attrs))
        for s, o in zip(states, outs[1:], strict=True):
            finals[s].append(o)
        if nd == 1:
            ax = _init(inits, f"ax{k}", np.array([1], np.int64))
            nodes.append(helper.make_node("Squeeze", [f"Y{k}", ax], [f"S{k}"]))
        else:
            shape = _init(inits, f"shape{k}", np.array([0, 0, -1], np.int64))
            nodes.append(helper.make_node("Transpose", [f"Y{k}"], [f"P{k}"], perm=[0, 2, 1, 3]))
            nodes.append(helper.make_node("Reshape", [f"P{k}", shape], [f"S{k}"]))
        seq, width = f"S{k}", nd * H
    if head == "matmul":
        w1 = _init(inits, "head.0.weight", rng.standard_normal((width, 7)).astype(np.float32) * 0.5)
        b1 = _init(inits, "head.0.bias", rng.standard_normal(7).astype(np.float32) * 0.1)
        w2 = _init(inits, "head.2.weight", rng.standard_normal((7, O)).astype(np.float32) * 0.5)
        b2 = _init(inits, "head.2.bias", rng.standard_normal((1, 1, O)).astype(np.float32) * 0.1)
        nodes += [
            helper.make_node("MatMul", [seq, w1], ["m1"]),
            helper.make_node("Add", [b1, "m1"], ["a1"]),
            helper.make_node("Relu", ["a1"], ["r1"]),
            helper.make_node("MatMul", ["r1", w2], ["m2"]),
            helper.make_node("Add", ["m2", b2], ["a2"]),
        ]
        seq = "a2"
    elif head == "gemm":
        flat = _init(inits, "flat", np.array([-1, width], np.int64))
        last = _init(inits, "last", np.array([-1], np.int64))
        i0 = _init(inits, "i0", np.array(0, np.int64))
        i1 = _init(inits, "i1", np.array(1, np.int64))
        u0 = _init(inits, "u0", np.array([0], np.int64))
        g1 = _init(inits, "g1.weight", rng.standard_normal((7, width)).astype(np.float32) * 0.5)
        c1 = _init(inits, "g1.bias", rng.standard_normal(7).astype(np.float32) * 0.1)
        g2 = _init(inits, "g2.weight", rng.standard_normal((7, O)).astype(np.float32) * 0.5)
        c2 = _init(inits, "g2.bias", rng.standard_normal((1, O)).astype(np.float32) * 0.1)
        nodes += [
            helper.make_node("Shape", [seq], ["shp"]),
            helper.make_node("Gather", ["shp", i0], ["t"]),
            helper.make_node("Gather", ["shp", i1], ["b"]),
            helper.make_node("Unsqueeze", ["t", u0], ["tu"]),
            helper.make_node("Unsqueeze", ["b", u0], ["bu"]),
            helper.make_node("Concat", ["tu", "bu", last], ["back"], axis=0),
            helper.make_node("Reshape", [seq, flat], ["f"]),
            helper.make_node("Gemm", ["f", g1, c1], ["q1"], transB=1, alpha=0.5, beta=2.0),
            helper.make_node("Tanh", ["q1"], ["t1"]),
            helper.make_node("Gemm", ["t1", g2, c2], ["q2"]),
            helper.make_node("Reshape", ["q2", "back"], ["a2"]),
        ]
        seq = "a2"
    if final:
        nodes.append(helper.make_node(final, [seq], ["y"], axis=-1))
    else:
        nodes.append(helper.make_node("Identity", [seq], ["y"]))
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    for s, outs in finals.items():
        name = s.replace("0", "n")
        nodes.append(helper.make_node("Concat", outs, [name], axis=0))
        outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    graph = helper.make_graph(nodes, "rnn", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 9

    return model


def feeds_for(model: onnx.ModelProto, T: int, B: int, seed: int = 1) -> dict[str, np.ndarray]:
    """Random feeds for every graph input (``T`` / ``B`` for symbolic dims)."""
    rng = np.random.default_rng(seed)
    out = {}
    for inp in model.graph.input:
        dims = inp.type.tensor_type.shape.dim
        shape = [d.dim_value if d.HasField("dim_value") else {"T": T, "B": B}[d.dim_param]
                 for d in dims]  # fmt: skip
        scale = 1.0 if inp.name == "x" else 0.5
        out[inp.name] = (scale * rng.standard_normal(shape)).astype(np.float32)
    return out


def run_ort(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every graph output computed by onnxruntime."""
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, feeds), strict=True))
