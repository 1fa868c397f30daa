"""Structure-dependent panel heights: short BSPC row stripes get short panels."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

import tvm_bsp
from tvm_bsp.bspc import BSPCMatrix
from tvm_bsp.kernels.layout import panel_column_count
from tvm_bsp.kernels.rnn_knobs import LANE_CHOICES, default_knobs, suggest_lanes
from tvm_bsp.kernels.targets import resolve_target
from tvm_bsp.prune import bsp_mask
from tvm_bsp.prune.masked import add_mask
from tvm_bsp.records.layers import with_suggestions

I, H = 13, 16  # 3H = 48 rows


def _matrix(row_blocks: int, seed: int = 0, col_rate: float = 4.0) -> BSPCMatrix:
    w = np.random.default_rng(seed).standard_normal((3 * H, H)).astype(np.float32)
    mask = bsp_mask(w, row_blocks, 2, col_rate, 1.0)
    return BSPCMatrix.from_dense(w, mask, row_blocks, 2)


@pytest.mark.parametrize("target", ["host", "arm64"])
def test_suggest_lanes_follows_the_stripe_height(target):
    tgt = resolve_target(target)
    widest = default_knobs(tgt).lanes
    assert suggest_lanes([], tgt) == widest
    # 4-row stripes: every panel height stores the same columns, so the shortest wins
    short = _matrix(12)
    counts = {p: panel_column_count(short, p) for p in LANE_CHOICES}
    assert len(set(counts.values())) == 1
    assert suggest_lanes([short], tgt) == 4
    # one 48-row stripe: the widest panel stores the fewest columns per row and wins
    tall = _matrix(1, col_rate=2.0)
    assert suggest_lanes([tall], tgt) == widest


def test_with_suggestions_yields_to_records_and_explicit_knobs():
    suggested = {"a": {"lanes": 4}, "b": {"lanes": 4}}
    tuned = {"b": {"lanes": 16, "k_split": 1}}
    merged, applied = with_suggestions(tuned, suggested, None)
    assert merged == {"a": {"lanes": 4}, "b": {"lanes": 16, "k_split": 1}}
    assert applied == {"a": {"lanes": 4}}
    assert with_suggestions({}, suggested, {"lanes": 8}) == ({}, {})
    assert with_suggestions({"*": {"lanes": 8}}, suggested, None)[1] == {}


def _short_stripe_gru(seed: int = 3) -> nn.Module:
    torch.manual_seed(seed)
    rnn = nn.GRU(I, H, 2)
    for name, p in list(rnn.named_parameters()):
        if name.startswith("weight"):
            add_mask(rnn, name, bsp_mask(p.detach(), 12, 2, 4.0 if "hh" in name else 2.0, 1.0))
    return rnn.eval()


def _kernel_lanes(cm) -> list[int]:
    return sorted(
        json.loads(str(f.attrs["tvm_bsp.knobs"]))["lanes"]
        for _, f in cm.ir.functions_items()
        if f.attrs is not None and str(f.attrs.get("tvm_bsp.kernel", "")).startswith("bspc_gru")
    )


def test_compile_model_applies_the_suggestion_and_matches_torch():
    model = _short_stripe_gru()
    x = np.random.default_rng(0).standard_normal((6, 2, I)).astype(np.float32)
    with torch.no_grad():
        y_ref, h_ref = (t.numpy() for t in model(torch.from_numpy(x)))
    cm = tvm_bsp.compile_model(model, grid=(12, 2))
    names = ["weight_hh_l0", "weight_hh_l1"]
    if default_knobs(cm.target).lanes > 4:
        assert cm.meta["suggested"] == {n: {"lanes": 4} for n in names}
        assert set(_kernel_lanes(cm)) == {4}
    y, h = cm.forward(x)
    np.testing.assert_allclose(y, y_ref, atol=1e-4)
    np.testing.assert_allclose(h, h_ref, atol=1e-4)
    state = None
    for t in range(len(x)):  # streaming, state carried
        y_t, state = cm.step(x[t], state)
        np.testing.assert_allclose(y_t, y_ref[t], atol=1e-4)
    # explicit knobs win: no suggestion, same numbers
    wide = tvm_bsp.compile_model(model, grid=(12, 2), knobs={"lanes": 8})
    assert wide.meta["suggested"] == {} and set(_kernel_lanes(wide)) == {8}
    np.testing.assert_allclose(wide.forward(x)[0], y_ref, atol=1e-4)
