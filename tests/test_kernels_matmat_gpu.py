"""The OpenCL mat-mat kernel (``gpu_panel_linear``, what ``compile_model`` ships) through
``build_spmm`` / ``build_dense``: device code is generated, and it computes the right values on
POCL (``opencl`` marker)."""

import numpy as np
import pytest

from tvm_bsp.bspc import BSPCMatrix
from tvm_bsp.kernels import (
    build_dense,
    build_spmm,
    dense_prim_func,
    numpy_epilogue,
    resolve_target,
    spmm_prim_func,
    spmm_template,
)
from tvm_bsp.kernels.opencl.knobs import default_gpu_rnn_knobs
from tvm_bsp.prune import bsp_mask
from tvm_bsp.testing.opencl import opencl_available, run_opencl_prim_func


def _problem(M=70, N=39, rb=7, cb=4, seed=0):
    weight = np.random.default_rng(seed).standard_normal((M, N)).astype(np.float32)
    mask = bsp_mask(weight, rb, cb, 3, 2)
    return BSPCMatrix.from_dense(weight, mask, rb, cb), np.where(mask, weight, 0)


@pytest.mark.parametrize("device", ["opencl-mali", "opencl-adreno"])
def test_device_module_is_generated(device, tmp_path):
    matrix, _ = _problem()
    kernel = build_spmm(matrix, 2, device, epilogue="sigmoid")
    source = kernel.inspect_source("cl")
    assert "__kernel" in source and "__local" in source and "barrier" in source
    assert kernel.export(tmp_path / "spmm.so").stat().st_size > 0
    dense = build_dense(70, 39, 2, device)
    assert "__kernel" in dense.inspect_source("cl")


@pytest.mark.parametrize("device", ["mali", "adreno"])
def test_gpu_knobs_are_the_device_defaults_and_fit_local_memory(device):
    target = resolve_target(f"opencl-{device}")
    template = spmm_template(target)
    for batch in (1, 32):
        knobs = {k.name: k for k in template.knobs(batch)}
        assert set(knobs) == {"panel_rows", "chunk", "frames", "exact"}
        base = default_gpu_rnn_knobs(target)
        assert template.kernel_knobs(template.config(batch)) == base
        for chunk in knobs["chunk"].choices:  # the staged x[:, cols] of a work-group
            assert max(knobs["frames"].choices) * chunk * 4 <= 16384
    with pytest.raises(ValueError, match="unknown knobs"):
        template.config(1, {"lanes": 8})  # a CPU knob


needs_opencl = pytest.mark.skipif(not opencl_available(), reason="no OpenCL device (POCL)")


def _run(spec, target, x, out_shape):
    args = [x, *(spec.arrays[n] for n in spec.arg_names[1:-1]), np.zeros(out_shape, np.float32)]
    return run_opencl_prim_func(spec.func, target, args)[0]


@pytest.mark.opencl
@needs_opencl
@pytest.mark.parametrize(
    "batch, config, activation",
    [
        (1, {}, None),
        (1, {"panel_rows": 16, "chunk": 16, "exact": False}, "tanh"),
        (4, {"frames": 2, "chunk": 32}, "sigmoid"),
        (3, {"panel_rows": 64, "frames": 8, "chunk": 128}, "relu"),
    ],
)
def test_spmm_on_pocl(batch, config, activation):
    matrix, dense = _problem()
    bias = np.linspace(-1, 1, 70).astype(np.float32)
    target = resolve_target("opencl-mali", host="host")
    spec = spmm_prim_func(matrix, batch, config, activation, bias, target)
    x = np.random.default_rng(1).standard_normal((batch, 39)).astype(np.float32)
    got = _run(spec, target, x, (batch, 70))
    want = numpy_epilogue(x.astype(np.float64) @ dense.T, bias, activation)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.opencl
@needs_opencl
def test_spmm_empty_matrix_on_pocl():
    matrix = BSPCMatrix.from_dense(np.zeros((20, 9), np.float32), np.zeros((20, 9), bool), 2, 3)
    target = resolve_target("opencl-mali", host="host")
    spec = spmm_prim_func(matrix, 2, None, "sigmoid", None, target)
    got = _run(spec, target, np.ones((2, 9), np.float32), (2, 20))
    np.testing.assert_allclose(got, 0.5, rtol=1e-6)


@pytest.mark.opencl
@needs_opencl
@pytest.mark.parametrize(
    "batch, config", [(1, {}), (3, {"panel_rows": 16, "chunk": 16, "frames": 2})]
)
def test_dense_on_pocl(batch, config):
    weight = np.random.default_rng(2).standard_normal((45, 37)).astype(np.float32)
    target = resolve_target("opencl-adreno", host="host")
    spec = dense_prim_func(weight, batch, config, "tanh", None, target)
    x = np.random.default_rng(3).standard_normal((batch, 37)).astype(np.float32)
    got = _run(spec, target, x, (batch, 45))
    np.testing.assert_allclose(got, np.tanh(x @ weight.T), rtol=1e-5, atol=1e-5)
