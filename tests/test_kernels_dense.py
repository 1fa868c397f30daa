"""Dense kernels (the CPU mat-mat kernel with a dense weight) on the host against numpy, and
the TE dense compute."""

import numpy as np
import pytest
import tvm

from tvm_bsp.kernels import (
    all_configs,
    build_dense,
    dense_compute,
    dense_prim_func,
    dense_template,
    numpy_epilogue,
    to_prim_func,
)
from tvm_bsp.kernels.rnn_pack import pack_row_panels, pad_rows


def _check(kernel, weight, batch, activation=None, bias=None):
    x = np.random.default_rng(1).standard_normal((batch, weight.shape[1])).astype(np.float32)
    want = numpy_epilogue(x.astype(np.float64) @ weight.T.astype(np.float64), bias, activation)
    np.testing.assert_allclose(kernel(x), want, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("M, N", [(64, 32), (50, 39), (3, 7), (1, 1), (100, 1), (33, 129)])
@pytest.mark.parametrize("batch", [1, 5])
def test_dense_default_config(M, N, batch):
    weight = np.random.default_rng(0).standard_normal((M, N)).astype(np.float32)
    _check(build_dense(M, N, batch, weight=weight), weight, batch)


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh"])
def test_dense_epilogue(activation):
    weight = np.random.default_rng(2).standard_normal((40, 24)).astype(np.float32)
    bias = np.linspace(-3, 3, 40).astype(np.float32)
    kernel = build_dense(40, 24, 2, epilogue=activation, bias=bias, weight=weight)
    _check(kernel, weight, 2, activation, bias)


def _config_sample(batch, count):
    configs = list(all_configs(dense_template().knobs(batch)))
    return [configs[i] for i in np.random.default_rng(3).choice(len(configs), count, False)]


@pytest.mark.parametrize("config", _config_sample(4, 12), ids=str)
def test_dense_knob_sample(config):
    weight = np.random.default_rng(4).standard_normal((70, 30)).astype(np.float32)
    _check(build_dense(70, 30, 4, config=config, weight=weight), weight, 4)


@pytest.mark.slow
@pytest.mark.parametrize("config", _config_sample(4, 150), ids=str)
def test_dense_many_knob_configs(config):
    weight = np.random.default_rng(4).standard_normal((70, 30)).astype(np.float32)
    _check(build_dense(70, 30, 4, config=config, weight=weight), weight, 4)


def test_reference_size_dense():
    weight = np.random.default_rng(5).standard_normal((3072, 1024)).astype(np.float32)
    _check(build_dense(3072, 1024, 1, weight=weight), weight, 1)


def test_te_dense_compute():
    weight = np.random.default_rng(6).standard_normal((20, 13)).astype(np.float32)
    bias = np.arange(20, dtype=np.float32) / 20
    inputs, out = dense_compute(20, 13, 3, "tanh")
    ex = tvm.compile(tvm.IRModule({"te_dense": to_prim_func(inputs, out, "te_dense")}), "llvm")
    x = np.random.default_rng(7).standard_normal((3, 13)).astype(np.float32)
    dev = tvm.cpu()
    args = [tvm.runtime.tensor(a, dev) for a in (x, weight, bias, np.zeros((3, 20), np.float32))]
    ex["te_dense"](*args)
    want = numpy_epilogue(x @ weight.T, bias, "tanh")
    np.testing.assert_allclose(args[-1].numpy(), want, rtol=1e-5, atol=1e-6)


def test_dense_spec_and_errors():
    weight = np.arange(32, dtype=np.float32).reshape(8, 4)
    bias = np.arange(8, dtype=np.float32)
    func, arrays, names = dense_prim_func(weight, 2, {"lanes": 4}, None, bias)
    assert [p.name for p in func.params] == list(names) == ["x", "w", "bias", "y"]
    assert set(arrays) == {"w", "bias"}
    np.testing.assert_array_equal(arrays["w"], pack_row_panels(weight, 4))
    np.testing.assert_array_equal(arrays["bias"], pad_rows(bias, 8, 4))
    with pytest.raises(ValueError, match="weight"):
        build_dense(8, 4, 1, weight=np.ones((4, 8), np.float32))
    with pytest.raises(ValueError, match="2-D"):
        dense_prim_func(np.ones(3, np.float32))
    with pytest.raises(ValueError, match="bias"):
        build_dense(8, 4, 1, bias=np.ones(4, np.float32))
    with pytest.raises(ValueError, match="unknown knobs"):
        dense_prim_func(weight, 1, {"panel_rows": 8})
