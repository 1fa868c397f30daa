"""The CPU mat-mat kernel as a template: every knob config is numerically right; the code is
vector code; its defaults are the ones ``compile_model`` takes."""

import numpy as np
import pytest
from tvm.target import codegen

from tvm_bsp.bspc import BSPCMatrix
from tvm_bsp.kernels import all_configs, build_spmm, resolve_target, spmm_prim_func, spmm_template
from tvm_bsp.kernels.rnn_knobs import default_knobs, suggest_lanes
from tvm_bsp.prune import PAPER_SPLITS, bsp_mask

BATCH = 4


def _problem():
    weight = np.random.default_rng(0).standard_normal((45, 39)).astype(np.float32)
    mask = bsp_mask(weight, 5, 4, 2, 2)
    return BSPCMatrix.from_dense(weight, mask, 5, 4), np.where(mask, weight, 0)


MATRIX, DENSE = _problem()
X = np.random.default_rng(1).standard_normal((BATCH, 39)).astype(np.float32)


def _configs(count):
    """``count`` configs: a seeded random sample that contains every value of every knob."""
    knobs = spmm_template(resolve_target("host")).knobs(BATCH, MATRIX)
    configs = list(all_configs(knobs))
    rng = np.random.default_rng(2)
    picked = [configs[i] for i in rng.choice(len(configs), count, replace=False)]
    for i, knob in enumerate(knobs):  # make sure each value of each knob appears
        for j, value in enumerate(knob.choices):
            if all(c[knob.name] != value for c in picked):
                picked[(i * 7 + j) % count] = {**picked[(i * 7 + j) % count], knob.name: value}
    return picked


def _check(config):
    kernel = build_spmm(MATRIX, BATCH, config=config, epilogue="tanh", bias=np.ones(45, np.float32))
    want = np.tanh(X.astype(np.float64) @ DENSE.T + 1)
    np.testing.assert_allclose(kernel(X), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("config", _configs(40), ids=str)
def test_knob_config_sample(config):
    _check(config)


@pytest.mark.slow
@pytest.mark.parametrize("config", _configs(300), ids=str)
def test_knob_config_large_sample(config):
    _check(config)


def test_sample_covers_every_knob_value():
    knobs = spmm_template(resolve_target("host")).knobs(BATCH, MATRIX)
    sample = _configs(40)
    for knob in knobs:
        assert {c[knob.name] for c in sample} == set(knob.choices), knob.name


def test_inner_loop_is_vector_fma():
    weight = np.random.default_rng(3).standard_normal((64, 64)).astype(np.float32)
    matrix = BSPCMatrix.from_dense(weight, bsp_mask(weight, 2, 4, 2, 1), 2, 4)
    asm = build_spmm(matrix, 1, config={"lanes": 16}).inspect_source("asm")
    host = resolve_target("host")
    if codegen.llvm_cpu_has_features("avx512f", host):
        assert "vfmadd231ps\t(" in asm or "{1to16}, %zmm" in asm
        assert "zmm" in asm
    elif codegen.llvm_cpu_has_features("avx2", host):
        assert "ymm" in asm and "vfmadd" in asm


def test_arm64_code_uses_neon_fma():
    weight = np.random.default_rng(4).standard_normal((64, 64)).astype(np.float32)
    matrix = BSPCMatrix.from_dense(weight, bsp_mask(weight, 2, 4, 2, 1), 2, 4)
    kernel = build_spmm(matrix, 1, target="arm64")
    assert "fmla\tv" in kernel.inspect_source("asm")
    assert not kernel.runnable


def test_parallel_loop_only_with_several_threads_and_enough_work():
    def script(**config):
        return spmm_prim_func(MATRIX, 1, config).func.script()

    assert "T.parallel" not in script(threads=1, min_parallel_macs=0)
    assert "T.parallel(2)" in script(threads=2, min_parallel_macs=0)
    assert MATRIX.nnz < 50_000  # fewer multiply-adds per frame than the threshold: one thread
    assert "T.parallel" not in script(threads=2, min_parallel_macs=50_000)


def test_defaults_are_those_compile_model_takes():
    """Untuned, a BSPC weight gets the target's knobs and the lanes its row stripes suggest."""
    host = resolve_target("host")
    weight = np.random.default_rng(5).standard_normal((3072, 1024)).astype(np.float32)
    for rate in (10, 301):
        mask = bsp_mask(weight, 96, 16, *PAPER_SPLITS[rate])
        matrix = BSPCMatrix.from_dense(weight, mask, 96, 16)
        config = spmm_template(host).config(32, None, matrix)
        want = default_knobs(host).updated({"lanes": suggest_lanes([matrix], host)})
        assert spmm_template(host).kernel_knobs(config) == want
    one = spmm_template(host).knobs(1, MATRIX)
    assert {k.name: k.choices for k in one}["frames"] == (default_knobs(host).frames,)
