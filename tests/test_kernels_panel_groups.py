"""The ``"grouped"`` panel order and the padding measure, against numpy and torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import bsp_problems
from torch import nn

import tvm_bsp
from tvm_bsp.bspc import BSPCMatrix
from tvm_bsp.kernels.layout import pack_panels, panel_counts, panel_layout_matvec, stripe_panels
from tvm_bsp.kernels.padding import Padding, layer_padding, padding_ratio
from tvm_bsp.kernels.panel_groups import grouped_panels, stripe_groups
from tvm_bsp.kernels.rnn_knobs import RNNKnobs
from tvm_bsp.prune import bsp_mask
from tvm_bsp.prune.masked import add_mask


def _blocks_lower_bound(matrix: BSPCMatrix, P: int) -> int:
    """Columns of any layout whose panels broadcast one column list to ``P`` lanes: a block
    of ``r`` kept rows is listed by at least ``ceil(r / P)`` panels."""
    rows = np.diff(matrix.block_row_ptr.astype(np.int64))
    cols = np.diff(matrix.block_col_ptr.astype(np.int64))
    return int((-(-rows // P) * cols).sum())


def _from_blocks(shape, row_blocks, col_blocks, kept: dict[int, tuple[list, list]], seed=0):
    """A BSPC matrix whose block ``b`` keeps ``kept[b] = (rows, cols)`` (random values)."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(shape, bool)
    for rows, cols in kept.values():
        mask[np.ix_(rows, cols)] = True
    weight = np.where(mask, rng.uniform(0.5, 1.5, shape), 0).astype(np.float32)
    return BSPCMatrix.from_dense(weight, mask, row_blocks, col_blocks), weight


@settings(deadline=None)
@given(problem=bsp_problems(), P=st.sampled_from([1, 2, 3, 4, 8]), batch=st.integers(1, 3))
def test_grouped_panels_partition_each_stripe(problem, P, batch):
    weight, rb, cb, col_rate, row_rate = problem
    mask = bsp_mask(weight, rb, cb, col_rate, row_rate)
    matrix = BSPCMatrix.from_dense(weight, mask, rb, cb)
    bounds = matrix.row_bounds
    for s in range(rb):
        panels = stripe_groups(matrix, s, P)
        rows = np.concatenate(panels)
        assert np.array_equal(np.sort(rows), np.arange(bounds[s], bounds[s + 1]))
        assert all(1 <= p.size <= P and (np.diff(p) > 0).all() for p in panels)
        assert len(panels) <= rows.size
        assert [p.tolist() for p in grouped_panels(matrix, s, P)] == [p.tolist() for p in panels]
    columns, npanels = panel_counts(matrix, P, "grouped")
    assert columns >= _blocks_lower_bound(matrix, P)
    layout = pack_panels(matrix, P, 2, 2, "grouped")
    assert layout.npanels == npanels
    assert layout.arrays["panel_ptr"][-1] >= columns  # k_split padding only adds
    x = np.random.default_rng(0).standard_normal((batch, weight.shape[1])).astype(np.float32)
    ref = x @ np.where(mask, weight, 0).T
    np.testing.assert_allclose(panel_layout_matvec(layout, x), ref, rtol=1e-5, atol=1e-5)


def test_rows_of_the_same_blocks_share_panels():
    # one 8-row stripe, two column blocks keeping interleaved rows: natural order mixes them
    # in every panel (each pays both blocks' columns), grouped stores no zero at all
    kept = {0: ([0, 2, 4, 6], [0, 1, 2]), 1: ([1, 3, 5, 7], [4, 5])}
    matrix, weight = _from_blocks((8, 6), 1, 2, kept)
    assert padding_ratio(matrix, 4, "grouped").ratio == 1.0
    assert padding_ratio(matrix, 4, "natural").ratio == 2.0
    panels = [p.tolist() for p in stripe_panels(matrix, 0, 4, "grouped")]
    assert sorted(panels) == [[0, 2, 4, 6], [1, 3, 5, 7]]
    layout = pack_panels(matrix, 4, 1, 1, "grouped")
    assert layout.full_panels and layout.padded_values == matrix.nnz
    x = np.arange(6, dtype=np.float32)[None]
    np.testing.assert_allclose(panel_layout_matvec(layout, x), x @ weight.T, rtol=1e-6)


def test_idle_rows_take_free_lanes_and_empty_blocks_are_skipped():
    # stripe 0: block 0 keeps 3 rows, block 1 keeps nothing; stripe 1 is empty
    kept = {0: ([1, 4, 6], [0, 2])}
    matrix, weight = _from_blocks((16, 8), 2, 2, kept)
    panels = stripe_panels(matrix, 0, 4, "grouped")
    assert len(panels) == 2  # ceil(8 / 4): the idle rows fill the working panel's free lane
    assert {1, 4, 6} <= set(panels[0].tolist())  # the working rows share one panel
    assert [p.size for p in stripe_panels(matrix, 1, 4, "grouped")] == [4, 4]
    layout = pack_panels(matrix, 4, 2, 2, "grouped", bias=np.arange(16, dtype=np.float32))
    assert layout.padded_values == 4 * 2  # one panel lists block 0's two columns
    np.testing.assert_array_equal(layout.arrays["bias"], layout.arrays["panel_rows"])
    x = np.random.default_rng(1).standard_normal((2, 8)).astype(np.float32)
    np.testing.assert_allclose(panel_layout_matvec(layout, x), x @ weight.T, rtol=1e-6)


def test_partial_stripes_and_an_all_empty_matrix():
    # 39 rows in 4 stripes (9, 9, 9, 12 rows): panels of 8 lanes leave short panels
    weight = np.random.default_rng(3).standard_normal((39, 20)).astype(np.float32)
    mask = bsp_mask(weight, 4, 2, 2, 2)
    matrix = BSPCMatrix.from_dense(weight, mask, 4, 2)
    layout = pack_panels(matrix, 8, 2, 3, "grouped")
    assert not layout.full_panels and layout.npanels == 2 + 2 + 2 + 2
    x = np.ones((1, 20), np.float32)
    ref = x @ np.where(mask, weight, 0).T
    np.testing.assert_allclose(panel_layout_matvec(layout, x), ref, rtol=1e-5, atol=1e-5)
    empty = BSPCMatrix.from_dense(np.zeros((10, 7), np.float32), np.zeros((10, 7), bool), 2, 2)
    layout = pack_panels(empty, 4, 2, 3, "grouped")
    assert layout.padded_values == 0 and padding_ratio(empty, 4, "grouped") == Padding(0, 0)
    assert padding_ratio(empty, 4, "grouped").ratio == 1.0


@pytest.mark.parametrize("k_split", [1, 2])
def test_padding_ratio_counts_the_packed_values(k_split):
    weight = np.random.default_rng(5).standard_normal((64, 48)).astype(np.float32)
    matrix = BSPCMatrix.from_dense(weight, bsp_mask(weight, 4, 4, 3, 4), 4, 4)
    for order in ("reorder", "natural", "grouped"):
        pad = padding_ratio(matrix, 8, order, k_split)
        layout = pack_panels(matrix, 8, k_split, 1, order)
        assert pad == Padding(layout.padded_values, matrix.nnz)
    knobs = RNNKnobs(lanes=8, k_split=k_split, panel_order="plain")
    pads = layer_padding({"weight_hh_l0": matrix, "weight_ih_l0": matrix}, knobs)
    assert pads["weight_hh_l0"] == padding_ratio(matrix, 8, "reorder", k_split)
    assert pads["weight_ih_l0"] == padding_ratio(matrix, 8, "natural", k_split)
    total = pads["weight_hh_l0"] + pads["weight_ih_l0"]
    assert total.nnz == 2 * matrix.nnz


@pytest.mark.parametrize("rate", [43, 103, 301])
def test_reference_gru_recurrent_matrix_within_one_and_a_half(rate):
    # the target on the benchmark's own matrix and grid: 4-lane grouped panels
    from tvm_bsp.experiments.bench.gru import GRIDS, reference_gru
    from tvm_bsp.prune import PAPER_SPLITS, bsp_mask_at_rate

    weight = reference_gru().weight_hh_l0.detach().numpy()
    rb, cb = GRIDS[weight.shape]
    mask = bsp_mask_at_rate(weight, rb, cb, rate, PAPER_SPLITS[rate][0])
    matrix = BSPCMatrix.from_dense(weight, mask, rb, cb)
    grouped = padding_ratio(matrix, 4, "grouped", 2)
    assert grouped.ratio <= 1.5
    assert grouped.macs < padding_ratio(matrix, 4, "reorder", 2).macs


def test_knob_validation():
    with pytest.raises(ValueError, match="panel_order"):
        RNNKnobs(panel_order="random")
    assert RNNKnobs(panel_order="grouped").row_order(matmat=True) == "grouped"
    assert RNNKnobs(panel_order="plain").row_order(matmat=True) == "natural"
    assert RNNKnobs(panel_order="plain").row_order(matmat=False) == "reorder"
    assert RNNKnobs.from_json(RNNKnobs(panel_order="grouped").to_json()).panel_order == "grouped"


@pytest.mark.parametrize("order", ["grouped", "plain"])
def test_compiled_bspc_gru_matches_torch(order):
    torch.manual_seed(4)
    model = nn.GRU(11, 24, 2)
    for name, p in list(model.named_parameters()):
        if name.startswith("weight"):
            add_mask(model, name, bsp_mask(p.detach(), 6, 2, 2.0, 3.0))
    model.eval()
    x = np.random.default_rng(0).standard_normal((5, 2, 11)).astype(np.float32)
    with torch.no_grad():
        y_ref, h_ref = (t.numpy() for t in model(torch.from_numpy(x)))
    cm = tvm_bsp.compile_model(model, grid=(6, 2), knobs={"panel_order": order, "lanes": 4})
    y, h = cm.forward(x)
    np.testing.assert_allclose(y, y_ref, atol=1e-4)
    np.testing.assert_allclose(h, h_ref, atol=1e-4)
    h_t = None
    for t in range(x.shape[0]):
        y_t, h_t = cm.step(x[t], h_t)
        np.testing.assert_allclose(y_t, y_ref[t], atol=1e-4)
