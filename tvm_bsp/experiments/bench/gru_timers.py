"""Per-frame latency of each implementation of the GRU benchmark
(:mod:`tvm_bsp.experiments.bench.gru`):
our compiled builds, ``torch.nn.GRU`` and ONNX Runtime's GRU, plus the accuracy check of our
builds against torch.

Every timer measures two modes: ``stream`` (one call per frame, state fed back) and
``utterance`` (one call over ``T`` frames, divided by ``T``), each the median of repeated runs
(:func:`median_time`). The model's sizes are read from the ``torch.nn.GRU`` itself
(``input_size``, ``hidden_size``, ``num_layers``); inputs are batch 1. torch, TVM and ONNX
Runtime are imported inside the functions.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

    from tvm_bsp.compiler.model import CompiledModel

__all__ = [
    "check",
    "median_time",
    "onnx_gru_model",
    "time_onnxruntime",
    "time_torch",
    "time_tvm",
]


def median_time(fn: Callable[[], object], repeat: int, warmup: int = 1) -> float:
    """Median wall-clock seconds of ``fn()`` over ``repeat`` runs after ``warmup`` runs.

    Parameters
    ----------
    fn : callable
        The work to time, called without arguments.
    repeat : int
        Timed runs.
    warmup : int
        Untimed runs first (caches, lazy initialisation, thread pools).

    Returns
    -------
    float
        The median duration in seconds.
    """
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def time_tvm(
    cm: CompiledModel, model: torch.nn.GRU, T: int, repeat: int, threads: int
) -> dict[str, float]:
    """Per-frame latency of a compiled model with ``threads`` TVM threads.

    Parameters
    ----------
    cm : tvm_bsp.CompiledModel
        A model compiled with :func:`tvm_bsp.compile_model` (its VM has ``forward`` and
        ``step``).
    model : torch.nn.GRU
        The model it was compiled from (for the sizes).
    T : int
        Frames of the utterance.
    repeat : int
        Timed runs of the utterance (the stream mode runs ``max(3, repeat // 2)`` times).
    threads : int
        TVM runtime threads during the measurement.

    Returns
    -------
    dict of str to float
        ``{"stream": us/frame, "utterance": us/frame}``. The stream mode calls the fused
        step kernel without the VM when the module has one (CPU targets), as
        :meth:`tvm_bsp.runtime.Session.push` does, else the VM's ``step``.
    """
    import tvm

    from tvm_bsp.runtime.session import configure_threads

    inputs, layers, hidden = model.input_size, model.num_layers, model.hidden_size
    vm = cm.session.vm
    configure_threads(threads)
    rng = np.random.default_rng(1)
    x = tvm.runtime.tensor(rng.standard_normal((T, 1, inputs)).astype(np.float32))
    frames = [tvm.runtime.tensor(f) for f in rng.standard_normal((T, 1, inputs)).astype(np.float32)]
    state0 = tvm.runtime.tensor(np.zeros((layers, 1, hidden), np.float32))
    forward, step = vm["forward"], vm["step"]
    kernel = cm.session.kernel_step()  # the fused step kernel, as Session.push calls it

    def stream() -> None:
        if kernel is not None:
            ring.reset()
            for frame in frames:
                ring.advance(frame)
            return
        state = state0
        for frame in frames:
            _, state = step(frame, state)

    if kernel is not None:
        ring = kernel.ring(cm.session.state_shape(1), (1, int(cm.session.meta["output_size"])))

    utt = median_time(lambda: forward(x, state0), repeat)
    strm = median_time(stream, max(3, repeat // 2))
    return {"stream": strm / T * 1e6, "utterance": utt / T * 1e6}


def check(cm: CompiledModel, model: torch.nn.GRU, T: int) -> float:
    """Max abs difference of the compiled model from torch on a random utterance.

    Parameters
    ----------
    cm : tvm_bsp.CompiledModel
        The compiled model.
    model : torch.nn.GRU
        The model it was compiled from.
    T : int
        Frames of the utterance.

    Returns
    -------
    float
        ``max |cm.forward(x) - model(x)|`` over the outputs, and the same of the frames
        streamed one by one through ``Session.push`` (the fused step kernel).
    """
    import torch

    x = np.random.default_rng(2).standard_normal((T, 1, model.input_size)).astype(np.float32)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # no spinning OpenMP workers left behind to slow TVM's threads
    try:
        with torch.no_grad():
            ref = model(torch.from_numpy(x))[0].numpy()
    finally:
        torch.set_num_threads(threads)
    session = cm.session
    session.reset()
    streamed = np.stack([session.push(frame) for frame in x])
    session.reset()
    return float(max(np.abs(cm.forward(x)[0] - ref).max(), np.abs(streamed - ref).max()))


def time_torch(model: torch.nn.GRU, T: int, repeat: int, threads: int) -> dict[str, float]:
    """Per-frame latency of ``torch.nn.GRU`` with ``threads`` intra-op threads.

    Parameters
    ----------
    model : torch.nn.GRU
        The model (sequence-first, batch 1).
    T : int
        Frames of the utterance.
    repeat : int
        Timed runs of the utterance (the stream mode runs ``max(3, repeat // 2)`` times).
    threads : int
        torch's intra-op threads during the measurement (restored afterwards).

    Returns
    -------
    dict of str to float
        ``{"stream": us/frame, "utterance": us/frame}``.
    """
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        rng = np.random.default_rng(1)
        x = torch.from_numpy(rng.standard_normal((T, 1, model.input_size)).astype(np.float32))
        h0 = torch.zeros(model.num_layers, 1, model.hidden_size)
        frames = [x[t : t + 1] for t in range(T)]

        def stream() -> None:
            h = h0
            for frame in frames:
                _, h = model(frame, h)

        with torch.no_grad():
            utt = median_time(lambda: model(x, h0), repeat)
            strm = median_time(stream, max(3, repeat // 2))
    finally:
        torch.set_num_threads(old)
    return {"stream": strm / T * 1e6, "utterance": utt / T * 1e6}


def onnx_gru_model(model: torch.nn.GRU, path: Path) -> str:
    """Write an ONNX model of ``model``.

    Parameters
    ----------
    model : torch.nn.GRU
        The model to export.
    path : pathlib.Path
        Where the ``.onnx`` file goes.

    Returns
    -------
    str
        How it was made: ``"torch.onnx.export"`` when the exporter works, else
        ``"onnx.helper"`` (one ONNX ``GRU`` node per layer, built by hand).
    """
    import torch

    x = torch.zeros(5, 1, model.input_size)
    h0 = torch.zeros(model.num_layers, 1, model.hidden_size)
    try:
        torch.onnx.export(
            model,
            (x, h0),
            str(path),
            input_names=["x", "h0"],
            output_names=["y", "hn"],
            dynamic_axes={"x": {0: "T"}, "y": {0: "T"}},
            dynamo=False,
        )
        return "torch.onnx.export"
    except Exception:  # the exporter needs onnxscript (not installed) or fails otherwise
        pass
    _onnx_helper_gru(model, path)
    return "onnx.helper"


def _onnx_helper_gru(model: torch.nn.GRU, path: Path) -> None:
    """One ONNX GRU node per layer (``linear_before_reset=1`` = torch's GRU), chained."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    H, layers = model.hidden_size, model.num_layers
    nodes, inits = [], []
    seq = "x"
    for k in range(layers):
        p = {
            n: getattr(model, f"{n}_l{k}").detach().numpy()
            for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        }

        def zrh(a: np.ndarray) -> np.ndarray:  # torch stacks r, z, n; ONNX z, r, h
            return np.concatenate([a[H : 2 * H], a[:H], a[2 * H :]])

        inits += [
            numpy_helper.from_array(zrh(p["weight_ih"])[None], f"W{k}"),
            numpy_helper.from_array(zrh(p["weight_hh"])[None], f"R{k}"),
            numpy_helper.from_array(
                np.concatenate([zrh(p["bias_ih"]), zrh(p["bias_hh"])])[None], f"B{k}"
            ),
            numpy_helper.from_array(np.array([k], np.int64), f"idx{k}"),
        ]
        nodes += [
            helper.make_node("Gather", ["h0", f"idx{k}"], [f"h0_{k}"], axis=0),
            helper.make_node(
                "GRU",
                [seq, f"W{k}", f"R{k}", f"B{k}", "", f"h0_{k}"],
                [f"y{k}", f"hn{k}"],
                hidden_size=H,
                linear_before_reset=1,
            ),
            helper.make_node("Squeeze", [f"y{k}", "axis1"], [f"s{k}"]),
        ]
        seq = f"s{k}"
    inits.append(numpy_helper.from_array(np.array([1], np.int64), "axis1"))
    nodes.append(helper.make_node("Concat", [f"hn{k}" for k in range(layers)], ["hn"], axis=0))
    graph = helper.make_graph(
        nodes,
        "gru",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["T", 1, model.input_size]),
            helper.make_tensor_value_info("h0", TensorProto.FLOAT, [layers, 1, H]),
        ],
        [
            helper.make_tensor_value_info(seq, TensorProto.FLOAT, ["T", 1, H]),
            helper.make_tensor_value_info("hn", TensorProto.FLOAT, [layers, 1, H]),
        ],
        inits,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def time_onnxruntime(
    model: torch.nn.GRU, T: int, repeat: int, threads: int
) -> tuple[dict[str, float], str]:
    """Per-frame latency of ONNX Runtime on the exported model.

    Parameters
    ----------
    model : torch.nn.GRU
        The model, exported with :func:`onnx_gru_model`.
    T : int
        Frames of the utterance.
    repeat : int
        Timed runs of the utterance (the stream mode runs ``max(3, repeat // 2)`` times).
    threads : int
        ONNX Runtime's intra-op threads (one inter-op thread, no spinning).

    Returns
    -------
    (dict of str to float, str)
        ``{"stream": us/frame, "utterance": us/frame}`` and how the model was exported.

    Raises
    ------
    RuntimeError
        If ONNX Runtime's output differs from torch's by more than 1e-4.
    """
    import onnxruntime as ort
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "gru.onnx"
        how = onnx_gru_model(model, path)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    out, hn = (o.name for o in sess.get_outputs()[:2])
    rng = np.random.default_rng(1)
    x = rng.standard_normal((T, 1, model.input_size)).astype(np.float32)
    h0 = np.zeros((model.num_layers, 1, model.hidden_size), np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x), torch.from_numpy(h0))[0].numpy()
    got = sess.run([out], dict(zip(names, (x, h0), strict=True)))[0].reshape(ref.shape)
    if not np.allclose(got, ref, atol=1e-4):
        raise RuntimeError(f"ONNX Runtime GRU ({how}) disagrees with torch")
    frames = [x[t : t + 1] for t in range(T)]

    def stream() -> None:
        h = h0
        for frame in frames:
            _, h = sess.run([out, hn], {names[0]: frame, names[1]: h})

    utt = median_time(lambda: sess.run([out], {names[0]: x, names[1]: h0}), repeat)
    strm = median_time(stream, max(3, repeat // 2))
    return {"stream": strm / T * 1e6, "utterance": utt / T * 1e6}, how
