"""int8 BSPC: quantization bound, exact int32 products, the product's error bound, bad arrays,
npz round trip."""

from __future__ import annotations

import pickle
from dataclasses import replace

import numpy as np
import pytest

from tvm_bsp.bspc import (
    BSPCFormatError,
    BSPCMatrix,
    QuantizedBSPC,
    choose_granularity,
    int8_error_bound,
    int8_matmat,
    int8_matvec,
    load_quantized_bspc,
    quantize_activations,
    quantize_bspc,
    save_bspc,
    save_quantized_bspc,
)
from tvm_bsp.bspc.quant_ops import accumulator_bound, int8_accumulate
from tvm_bsp.prune import bsp_mask

GRANULARITIES = ("row", "block_row")


def _bsp(M: int = 96, N: int = 80, rb: int = 8, cb: int = 4, seed: int = 0) -> BSPCMatrix:
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((M, N)) * rng.uniform(0.1, 2.0, (M, 1))).astype(np.float32)
    return BSPCMatrix.from_dense(w, bsp_mask(w, rb, cb, 3, 2), rb, cb)


@pytest.fixture(scope="module")
def matrix() -> BSPCMatrix:
    return _bsp()


def _group_of_values(m: BSPCMatrix, granularity: str) -> np.ndarray:
    """Independent recount: the scale group (row, or rows-entry) of every value in block order."""
    groups = []
    for b in range(m.nblocks):
        rows, cols, _ = m.block(b)
        start = int(m.block_row_ptr[b])
        for i, r in enumerate(rows):
            groups += [r if granularity == "row" else start + i] * cols.size
    return np.asarray(groups, np.int64)


@pytest.mark.parametrize("granularity", GRANULARITIES)
def test_round_trip_is_within_half_a_scale(matrix, granularity):
    q = quantize_bspc(matrix, granularity)
    assert q.values.dtype == np.int8 and q.scales.dtype == np.float32
    assert np.abs(q.values.astype(int)).max() == 127
    group = _group_of_values(matrix, granularity)
    s = q.scales.astype(np.float64)[group]
    w = matrix.values.astype(np.float64)
    # the largest magnitude of each group is the one that maps to +-127
    amax = np.zeros(q.scales.size)
    np.maximum.at(amax, group, np.abs(w))
    live = amax > 0
    np.testing.assert_allclose(q.scales[live], amax[live] / 127, rtol=2**-23)
    assert (q.scales[~live] == 1).all()  # rows (or block rows) that store nothing
    exact = np.abs(w - s * q.values)
    assert (exact <= s / 2 * (1 + 1e-9)).all()
    deq = q.dequantize()  # float32 values: at most half an ulp of w more
    assert (np.abs(w - deq.values) <= s / 2 * (1 + 1e-9) + np.abs(w) * 2**-24).all()
    for name in ("block_row_ptr", "rows", "block_col_ptr", "cols", "reorder"):
        np.testing.assert_array_equal(getattr(deq, name), getattr(matrix, name))
    assert not (q.to_dense() != 0)[matrix.to_dense() == 0].any()  # nothing outside the pattern


def _with_outliers(m: BSPCMatrix) -> BSPCMatrix:
    """``m`` with the first stored value of every row made 30 times larger."""
    r, c, _ = m.to_coo()
    w = m.to_dense()
    first = np.unique(r, return_index=True)[1]
    w[r[first], c[first]] *= 30
    return BSPCMatrix.from_dense(w, m.to_dense() != 0, m.row_blocks, m.col_blocks)


def test_auto_granularity_follows_the_measured_error():
    m = _bsp(seed=1)
    assert choose_granularity(m)[0] == "row"  # rows of one magnitude: per-row scales suffice
    assert quantize_bspc(m).granularity == "row"
    # one outlier per row: a per-row scale coarsens all 16 blocks of the row, a block-row
    # scale only the outlier's block (block rows of about 13 values)
    skewed = _with_outliers(_bsp(M=64, N=640, rb=8, cb=16, seed=1))
    choice, errors = choose_granularity(skewed)
    assert choice == "block_row" and errors["block_row"] < 0.5 * errors["row"]
    assert quantize_bspc(skewed).granularity == "block_row"
    # the same outliers in block rows of about 3 values: scales would outweigh the values
    choice, errors = choose_granularity(_with_outliers(_bsp(M=64, N=160, rb=8, cb=16, seed=1)))
    assert choice == "row" and set(errors) == {"row"}
    with pytest.raises(ValueError, match="granularity must be"):
        quantize_bspc(m, "column")
    with pytest.raises(TypeError, match="expected a BSPCMatrix"):
        quantize_bspc(m.to_dense())


def test_activation_quantization_rules():
    rng = np.random.default_rng(2)
    h = np.tanh(rng.standard_normal((50, 3)) * 2).astype(np.float32)
    hq, hs = quantize_activations(h, "state")
    np.testing.assert_array_equal(hs, np.float32(1 / 127))
    np.testing.assert_array_equal(hq, np.rint(h.astype(np.float64) * 127))
    x = (rng.standard_normal((50, 4)) * [1, 10, 0.01, 0]).astype(np.float32)
    xq, xs = quantize_activations(x, "input")
    amax = np.abs(x).max(axis=0)
    np.testing.assert_allclose(xs[:3], amax[:3] / 127, rtol=2**-23)
    assert xs[3] == 1 and not xq[:, 3].any()  # an all-zero frame (padding)
    assert (np.abs(xq[:, :3]).max(axis=0) == 127).all()
    err = np.abs(x - xs * xq.astype(np.float32))
    assert (err <= xs / 2 * (1 + 1e-6)).all()
    with pytest.raises(ValueError, match="activation kind"):
        quantize_activations(x, "weights")
    with pytest.raises(ValueError, match="non-finite"):
        quantize_activations(np.array([1.0, np.nan]), "input")


@pytest.mark.parametrize("granularity", GRANULARITIES)
def test_int32_accumulators_equal_an_independent_float64_product(matrix, granularity):
    q = quantize_bspc(matrix, granularity)
    rng = np.random.default_rng(3)
    xq = rng.integers(-127, 128, (matrix.shape[1], 5)).astype(np.int8)
    acc = int8_accumulate(q, xq)
    assert acc.dtype == np.int32
    # independent: dense float64 matrix of the integers, scattered from the COO of the input
    r, c, _ = matrix.to_coo()
    dense_q = np.zeros(matrix.shape)
    dense_q[r, c] = q.values
    x64 = xq.astype(np.float64)
    if granularity == "row":
        np.testing.assert_array_equal(acc, dense_q @ x64)
    else:
        cb = matrix.col_bounds
        for b in range(matrix.nblocks):
            lo, hi = cb[b % matrix.col_blocks], cb[b % matrix.col_blocks + 1]
            rows = matrix.rows[matrix.block_row_ptr[b] : matrix.block_row_ptr[b + 1]]
            got = acc[matrix.block_row_ptr[b] : matrix.block_row_ptr[b + 1]]
            np.testing.assert_array_equal(got, dense_q[rows, lo:hi] @ x64[lo:hi])
    # the float product: accumulators times the two scales, float32 rounding only
    xf = rng.standard_normal((matrix.shape[1], 5)).astype(np.float32)
    xq2, xs = quantize_activations(xf, "input")
    y = int8_matmat(q, xf)
    deq64 = np.zeros(matrix.shape)
    deq64[r, c] = q.values.astype(np.float64) * q.value_scales()
    exact = deq64 @ (xq2.astype(np.float64) * xs.astype(np.float64))
    scale = np.abs(deq64) @ np.abs(xq2.astype(np.float64) * xs)
    assert (np.abs(y - exact) <= (matrix.col_blocks + 3) * 2**-24 * scale + 1e-30).all()
    np.testing.assert_array_equal(int8_matvec(q, xf[:, 2]), y[:, 2])


def test_int32_cannot_overflow_at_the_documented_bound():
    # worst case of the reference GRU's widest matrix: a row of 1024 values of 127 times 127
    w = np.full((4, 1024), 0.5, np.float32)
    w[1] = -0.5
    m = BSPCMatrix.from_dense(w, None, 1, 2)
    q = quantize_bspc(m, "row")
    x = np.full((1024, 2), 127, np.int8)
    x[:, 1] = -127
    acc = int8_accumulate(q, x)
    r, c, _ = m.to_coo()
    dense = np.zeros((4, 1024), np.int64)
    dense[r, c] = q.values
    wide = dense @ x.astype(np.int64)  # int64: no overflow possible
    assert np.abs(wide).max() == 127 * 127 * 1024
    np.testing.assert_array_equal(acc, wide)
    assert accumulator_bound(q) == 127 * 127 * 1024 < 2**24  # also exact in float32
    # a row storing more than (2**31 - 1) // 127**2 = 133144 values is refused
    big = quantize_bspc(BSPCMatrix.from_dense(np.ones((1, 133_145), np.float32)), "row")
    assert accumulator_bound(big) > 2**31 - 1
    with pytest.raises(OverflowError, match="int32 accumulators could reach"):
        int8_accumulate(big, np.ones((133_145, 1), np.int8))


@pytest.mark.parametrize("granularity", GRANULARITIES)
@pytest.mark.parametrize("activations", ["input", "state"])
def test_product_error_stays_within_the_documented_bound(matrix, granularity, activations):
    q = quantize_bspc(matrix, granularity)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((matrix.shape[1], 6)).astype(np.float32)
    if activations == "state":
        x = np.tanh(x)
    fp32 = matrix.matvec(x)  # the fp32 BSPC product
    y = int8_matmat(q, x, activations)
    bound = int8_error_bound(q, x, activations)
    assert (np.abs(y - fp32) <= bound).all()
    # the bound is not vacuous: under a tenth of sum |W| |x|
    magnitude = np.abs(matrix.to_dense()).astype(np.float64) @ np.abs(x)
    live = magnitude > 0
    assert (bound[live] / magnitude[live]).max() < 0.1
    rel = np.linalg.norm(y - fp32) / np.linalg.norm(fp32)
    assert rel < 0.01
    b1 = int8_error_bound(q, x[:, 0], activations)
    assert b1.shape == (matrix.shape[0],)
    np.testing.assert_allclose(b1, bound[:, 0])


def _fields(q: QuantizedBSPC) -> dict:
    names = ("shape", "row_blocks", "col_blocks", "block_row_ptr", "rows", "block_col_ptr")
    names += ("cols", "values", "scales", "reorder", "granularity")
    return {n: getattr(q, n) for n in names}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"values": "float"}, "values must be a 1-D int8 array, got float32"),
        ({"values": "-128"}, r"values\[0\] = -128 is outside the symmetric range"),
        ({"values": "short"}, "values has .* entries but the blocks' kept rows x kept columns"),
        ({"scales": "short"}, "scales has .* entries; granularity 'row' needs 96"),
        ({"scales": "float64"}, "scales must be a 1-D float32 array, got float64"),
        ({"scales": "zero"}, r"scales\[3\] = 0.0 is not finite and positive"),
        ({"scales": "nan"}, r"scales\[3\] = nan is not finite and positive"),
        ({"granularity": "col"}, "granularity must be one of"),
        ({"rows": "outside"}, r"rows\[0\] = 95 is outside block 0's stripe"),
        ({"reorder": "float"}, "reorder must be a 1-D integer array"),
    ],
)
def test_bad_arrays_are_refused_with_a_message(matrix, change, message):
    q = quantize_bspc(matrix, "row")
    kwargs = _fields(q)
    ((name, how),) = change.items()
    arr = kwargs[name]
    if how == "float":
        kwargs[name] = arr.astype(np.float32)
    elif how == "-128":
        kwargs[name] = np.concatenate([[np.int8(-128)], arr[1:]])
    elif how == "short":
        kwargs[name] = arr[:-1]
    elif how == "float64":
        kwargs[name] = arr.astype(np.float64)
    elif how in ("zero", "nan"):
        kwargs[name] = arr.copy()
        kwargs[name][3] = 0.0 if how == "zero" else np.nan
    elif how == "outside":
        kwargs[name] = arr.copy()
        kwargs[name][0] = 95
    else:
        kwargs[name] = how
    with pytest.raises(BSPCFormatError, match=message):
        QuantizedBSPC(**kwargs)


def test_block_row_scales_are_one_per_rows_entry(matrix):
    q = quantize_bspc(matrix, "block_row")
    assert q.scales.shape == q.rows.shape
    with pytest.raises(BSPCFormatError, match="one per entry of rows"):
        replace(q, scales=q.scales[:-1])


@pytest.mark.parametrize("granularity", GRANULARITIES)
def test_npz_round_trip(tmp_path, matrix, granularity):
    q = quantize_bspc(matrix, granularity)
    path = save_quantized_bspc(q, tmp_path / "w8.npz")
    back = load_quantized_bspc(path)
    assert back.granularity == granularity and back.shape == q.shape
    for name, value in _fields(q).items():
        np.testing.assert_array_equal(getattr(back, name), value)
    assert [p.name for p in tmp_path.iterdir()] == ["w8.npz"]  # no temporary left
    with np.load(path) as npz:
        assert all(npz[k].dtype != object for k in npz.files)


def test_bad_files_are_refused(tmp_path, matrix):
    q = quantize_bspc(matrix, "row")
    with pytest.raises(FileNotFoundError):
        load_quantized_bspc(tmp_path / "none.npz")
    fp32 = save_bspc(matrix, tmp_path / "fp32.npz")  # an fp32 BSPC file is not int8 BSPC
    with pytest.raises(BSPCFormatError, match="missing arrays"):
        load_quantized_bspc(fp32)
    pickled = tmp_path / "p.npz"
    pickled.write_bytes(pickle.dumps({"values": q.values}))
    with pytest.raises(BSPCFormatError, match="pickled"):
        load_quantized_bspc(pickled)
    good = save_quantized_bspc(q, tmp_path / "good.npz")
    with np.load(good) as npz:
        arrays = {k: npz[k] for k in npz.files}
    for name, bad, message in [
        ("scales", np.zeros_like(arrays["scales"]), "is not finite and positive"),
        ("values", arrays["values"][:-1], "values declares shape"),
        ("granularity", np.array(7), "granularity code 7"),
        ("format", np.frombuffer(b"bspc-int4", np.uint8), "format tag"),
        ("version", np.array(2), "version 2"),
    ]:
        path = tmp_path / f"bad-{name}.npz"
        np.savez(path, **{**arrays, name: bad})
        with pytest.raises(BSPCFormatError, match=message):
            load_quantized_bspc(path)
