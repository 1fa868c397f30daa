"""BSPC kernels on the host: the shipped CPU mat-mat kernel and the TE compute against numpy."""

import numpy as np
import pytest
import tvm
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import bsp_problems

from tvm_bsp.bspc import BSPCMatrix
from tvm_bsp.kernels import (
    bspc_spmm_compute,
    build_spmm,
    compile_spec,
    numpy_epilogue,
    pack_panels,
    spmm_prim_func,
    spmm_template,
    to_prim_func,
)
from tvm_bsp.kernels.cpu.rnn import linear_kernel
from tvm_bsp.prune import PAPER_SPLITS, bsp_mask, bsp_mask_at_rate

RTOL, ATOL = 1e-5, 1e-5


def _problem(M, N, rb, cb, col_rate, row_rate, seed=0):
    rng = np.random.default_rng(seed)
    weight = rng.standard_normal((M, N)).astype(np.float32)
    mask = bsp_mask(weight, rb, cb, col_rate, row_rate)
    return BSPCMatrix.from_dense(weight, mask, rb, cb), np.where(mask, weight, 0)


def _check(kernel, dense, batch, activation=None, bias=None, seed=1):
    x = np.random.default_rng(seed).standard_normal((batch, dense.shape[1])).astype(np.float32)
    want = numpy_epilogue(x.astype(np.float64) @ dense.T.astype(np.float64), bias, activation)
    np.testing.assert_allclose(kernel(x), want, rtol=RTOL, atol=ATOL)


_RANDOM_CASE = given(
    problem=bsp_problems(max_dim=48),
    batch=st.sampled_from([1, 2, 3, 4, 8]),
    activation=st.sampled_from([None, "relu", "sigmoid", "tanh"]),
    with_bias=st.booleans(),
    data=st.data(),
)


@settings(max_examples=30)
@_RANDOM_CASE
def test_random_problems_and_configs(problem, batch, activation, with_bias, data):
    _random_case(problem, batch, activation, with_bias, data)


@pytest.mark.slow
@settings(max_examples=300)
@_RANDOM_CASE
def test_random_problems_and_configs_many(problem, batch, activation, with_bias, data):
    _random_case(problem, batch, activation, with_bias, data)


def _random_case(problem, batch, activation, with_bias, data):
    weight, rb, cb, col_rate, row_rate = problem
    mask = bsp_mask(weight, rb, cb, col_rate, row_rate)
    matrix = BSPCMatrix.from_dense(weight, mask, rb, cb)
    knobs = spmm_template().knobs(batch, matrix)
    config = {k.name: data.draw(st.sampled_from(k.choices), label=k.name) for k in knobs}
    bias = np.linspace(-2, 2, weight.shape[0]).astype(np.float32) if with_bias else None
    kernel = build_spmm(matrix, batch, config=config, epilogue=activation, bias=bias)
    _check(kernel, np.where(mask, weight, 0), batch, activation, bias)


@pytest.mark.parametrize(
    "M, N, rb, cb, col_rate, row_rate",
    [
        (48, 39, 4, 4, 2, 1),  # 39 columns into 4 stripes (9, 9, 9, 12)
        (39, 39, 4, 4, 3, 2),  # non-divisible rows too: 9, 9, 9, 12
        (64, 40, 2, 8, 8, 4),  # many empty blocks
        (70, 33, 7, 3, 1, 1),  # dense
        (1, 1, 1, 1, 1, 1),
        (5, 200, 1, 13, 4, 1),
        (200, 5, 13, 1, 1, 4),
    ],
)
@pytest.mark.parametrize("batch", [1, 3])
def test_edge_shapes_default_config(M, N, rb, cb, col_rate, row_rate, batch):
    matrix, dense = _problem(M, N, rb, cb, col_rate, row_rate)
    _check(build_spmm(matrix, batch), dense, batch)
    if batch > 1:  # one 2-frame tile and a frame alone
        _check(build_spmm(matrix, batch, config={"frames": 2, "lanes": 4}), dense, batch)


def test_empty_rows_get_the_epilogue_of_the_bias():
    weight = np.random.default_rng(5).standard_normal((24, 16)).astype(np.float32)
    mask = np.zeros_like(weight, bool)
    mask[0:3, 0:4] = True  # one block keeps 3 rows; every other row is empty
    matrix = BSPCMatrix.from_dense(weight, mask, 3, 4)
    bias = np.arange(24, dtype=np.float32) / 10
    kernel = build_spmm(matrix, 2, epilogue="sigmoid", bias=bias)
    _check(kernel, np.where(mask, weight, 0), 2, "sigmoid", bias)


@pytest.mark.parametrize("batch", [1, 4])
def test_fully_empty_matrix(batch):
    matrix = BSPCMatrix.from_dense(np.zeros((20, 9), np.float32), np.zeros((20, 9), bool), 2, 3)
    bias = np.full(20, 0.5, np.float32)
    kernel = build_spmm(matrix, batch, epilogue="tanh", bias=bias)
    _check(kernel, np.zeros((20, 9), np.float32), batch, "tanh", bias)


def test_single_frame_accepts_a_vector_and_checks_shapes():
    matrix, dense = _problem(30, 20, 3, 2, 2, 1)
    kernel = build_spmm(matrix, 1)
    x = np.arange(20, dtype=np.float32)
    y = kernel(x)
    assert y.shape == (30,)
    np.testing.assert_allclose(y, dense @ x, rtol=RTOL, atol=1e-4)
    with pytest.raises(ValueError, match="shape"):
        kernel(np.ones(21, np.float32))
    batched = build_spmm(matrix, 2)
    with pytest.raises(ValueError, match="shape"):
        batched(np.ones((3, 20), np.float32))


@pytest.mark.parametrize("rate", [10, 301])
@pytest.mark.parametrize(
    "batch, config",
    [(1, {}), (32, {}), (32, {"lanes": 32, "frames": 4, "threads": 2, "min_parallel_macs": 0})],
)
def test_reference_gru_matrix(rate, batch, config):
    weight = np.random.default_rng(6).standard_normal((3072, 1024)).astype(np.float32)
    mask = bsp_mask(weight, 96, 16, PAPER_SPLITS[rate][0], PAPER_SPLITS[rate][1])
    matrix = BSPCMatrix.from_dense(weight, mask, 96, 16)
    kernel = build_spmm(matrix, batch, config=config)
    _check(kernel, np.where(mask, weight, 0), batch)


def test_the_kernel_is_the_one_compile_model_ships_for_any_frame_count():
    """``spmm_prim_func`` returns the lowering's mat-mat kernel (same knobs, same PrimFunc,
    same packed arrays); compiled once, it serves any number of frames."""
    matrix, dense = _problem(40, 24, 4, 3, 2, 2)
    bias = np.linspace(-1, 1, 40).astype(np.float32)
    config = {"lanes": 4, "frames": 2, "k_split": 2, "threads": 2, "min_parallel_macs": 0}
    spec = spmm_prim_func(matrix, 5, config, "tanh", bias)
    knobs = spmm_template().kernel_knobs(spmm_template().config(5, config, matrix))
    func, consts, rows = linear_kernel(matrix, bias, knobs, "tanh")
    strip = ("global_symbol", "tvm_bsp.config")
    ours = spec.func
    for attr in strip:
        ours = ours.without_attr(attr)
    tvm.ir.assert_structural_equal(ours, func.without_attr("global_symbol"))
    assert rows == 40 and len(consts) == len(spec.arrays)
    for got, want in zip((spec.arrays[n] for n in spec.arg_names[1:-1]), consts, strict=True):
        np.testing.assert_array_equal(got, want)
    assert bool(spec.func.attrs["tvm_bsp.parallel"])
    entry = compile_spec(spec, "host").jit()[str(spec.func.attrs["global_symbol"])]
    rng = np.random.default_rng(2)
    for n in (1, 3, 6):
        x = rng.standard_normal((n, 24)).astype(np.float32)
        args = [x, *(spec.arrays[k] for k in spec.arg_names[1:-1]), np.zeros((n, 40), np.float32)]
        tensors = [tvm.runtime.tensor(a) for a in args]
        entry(*tensors)
        want = np.tanh(x.astype(np.float64) @ dense.T + bias)
        np.testing.assert_allclose(tensors[-1].numpy(), want, rtol=RTOL, atol=ATOL)


def test_input_matrix_3072x39():
    weight = np.random.default_rng(7).standard_normal((3072, 39)).astype(np.float32)
    mask = bsp_mask_at_rate(weight, 96, 4, 43, 16)
    matrix = BSPCMatrix.from_dense(weight, mask, 96, 4)
    _check(build_spmm(matrix, 1, epilogue="sigmoid"), np.where(mask, weight, 0), 1, "sigmoid")


@pytest.mark.parametrize("activation", [None, "sigmoid", "tanh"])
def test_te_compute_matches_scheduled_kernel(activation):
    matrix, dense = _problem(45, 39, 5, 4, 3, 2, seed=8)
    bias = np.random.default_rng(9).standard_normal(45).astype(np.float32)
    batch = 3
    config = spmm_template().config(batch, {"lanes": 8, "k_split": 2}, matrix)
    layout = pack_panels(matrix, 8, 2, config["threads"], "natural", bias)
    inputs, out = bspc_spmm_compute(layout, batch, activation)
    func = to_prim_func(inputs, out, "te_spmm")
    ex = tvm.compile(tvm.IRModule({"te_spmm": func}), target="llvm")
    x = np.random.default_rng(10).standard_normal((batch, 39)).astype(np.float32)
    dev = tvm.cpu()
    args = [tvm.runtime.tensor(x, dev)]
    args += [tvm.runtime.tensor(layout.arrays[t.op.name], dev) for t in inputs[1:]]
    args.append(tvm.runtime.tensor(np.zeros((batch, 45), np.float32), dev))
    ex["te_spmm"](*args)
    te_y = args[-1].numpy()
    np.testing.assert_allclose(te_y, numpy_epilogue(x @ dense.T, bias, activation), 1e-5, 1e-5)
    kernel = build_spmm(matrix, batch, config=config, epilogue=activation, bias=bias)
    np.testing.assert_allclose(kernel(x), te_y, rtol=1e-5, atol=1e-5)


def test_prim_func_spec_contract():
    matrix, _ = _problem(40, 24, 4, 3, 2, 2)
    func, arrays, names = spmm_prim_func(matrix, 2, {"lanes": 8}, "tanh")
    assert names[0] == "x" and names[-1] == "y"
    assert [p.name for p in func.params] == list(names)
    assert set(arrays) == set(names[1:-1])
    assert all(isinstance(a, np.ndarray) for a in arrays.values())
    assert int(func.attrs["tvm_bsp.config"]["lanes"]) == 8
    assert arrays["vals"].size == arrays["cols"].size * 8


def test_unknown_knob_and_bad_batch_are_rejected():
    matrix, _ = _problem(10, 10, 2, 2, 1, 1)
    with pytest.raises(ValueError, match="unknown knobs"):
        spmm_prim_func(matrix, 1, {"panel_rows": 8})  # a knob of the former template
    with pytest.raises(ValueError, match="not one of"):
        spmm_prim_func(matrix, 1, {"lanes": 5})
    tile = spmm_template().config(1, None, matrix)["frames"]
    with pytest.raises(ValueError, match="not one of"):  # one frame: the tile has one choice
        spmm_prim_func(matrix, 1, {"frames": 1 if tile != 1 else 2})
    with pytest.raises(ValueError, match="batch"):
        spmm_prim_func(matrix, 0)
    with pytest.raises(ValueError, match="activation"):
        spmm_prim_func(matrix, 1, epilogue="gelu")
    with pytest.raises(ValueError, match="bias"):
        spmm_prim_func(matrix, 1, bias=np.ones(9, np.float32))
    with pytest.raises(ValueError, match="NaN"):
        spmm_prim_func(matrix, 1, bias=np.full(10, np.nan, np.float32))
