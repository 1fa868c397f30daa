"""BSPCMatrix: construction, round trips, scipy equivalence, sizes."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given
from strategies import bsp_problems

from tvm_bsp.bspc import BSPCFormatError, BSPCMatrix, scipy_csr_nbytes, stripe_bounds
from tvm_bsp.prune import bsp_mask


@given(bsp_problems())
def test_from_dense_round_trips_exactly(problem):
    w, rb, cb, cr, rr = problem
    mask = bsp_mask(w, rb, cb, cr, rr)
    m = BSPCMatrix.from_dense(w, mask, rb, cb)
    np.testing.assert_array_equal(m.to_dense(), np.where(mask, w, 0))
    assert m.nnz == int(mask.sum())
    assert m.compression == pytest.approx(w.size / mask.sum())


@given(bsp_problems())
def test_to_scipy_equals_scipy_csr_of_masked_matrix(problem):
    w, rb, cb, cr, rr = problem
    mask = bsp_mask(w, rb, cb, cr, rr)
    ours = BSPCMatrix.from_dense(w, mask, rb, cb).to_scipy()
    ref = sp.csr_matrix(np.where(mask, w, 0))
    np.testing.assert_array_equal(ours.indptr, ref.indptr)
    np.testing.assert_array_equal(ours.indices, ref.indices)
    np.testing.assert_array_equal(ours.data, ref.data)


@given(bsp_problems())
def test_matvec_equals_dense_product_for_any_reorder(problem):
    w, rb, cb, cr, rr = problem
    mask = bsp_mask(w, rb, cb, cr, rr)
    m = BSPCMatrix.from_dense(w, mask, rb, cb)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((w.shape[1], 3)).astype(np.float64)
    expected = np.where(mask, w, 0).astype(np.float64) @ x
    np.testing.assert_allclose(m.matvec(x), expected, rtol=1e-5, atol=1e-5)
    shuffled = m.with_reorder(rng.permutation(w.shape[0]))
    np.testing.assert_allclose(shuffled.matvec(x), expected, rtol=1e-5, atol=1e-5)


def test_mask_none_keeps_the_nonzeros_and_stores_block_rectangles():
    w = np.zeros((6, 6), np.float32)
    w[0, 0] = 1.0
    w[1, 2] = 2.0  # same 6x6 block: rows {0,1} x cols {0,2} are stored, two explicit zeros
    w[5, 5] = 3.0
    m = BSPCMatrix.from_dense(w, None, 1, 1)
    np.testing.assert_array_equal(m.to_dense(), w)
    assert m.nnz == 3 * 3  # rows {0,1,5} x cols {0,2,5}
    m2 = BSPCMatrix.from_dense(w, None, 3, 3)
    np.testing.assert_array_equal(m2.to_dense(), w)
    assert m2.nnz == 3


def test_empty_matrix_and_empty_blocks():
    w = np.ones((5, 7), np.float32)
    m = BSPCMatrix.from_dense(w, np.zeros((5, 7), bool), 2, 3)
    assert m.nnz == 0 and m.compression == float("inf")
    np.testing.assert_array_equal(m.to_dense(), np.zeros((5, 7)))
    np.testing.assert_array_equal(m.matvec(np.ones(7)), np.zeros(5))
    assert m.to_scipy().nnz == 0


def test_non_bsp_mask_names_the_first_offending_block():
    w = np.ones((4, 4), np.float32)
    mask = np.zeros((4, 4), bool)
    mask[2, 2] = mask[3, 3] = True  # block (1, 1) keeps rows {2,3} x cols {2,3} only diagonally
    with pytest.raises(ValueError, match=r"block \(1, 1\).*rows 2:4, columns 2:4"):
        BSPCMatrix.from_dense(w, mask, 2, 2)


@pytest.mark.parametrize(
    ("weight", "mask", "message"),
    [
        (np.ones((3, 3), np.int32), None, "float32 or float64"),
        (np.ones(3, np.float32), None, "2-D"),
        (np.array([[1.0, np.nan]], np.float32), None, "not finite"),
        (np.ones((2, 2), np.float32), np.ones((2, 3), bool), "shape"),
        (np.ones((2, 2), np.float32), np.ones((2, 2), np.float32), "boolean"),
    ],
)
def test_bad_dense_input_is_refused(weight, mask, message):
    with pytest.raises(ValueError, match=message):
        BSPCMatrix.from_dense(weight, mask, 1, 1)


def test_bad_grid_is_refused():
    with pytest.raises(ValueError, match="stripes"):
        BSPCMatrix.from_dense(np.ones((3, 3), np.float32), None, 4, 1)


def test_index_dtypes_are_as_small_as_the_shape_allows():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((3072, 39)).astype(np.float32)
    m = BSPCMatrix.from_dense(w, bsp_mask(w, 96, 4, 4, 1), 96, 4)
    assert m.rows.dtype == np.int16 and m.cols.dtype == np.int16
    assert m.reorder.dtype == np.int16
    big = BSPCMatrix.from_dense(np.ones((1, 40000), np.float32), None, 1, 1)
    assert big.cols.dtype == np.int32


def test_nbytes_beats_scipy_csr_on_a_bsp_matrix():
    rng = np.random.default_rng(2)
    w = rng.standard_normal((3072, 1024)).astype(np.float32)
    mask = bsp_mask(w, 96, 16, 16, 2)
    m = BSPCMatrix.from_dense(w, mask, 96, 16)
    csr = sp.csr_matrix(np.where(mask, w, 0))
    index_bytes = m.nbytes - m.values.nbytes
    assert m.nbytes == m.values.nbytes + index_bytes
    assert m.nbytes < scipy_csr_nbytes(np.where(mask, w, 0))
    # CSR keeps one 4-byte column index per value; BSPC one 2-byte index per kept row/column.
    assert index_bytes < csr.indices.nbytes / 4
    assert m.storage_ratio == pytest.approx(w.nbytes / m.nbytes)


@pytest.mark.parametrize(
    ("n", "k", "sizes"), [(39, 4, [9, 9, 9, 12]), (10, 1, [10]), (5, 5, [1] * 5)]
)
def test_stripe_bounds_last_stripe_takes_remainder(n, k, sizes):
    assert np.diff(stripe_bounds(n, k)).tolist() == sizes


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("rows", lambda m: m.rows[::-1].copy(), "rows"),
        ("cols", lambda m: (m.cols + 100).astype(m.cols.dtype), "outside"),
        ("block_row_ptr", lambda m: m.block_row_ptr[:-1].copy(), "entries"),
        ("values", lambda m: np.full_like(m.values, np.nan), "not finite"),
        ("values", lambda m: m.values[:-1].copy(), "values has"),
        ("values", lambda m: m.values.astype(np.int32), "float32 or float64"),
        ("reorder", lambda m: np.zeros_like(m.reorder), "permutation"),
        ("cols", lambda m: m.cols.astype(np.float32), "integer"),
    ],
)
def test_validate_names_the_broken_invariant(field, value, message):
    rng = np.random.default_rng(3)
    w = rng.standard_normal((16, 12)).astype(np.float32)
    m = BSPCMatrix.from_dense(w, bsp_mask(w, 4, 3, 2, 1), 4, 3)
    parts = {
        k: getattr(m, k)
        for k in ("block_row_ptr", "rows", "block_col_ptr", "cols", "values", "reorder")
    }
    parts[field] = value(m)
    with pytest.raises(BSPCFormatError, match=message):
        BSPCMatrix(m.shape, m.row_blocks, m.col_blocks, **parts)


def test_unsorted_columns_inside_a_block_are_refused():
    w = np.arange(1, 9, dtype=np.float32).reshape(2, 4)
    m = BSPCMatrix.from_dense(w, None, 1, 1)
    cols = m.cols.copy()
    cols[[0, 1]] = cols[[1, 0]]
    with pytest.raises(BSPCFormatError, match="strictly increasing"):
        BSPCMatrix(
            m.shape, 1, 1, m.block_row_ptr, m.rows, m.block_col_ptr, cols, m.values, m.reorder
        )
