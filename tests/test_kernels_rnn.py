"""RNN kernels (tvm_bsp.kernels.rnn_*): sequence and linear kernels against numpy."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tvm

from tvm_bsp.bspc import BSPCMatrix
from tvm_bsp.kernels.layer_weights import LayerWeights
from tvm_bsp.kernels.rnn import cell_prim_func, linear_compute, linear_kernel, sequence_kernel
from tvm_bsp.kernels.rnn_knobs import RNNKnobs, default_knobs
from tvm_bsp.kernels.rnn_pack import bspc_row_range, bspc_scale_rows, pack_gate_tiles
from tvm_bsp.prune import bsp_mask
from tvm_bsp.runtime.session import configure_threads

TARGET = tvm.target.Target("llvm")
# Use every core before any kernel creates the (per-thread) pool, so the barrier-synchronized
# parallel time loops really run on several threads (TVM defaults to half the CPUs on x86).
configure_threads(os.cpu_count() or 1)


def _run(func, inputs, out_shapes):
    lib = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), TARGET)
    dev = tvm.cpu()
    args = [tvm.runtime.tensor(np.ascontiguousarray(a), dev) for a in inputs]
    outs = [tvm.runtime.empty(s, "float32", dev) for s in out_shapes]
    lib["main"](*args, *outs)
    return [o.numpy() for o in outs]


def _sig(v):
    return 1.0 / (1.0 + np.exp(-v))


def _reference(cell, xp, h0, c0, U, bhn, scale):
    H = h0.shape[1]
    h, c, ys = h0.astype(np.float64), None if c0 is None else c0.astype(np.float64), []
    for t in range(xp.shape[0]):
        if cell == "lstm":
            a = xp[t] + h @ U.T
            i, f, g, o = (a[:, k * H : (k + 1) * H] for k in range(4))
            c = _sig(f) * c + _sig(i) * np.tanh(g)
            h = _sig(o) * np.tanh(c)
        elif cell == "gru":
            a = h @ U.T
            r, z = _sig(xp[t, :, :H] + a[:, :H]), _sig(xp[t, :, H : 2 * H] + a[:, H : 2 * H])
            n = np.tanh(xp[t, :, 2 * H :] + r * (a[:, 2 * H :] + bhn))
            h = (1 - z) * n + z * h
        else:
            a = h @ U[: 2 * H].T
            r, z = _sig(xp[t, :, :H] + a[:, :H]), _sig(xp[t, :, H : 2 * H] + a[:, H:])
            n = scale * np.tanh(xp[t, :, 2 * H :] + (r * h) @ U[2 * H :].T)
            h = (1 - z) * n + z * h
        ys.append(h)
    return np.stack(ys), h, c


def _weights(rng, cell, H, sparse):
    G = 4 if cell == "lstm" else 3
    U = (rng.standard_normal((G * H, H)) / np.sqrt(H)).astype(np.float32)
    if not sparse:
        return U, U
    mask = bsp_mask(U, 2 * G, 3, 2.0, 1.5)
    U = U * mask
    return U, BSPCMatrix.from_dense(U, mask, 2 * G, 3)


@pytest.mark.parametrize("cell", ["gru", "kaldi_gru", "lstm"])
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "bspc"])
@pytest.mark.parametrize(
    "knobs",
    [
        RNNKnobs(lanes=8, threads=2, min_parallel_macs=0),
        RNNKnobs(lanes=16, threads=1),
        RNNKnobs(lanes=4, threads=2, min_parallel_macs=0, panel_order="grouped"),
        RNNKnobs(lanes=16, threads=1, k_split=1, panel_order="grouped"),
    ],
    ids=["parallel", "serial", "parallel-grouped", "serial-grouped"],
)
def test_sequence_kernel_matches_numpy(cell, sparse, knobs):
    rng = np.random.default_rng(7)
    H, T, B = 37, 6, 3
    U, weight = _weights(rng, cell, H, sparse)
    G = U.shape[0] // H
    bias_hh = rng.standard_normal(G * H).astype(np.float32)
    weights = LayerWeights(cell, weight, np.zeros(G * H, np.float32), bias_hh, 0.8, layer=1)
    kernel = sequence_kernel(weights, knobs)
    xp = rng.standard_normal((T, B, G * H)).astype(np.float32)
    state_shape = (2, 2, B, H) if cell == "lstm" else (2, B, H)
    state = rng.standard_normal(state_shape).astype(np.float32)  # the kernel reads state[1]
    h0 = state[1, 0] if cell == "lstm" else state[1]
    c0 = state[1, 1] if cell == "lstm" else None
    outs = _run(
        kernel.func,
        [xp + kernel.input_bias, state, *kernel.consts],
        [(T, B, H)] + [(B, H)] * (2 if cell == "lstm" else 1),
    )
    bhn = bias_hh[2 * H :] if cell == "gru" else None
    xp_ref = xp + (bias_hh if cell == "lstm" else 0)
    if cell == "gru":
        xp_ref = xp.copy()
        xp_ref[..., : 2 * H] += bias_hh[: 2 * H]
    y, h, c = _reference(cell, xp_ref, h0, c0, U, bhn, 0.8)
    np.testing.assert_allclose(outs[0], y, atol=2e-5)
    np.testing.assert_allclose(outs[1], h, atol=2e-5)
    if c is not None:
        np.testing.assert_allclose(outs[2], c, atol=2e-5)


@pytest.mark.parametrize(
    "sparse, order",
    [(False, "plain"), (True, "plain"), (True, "grouped")],
    ids=["dense", "bspc", "bspc-grouped"],
)
@pytest.mark.parametrize("activation", ["none", "relu", "tanh", "sigmoid"])
def test_linear_kernel_any_frame_count(sparse, order, activation):
    rng = np.random.default_rng(3)
    M, K = 45, 19
    W = rng.standard_normal((M, K)).astype(np.float32)
    if sparse:
        mask = bsp_mask(W, 5, 3, 2.0, 1.5)
        W = W * mask
        weight = BSPCMatrix.from_dense(W, mask, 5, 3)
    else:
        weight = W
    b = rng.standard_normal(M).astype(np.float32)
    knobs = RNNKnobs(
        lanes=16, frames=4, k_split=2, threads=2, min_parallel_macs=0, panel_order=order
    )
    func, consts, rows = linear_kernel(weight, b, knobs, activation)
    lib = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), TARGET)
    act = {
        "none": lambda v: v,
        "relu": lambda v: np.maximum(v, 0),
        "tanh": np.tanh,
        "sigmoid": _sig,
    }[activation]
    for n in (1, 4, 7):
        x = rng.standard_normal((n, K)).astype(np.float32)
        y = tvm.runtime.empty((n, rows), "float32")
        lib["main"](*(tvm.runtime.tensor(a) for a in [x, *consts]), y)
        np.testing.assert_allclose(y.numpy(), act(x @ W.T + b), atol=2e-5)


def test_gate_tiles_layout():
    w = np.arange(3 * 5 * 2, dtype=np.float32).reshape(15, 2)  # G=3, H=5, K=2
    tiles = pack_gate_tiles(w, 3, 4).reshape(2, 3, 2, 4)  # Q=2
    assert tiles[0, 1, 0, 2] == w[5 + 2, 0]
    assert tiles[1, 2, 1, 0] == w[10 + 4, 1]
    assert tiles[1, 0, 0, 1] == 0  # padded unit 5 of gate 0


def test_bspc_row_range_and_scale():
    rng = np.random.default_rng(0)
    W = rng.standard_normal((30, 12)).astype(np.float32)
    mask = bsp_mask(W, 6, 3, 2.0, 1.5)
    m = BSPCMatrix.from_dense(W * mask, mask, 6, 3)
    for lo, hi in [(0, 20), (20, 30), (3, 17)]:
        np.testing.assert_array_equal(bspc_row_range(m, lo, hi).to_dense(), (W * mask)[lo:hi])
    s = rng.uniform(0.5, 2, 30).astype(np.float32)
    np.testing.assert_allclose(bspc_scale_rows(m, s).to_dense(), (W * mask) * s[:, None])


def test_knobs_validation_and_defaults():
    from tvm_bsp.frontend.model import CELL_GATES as FRONTEND_GATES
    from tvm_bsp.kernels.rnn_knobs import CELL_GATES

    assert CELL_GATES == FRONTEND_GATES
    with pytest.raises(ValueError, match="lanes"):
        RNNKnobs(lanes=0)
    with pytest.raises(ValueError, match="unknown"):
        RNNKnobs().updated({"lane": 3})
    arm = default_knobs(tvm.target.Target({"kind": "llvm", "mtriple": "aarch64-linux-gnu"}))
    assert arm.lanes == 8 and arm.threads == 4
    with pytest.raises(NotImplementedError):
        default_knobs(tvm.target.Target({"kind": "opencl"}))


@pytest.mark.parametrize("cell", ["gru", "kaldi_gru", "lstm"])
def test_sequence_step_matches_te_cell(cell):
    """The time-loop template at T=1 computes what the TE cell definition says."""
    rng = np.random.default_rng(11)
    H, B = 21, 2
    G = 4 if cell == "lstm" else 3
    U = (rng.standard_normal((G * H, H)) / np.sqrt(H)).astype(np.float32)
    b_hh = rng.standard_normal(G * H).astype(np.float32)
    xp = rng.standard_normal((B, G * H)).astype(np.float32)
    state = rng.standard_normal((1, 2, B, H) if cell == "lstm" else (1, B, H)).astype(np.float32)
    weights = LayerWeights(cell, U, np.zeros(G * H, np.float32), b_hh, 0.8)
    kernel = sequence_kernel(weights, RNNKnobs(lanes=8))
    outs = _run(
        kernel.func,
        [(xp + kernel.input_bias)[None], state, *kernel.consts],
        [(1, B, H)] + [(B, H)] * (2 if cell == "lstm" else 1),
    )
    te_inputs = [xp + kernel.input_bias]
    te_inputs += [state[0, 0], state[0, 1]] if cell == "lstm" else [state[0]]
    te_inputs += [U] + ([b_hh[2 * H :]] if cell == "gru" else [])
    te_outs = _run(
        cell_prim_func(cell, B, H, 0.8), te_inputs, [(B, H)] * (2 if cell == "lstm" else 1)
    )
    np.testing.assert_allclose(outs[1], te_outs[0], atol=2e-6)
    if cell == "lstm":
        np.testing.assert_allclose(outs[2], te_outs[1], atol=2e-6)


def test_linear_template_matches_te_compute():
    from tvm import te

    rng = np.random.default_rng(12)
    M, K, N = 30, 11, 5
    W = rng.standard_normal((M, K)).astype(np.float32)
    b = rng.standard_normal(M).astype(np.float32)
    x = rng.standard_normal((N, K)).astype(np.float32)
    xs, ws, bs = (te.placeholder(s, "float32", name=n) for s, n in
                  (((N, K), "x"), ((M, K), "w"), ((M,), "b")))  # fmt: skip
    ref = _run(te.create_prim_func([xs, ws, bs, linear_compute(xs, ws, bs)]), [x, W, b], [(N, M)])
    func, consts, _ = linear_kernel(W, b, RNNKnobs(lanes=8, frames=2))
    (got,) = _run(func, [x, *consts], [(N, M)])
    np.testing.assert_allclose(got, ref[0], atol=2e-5)


def test_fast_activations_accuracy():
    from tvm.script import tirx as T

    from tvm_bsp.kernels.fast_math import fast_exp, fast_sigmoid, fast_tanh

    n = 4096

    @T.prim_func
    def acts(x: T.Buffer((n,), "float32"), y: T.Buffer((3, n), "float32")):
        for o in range(n // 16):
            for i in T.vectorized(16):
                y[0, o * 16 + i] = fast_sigmoid(x[o * 16 + i])
                y[1, o * 16 + i] = fast_tanh(x[o * 16 + i])
                y[2, o * 16 + i] = fast_exp(x[o * 16 + i] * T.float32(0.1))

    x = np.concatenate([np.linspace(-30, 30, n - 6), [0, 1e-6, -1e-6, 100, -100, 88]])
    x = x.astype(np.float32)
    (y,) = _run(acts, [x], [(3, n)])
    np.testing.assert_allclose(y[0], 1 / (1 + np.exp(-x.astype(np.float64))), atol=3e-7)
    np.testing.assert_allclose(y[1], np.tanh(x.astype(np.float64)), atol=3e-7)
    np.testing.assert_allclose(y[2], np.exp(0.1 * x.astype(np.float64)), rtol=3e-7)
