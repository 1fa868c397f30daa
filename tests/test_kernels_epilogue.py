"""Fused epilogues: the vectorizable activations against numpy."""

import numpy as np
import pytest
import tvm
from tvm.script import tirx as T

from tvm_bsp.kernels.epilogue import check_activation, fast_activation, numpy_epilogue

N = 4096


def _run(activation: str, x: np.ndarray) -> np.ndarray:
    act = fast_activation(activation)

    @T.prim_func
    def apply(a: T.Buffer((N,), "float32"), b: T.Buffer((N,), "float32")):
        for o in range(N // 16):
            for i in T.vectorized(16):
                b[o * 16 + i] = act(a[o * 16 + i])

    ex = tvm.compile(tvm.IRModule({"main": apply}), target="llvm")
    dev = tvm.cpu()
    out = tvm.runtime.tensor(np.zeros(N, np.float32), dev)
    ex["main"](tvm.runtime.tensor(x, dev), out)
    return out.numpy()


def _inputs() -> np.ndarray:
    rng = np.random.default_rng(0)
    wide = np.linspace(-120, 120, N // 2)
    small = rng.standard_normal(N // 2) * np.logspace(-9, 1, N // 2)
    return np.concatenate([wide, small]).astype(np.float32)


@pytest.mark.parametrize("activation", ["sigmoid", "tanh"])
def test_fast_activation_matches_numpy(activation):
    x = _inputs()
    got = _run(activation, x).astype(np.float64)
    x64 = x.astype(np.float64)
    want = 1 / (1 + np.exp(-x64)) if activation == "sigmoid" else np.tanh(x64)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    assert np.isfinite(got).all()


def test_none_is_identity_and_relu_clamps():
    x = _inputs()
    np.testing.assert_array_equal(_run("none", x), x)
    np.testing.assert_array_equal(_run("relu", x), np.maximum(x, 0))


def test_numpy_epilogue_and_names():
    y = np.array([[0.0, 1.0]], np.float32)
    np.testing.assert_allclose(numpy_epilogue(y, np.array([1.0, -1.0]), "tanh"), [[np.tanh(1), 0]])
    np.testing.assert_allclose(numpy_epilogue(y, None, "sigmoid"), [[0.5, 1 / (1 + np.exp(-1))]])
    np.testing.assert_allclose(numpy_epilogue(y, np.array([-1.0, 0.5]), "relu"), [[0, 1.5]])
    assert check_activation(None) == "none"
    with pytest.raises(ValueError, match="activation"):
        check_activation("gelu")
