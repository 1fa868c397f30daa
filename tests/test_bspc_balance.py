"""Matrix reorder and load balance."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from strategies import bsp_problems

from tvm_bsp.bspc import BSPCMatrix, load_balance, thread_partition
from tvm_bsp.prune import bsp_mask


@given(bsp_problems(), st.integers(1, 8))
def test_reorder_is_a_permutation_and_partition_covers_every_stripe_once(problem, threads):
    w, rb, cb, cr, rr = problem
    m = BSPCMatrix.from_dense(w, bsp_mask(w, rb, cb, cr, rr), rb, cb)
    assert sorted(m.reorder.tolist()) == list(range(w.shape[0]))
    parts = thread_partition(m, threads)
    assert len(parts) == threads
    assert sorted(np.concatenate(parts).tolist()) == list(range(rb))


@given(bsp_problems())
def test_reorder_groups_rows_by_descending_work_inside_each_stripe(problem):
    w, rb, cb, cr, rr = problem
    m = BSPCMatrix.from_dense(w, bsp_mask(w, rb, cb, cr, rr), rb, cb)
    work = m.row_work()
    stripe = np.searchsorted(m.row_bounds, m.reorder, side="right") - 1
    # every stripe's rows are contiguous in the reorder
    changes = np.flatnonzero(np.diff(stripe)) + 1
    assert len(set(stripe.tolist())) == changes.size + 1
    for seg in np.split(np.arange(m.reorder.size), changes):
        assert (np.diff(work[m.reorder[seg]]) <= 0).all()
    stripe_work = np.array(
        [work[m.reorder[seg]].sum() for seg in np.split(np.arange(m.reorder.size), changes)]
    )
    assert (np.diff(stripe_work) <= 0).all()


def test_reorder_balances_skewed_work():
    # Stripes with very different work: the first half of the stripes is dense, the rest sparse.
    w = np.ones((64, 64), np.float32)
    mask = np.zeros((64, 64), bool)
    mask[:32] = True
    mask[32:, :4] = True
    m = BSPCMatrix.from_dense(w, mask, 8, 1)
    lb = load_balance(m, 2)
    per_stripe = np.add.reduceat(mask.sum(1), m.row_bounds[:-1])
    halves = np.array_split(per_stripe, 2)
    expected_before = max(h.sum() for h in halves) / (per_stripe.sum() / 2)
    assert lb.before == expected_before
    assert lb.after < lb.before
    assert lb.after < 1.05
