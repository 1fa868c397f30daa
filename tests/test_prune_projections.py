"""BSP, ESE and magnitude projections: structure and rates."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from strategies import bsp_problems

from tvm_bsp.bspc import BSPCMatrix, stripe_bounds
from tvm_bsp.prune import (
    achieved_rate,
    balanced_mask,
    bsp_mask,
    bsp_mask_at_rate,
    column_block_mask,
    magnitude_mask,
    row_mask,
)


def _segment_norms(w, bounds, axis):
    return np.sqrt(np.add.reduceat(w.astype(np.float64) ** 2, bounds[:-1], axis=axis))


@given(bsp_problems())
def test_column_block_mask_keeps_the_largest_column_segments_of_each_stripe(problem):
    w, rb, _, cr, _ = problem
    mask = column_block_mask(w, rb, cr)
    bounds = stripe_bounds(w.shape[0], rb)
    keep = max(1, round(w.shape[1] / cr))
    norms = _segment_norms(w, bounds, axis=0)
    for s in range(rb):
        stripe = mask[bounds[s] : bounds[s + 1]]
        assert (stripe == stripe[0]).all()  # whole column segments
        kept = stripe[0]
        assert kept.sum() == keep
        if keep < w.shape[1]:
            assert norms[s][kept].min() >= norms[s][~kept].max()


@given(bsp_problems())
def test_row_mask_keeps_the_largest_row_segments_of_each_stripe(problem):
    w, _, cb, _, rr = problem
    mask = row_mask(w, cb, rr)
    bounds = stripe_bounds(w.shape[1], cb)
    keep = max(1, round(w.shape[0] / rr))
    norms = _segment_norms(w, bounds, axis=1)
    for s in range(cb):
        stripe = mask[:, bounds[s] : bounds[s + 1]]
        assert (stripe == stripe[:, :1]).all()
        kept = stripe[:, 0]
        assert kept.sum() == keep
        if keep < w.shape[0]:
            assert norms[:, s][kept].min() >= norms[:, s][~kept].max()


@given(bsp_problems())
def test_bsp_mask_has_block_structure_and_its_reported_rate(problem):
    w, rb, cb, cr, rr = problem
    mask = bsp_mask(w, rb, cb, cr, rr)
    BSPCMatrix.from_dense(w, mask, rb, cb)  # raises if a block is not kept rows x kept cols
    assert (mask <= column_block_mask(w, rb, cr)).all()
    assert achieved_rate(mask) == pytest.approx(w.size / mask.sum())
    assert achieved_rate(mask) >= min(cr, w.shape[1]) * 0.5 or mask.sum() <= rb


@pytest.mark.parametrize(("rate", "col_rate"), [(10, 10), (19, 16), (29, 16), (80, 20), (301, 20)])
def test_bsp_mask_at_rate_reaches_the_paper_rates(rate, col_rate):
    w = np.random.default_rng(rate).standard_normal((768, 256)).astype(np.float32)
    mask = bsp_mask_at_rate(w, 24, 8, rate, col_rate)
    assert achieved_rate(mask) == pytest.approx(rate, rel=0.05)
    BSPCMatrix.from_dense(w, mask, 24, 8)


@given(st.integers(1, 30), st.integers(1, 30), st.integers(1, 30), st.sampled_from([1, 2, 4.5, 10]))
def test_balanced_mask_gives_every_group_the_same_count(M, N, groups, rate):
    groups = min(groups, M)
    w = np.random.default_rng(M * N).standard_normal((M, N)).astype(np.float32)
    mask = balanced_mask(w, groups, rate)
    counts = [mask[g::groups].sum() for g in range(groups)]
    assert len(set(counts)) == 1
    for g in range(groups):
        kept, dropped = (
            np.abs(w[g::groups][mask[g::groups]]),
            np.abs(w[g::groups][~mask[g::groups]]),
        )
        if dropped.size and kept.size:
            assert kept.min() >= dropped.max()


@given(st.integers(1, 30), st.integers(1, 30), st.sampled_from([1, 2, 3.3, 10, 1000]))
def test_magnitude_mask_keeps_the_largest_weights(M, N, rate):
    w = np.random.default_rng(M + 31 * N).standard_normal((M, N)).astype(np.float32)
    mask = magnitude_mask(w, rate)
    assert mask.sum() == max(1, round(M * N / rate))
    if (~mask).any():
        assert np.abs(w[mask]).min() >= np.abs(w[~mask]).max()


def test_torch_in_torch_out():
    w = torch.randn(12, 10)
    for mask in (
        bsp_mask(w, 3, 2, 2, 2),
        magnitude_mask(w, 4),
        balanced_mask(w, 4, 4),
        column_block_mask(w, 3, 2),
        row_mask(w, 2, 2),
    ):
        assert isinstance(mask, torch.Tensor) and mask.dtype == torch.bool
        assert mask.shape == w.shape
    np.testing.assert_array_equal(bsp_mask(w, 3, 2, 2, 2).numpy(), bsp_mask(w.numpy(), 3, 2, 2, 2))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda w: bsp_mask(w, 2, 2, 0.5, 1), "col_rate"),
        (lambda w: bsp_mask(w, 2, 2, 2, float("nan")), "row_rate"),
        (lambda w: column_block_mask(w, 9, 2), "stripes"),
        (lambda w: magnitude_mask(w.astype(np.int64), 2), "float"),
        (lambda w: balanced_mask(w, 0, 2), "groups"),
        (lambda w: magnitude_mask(w[0], 2), "2-D"),
        (lambda w: magnitude_mask(np.full_like(w, np.nan), 2), "NaN"),
    ],
)
def test_bad_arguments_are_refused(call, message):
    w = np.ones((8, 8), np.float32)
    with pytest.raises(ValueError, match=message):
        call(w)


def test_non_divisible_reference_input_matrix():
    w = np.random.default_rng(0).standard_normal((3072, 39)).astype(np.float32)
    mask = bsp_mask(w, 96, 4, 4, 2)
    m = BSPCMatrix.from_dense(w, mask, 96, 4)
    assert m.col_bounds.tolist() == [0, 9, 18, 27, 39]
    np.testing.assert_array_equal(m.to_dense(), np.where(mask, w, 0))
