"""The panel layout: packing invariants and a numpy product from the packed arrays."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import bsp_problems

from tvm_bsp.bspc import BSPCMatrix, thread_partition
from tvm_bsp.kernels import pack_panels, panel_layout_matvec
from tvm_bsp.kernels.layout import panel_column_count
from tvm_bsp.kernels.rnn_pack import pack_row_panels, pad_rows
from tvm_bsp.prune import bsp_mask


def _matrix(weight, rb, cb, col_rate, row_rate) -> tuple[BSPCMatrix, np.ndarray]:
    mask = bsp_mask(weight, rb, cb, col_rate, row_rate)
    return BSPCMatrix.from_dense(weight, mask, rb, cb), np.where(mask, weight, 0)


def _check_invariants(layout, matrix: BSPCMatrix) -> None:
    a = layout.arrays
    M, _ = matrix.shape
    P, K = layout.panel_rows, layout.k_split
    lanes = a["panel_rows"]
    real = layout.real_lanes()
    # every row is in exactly one real lane, and row_slot inverts panel_rows
    assert np.array_equal(np.sort(lanes[real]), np.arange(M))
    assert np.array_equal(lanes[a["row_slot"]], np.arange(M))
    # a dummy lane repeats lane 0 of its panel: row, values and bias
    vals = a["vals"].reshape(-1, P)
    for slot in np.flatnonzero(~real):
        first = slot - slot % P
        assert lanes[slot] == lanes[first] and a["bias"][slot] == a["bias"][first]
        p = slot // P
        lo, hi = a["panel_ptr"][p], a["panel_ptr"][p + 1]
        assert np.array_equal(vals[lo:hi, slot % P], vals[lo:hi, 0])
    ptr = a["panel_ptr"].astype(np.int64)
    assert ptr[0] == 0 and (np.diff(ptr) >= 0).all() and (ptr % K == 0).all()
    assert a["cols"].size >= K and a["vals"].size == a["cols"].size * P
    assert a["thread_ptr"][0] == 0 and a["thread_ptr"][-1] == layout.npanels
    assert a["thread_ptr"].size == layout.threads + 1
    assert (np.diff(a["thread_ptr"]) >= 0).all()
    # a panel never spans two stripes, and thread t owns exactly its partition's stripes
    bounds = matrix.row_bounds
    stripe_of_lane = np.searchsorted(bounds, lanes, side="right") - 1
    owned = thread_partition(matrix, layout.threads)
    for t in range(layout.threads):
        stripes = set()
        for p in range(a["thread_ptr"][t], a["thread_ptr"][t + 1]):
            s = np.unique(stripe_of_lane[p * P : (p + 1) * P])
            assert s.size == 1
            stripes.add(int(s[0]))
        assert stripes == {int(s) for s in owned[t]}
    for name, arr in a.items():
        assert arr.dtype == (np.float32 if name in ("vals", "bias") else np.int32), name


@given(
    problem=bsp_problems(),
    P=st.sampled_from([1, 3, 4, 8, 16]),
    K=st.sampled_from([1, 2, 4]),
    threads=st.integers(1, 5),
    order=st.sampled_from(["reorder", "natural", "grouped"]),
    batch=st.integers(1, 3),
)
def test_packed_product_matches_dense(problem, P, K, threads, order, batch):
    weight, rb, cb, col_rate, row_rate = problem
    matrix, dense = _matrix(weight, rb, cb, col_rate, row_rate)
    layout = pack_panels(matrix, P, K, threads, order)
    _check_invariants(layout, matrix)
    unpadded = pack_panels(matrix, P, 1, threads, order)
    assert panel_column_count(matrix, P, order) == unpadded.arrays["panel_ptr"][-1]
    x = np.random.default_rng(0).standard_normal((batch, weight.shape[1])).astype(np.float32)
    np.testing.assert_allclose(panel_layout_matvec(layout, x), x @ dense.T, rtol=1e-5, atol=1e-5)


def test_natural_order_panels_are_consecutive_rows():
    weight = np.random.default_rng(1).standard_normal((64, 40)).astype(np.float32)
    matrix, _ = _matrix(weight, 2, 4, 4, 2)
    layout = pack_panels(matrix, 8, 1, 2, "natural")
    lanes = layout.arrays["panel_rows"].reshape(-1, 8)
    assert (np.diff(lanes, axis=1) == 1).all()
    assert layout.full_panels


def test_reorder_follows_the_matrix_reorder_inside_stripes():
    weight = np.random.default_rng(2).standard_normal((32, 40)).astype(np.float32)
    matrix, _ = _matrix(weight, 1, 4, 4, 4)
    layout = pack_panels(matrix, 4, 1, 1, "reorder")
    assert np.array_equal(layout.arrays["panel_rows"], matrix.reorder.astype(np.int32))


def test_remainder_stripe_gets_dummy_lanes():
    # 39 rows in 4 stripes: 9, 9, 9, 12 rows; panels of 8 lanes leave dummies
    weight = np.random.default_rng(3).standard_normal((39, 20)).astype(np.float32)
    matrix, dense = _matrix(weight, 4, 2, 2, 1)
    layout = pack_panels(matrix, 8, 2, 1, "natural")
    assert layout.npanels == 2 + 2 + 2 + 2
    assert not layout.full_panels
    x = np.ones((1, 20), np.float32)
    np.testing.assert_allclose(panel_layout_matvec(layout, x), x @ dense.T, rtol=1e-5, atol=1e-5)


def test_empty_matrix_packs_one_padding_group():
    weight = np.zeros((10, 7), np.float32)
    matrix = BSPCMatrix.from_dense(weight, np.zeros((10, 7), bool), 2, 2)
    layout = pack_panels(matrix, 4, 2, 3)
    assert layout.ncols == 2 and layout.padded_values == 0
    assert not layout.arrays["vals"].any()
    np.testing.assert_array_equal(panel_layout_matvec(layout, np.ones((2, 7), np.float32)), 0)


def test_bias_is_stored_per_lane():
    weight = np.random.default_rng(4).standard_normal((12, 6)).astype(np.float32)
    matrix, _ = _matrix(weight, 3, 2, 2, 2)
    bias = np.arange(12, dtype=np.float32)
    layout = pack_panels(matrix, 8, 1, 2, "reorder", bias)
    lanes, lane_bias = layout.arrays["panel_rows"], layout.arrays["bias"]
    np.testing.assert_array_equal(lane_bias, bias[lanes])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"panel_rows": 0}, "panel_rows"),
        ({"k_split": 1.5}, "k_split"),
        ({"threads": 0}, "threads"),
        ({"row_order": "random"}, "row_order"),
        ({"bias": np.zeros(3)}, "bias"),
        ({"bias": np.full(12, np.nan)}, "NaN"),
    ],
)
def test_pack_rejects_bad_arguments(kwargs, message):
    weight = np.ones((12, 6), np.float32)
    matrix = BSPCMatrix.from_dense(weight, None, 3, 2)
    with pytest.raises(ValueError, match=message):
        pack_panels(matrix, **kwargs)


def test_row_panels_layout_of_the_dense_kernel():
    weight = np.arange(5 * 3, dtype=np.float32).reshape(5, 3)
    w = pack_row_panels(weight, 4).reshape(2, 3, 4)  # panels, columns, lanes
    np.testing.assert_array_equal(w[0], weight[:4].T)
    np.testing.assert_array_equal(w[1, :, 0], weight[4])
    assert not w[1, :, 1:].any()
    np.testing.assert_array_equal(pad_rows(np.ones(5, np.float32), 5, 4), [1, 1, 1, 1, 1, 0, 0, 0])
    np.testing.assert_array_equal(pad_rows(None, 5, 4), np.zeros(8))
