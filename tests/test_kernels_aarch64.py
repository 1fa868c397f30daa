"""Cross-compiled aarch64 kernels executed under qemu-user with the aarch64 TVM runtime."""

import numpy as np
import pytest

from tvm_bsp.bspc import BSPCMatrix
from tvm_bsp.devices.aarch64 import require_arm64, run_arm64_function
from tvm_bsp.kernels import DENSE_ENTRY, SPMM_ENTRY, build_dense, build_spmm, numpy_epilogue
from tvm_bsp.prune import bsp_mask

pytestmark = pytest.mark.aarch64


def _problem(M, N, rb, cb, seed=0):
    weight = np.random.default_rng(seed).standard_normal((M, N)).astype(np.float32)
    mask = bsp_mask(weight, rb, cb, 3, 2)
    return BSPCMatrix.from_dense(weight, mask, rb, cb), np.where(mask, weight, 0)


@pytest.mark.parametrize(
    "batch, config, activation",
    [
        (1, {}, "sigmoid"),
        (4, {"lanes": 8, "k_split": 4, "frames": 2}, "tanh"),
        (3, {"lanes": 4, "frames": 2, "threads": 2, "min_parallel_macs": 0}, "relu"),
    ],
)
def test_spmm_runs_on_arm64(batch, config, activation, tmp_path):
    require_arm64()
    matrix, dense = _problem(100, 39, 10, 4)
    bias = np.linspace(-1, 1, 100).astype(np.float32)
    kernel = build_spmm(matrix, batch, "arm64", config, activation, bias)
    so = kernel.export(tmp_path / "spmm.so")
    x = np.random.default_rng(1).standard_normal((batch, 39)).astype(np.float32)
    (got,) = run_arm64_function(so, SPMM_ENTRY, kernel.inputs(x), [kernel.out_shape])
    want = numpy_epilogue(x.astype(np.float64) @ dense.T, bias, activation)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_dense_runs_on_arm64(tmp_path):
    require_arm64()
    weight = np.random.default_rng(2).standard_normal((50, 33)).astype(np.float32)
    kernel = build_dense(50, 33, 2, "arm64", weight=weight)
    so = kernel.export(tmp_path / "dense.so")
    x = np.random.default_rng(3).standard_normal((2, 33)).astype(np.float32)
    (got,) = run_arm64_function(so, DENSE_ENTRY, kernel.inputs(x), [(2, 50)])
    np.testing.assert_allclose(got, x @ weight.T, rtol=1e-5, atol=1e-5)
