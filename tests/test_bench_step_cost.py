"""The per-frame breakdown of ``step`` (tvm_bsp.experiments.bench.step_cost): kernel calls,
rows."""

from __future__ import annotations

import numpy as np
import torch
import tvm

import tvm_bsp
from tvm_bsp.experiments.bench.step_cost import breakdown, kernel_calls
from tvm_bsp.prune import bsp_mask


def _model():
    torch.manual_seed(0)
    return torch.nn.GRU(5, 16, 2).eval()


def test_kernel_calls_bind_the_vm_arguments_in_order():
    """``step`` is the fused kernel; the first kernel of ``forward`` alone is the input
    projection W_ih x + b (numpy)."""
    model = _model()
    cm = tvm_bsp.compile_model(model, knobs={"lanes": 8})
    assert [c.name for c in kernel_calls(cm)] == ["fused_step"]
    calls = kernel_calls(cm, "forward")
    assert [c.name for c in calls] == [
        "input_projection", "gru_sequence", "input_projection1", "gru_sequence1",
    ]  # fmt: skip
    first = calls[0]
    x = np.random.default_rng(0).standard_normal((1, 5)).astype(np.float32)
    first.args[0] = tvm.runtime.tensor(x)
    first()
    W = model.weight_ih_l0.detach().numpy()
    b = model.bias_ih_l0.detach().numpy() + np.r_[model.bias_hh_l0.detach().numpy()[:32], [0] * 16]
    np.testing.assert_allclose(first.args[-1].numpy(), x @ W.T + b, atol=1e-5)


def test_breakdown_rows_add_up_to_the_session_push():
    model, empty_model = _model(), _model()
    names = [n for n, _ in model.named_parameters() if n.startswith("weight_hh")]
    masks = {n: bsp_mask(getattr(model, n).detach().numpy(), 8, 4, 2.0, 2.0) for n in names}
    grids = {n: (8, 4) for n in names}
    with torch.no_grad():
        for n in names:
            getattr(model, n).mul_(torch.from_numpy(masks[n]))
            getattr(empty_model, n).zero_()
    full = tvm_bsp.compile_model(model, bspc=masks, grid=grids, knobs={"lanes": 8})
    nothing = {n: np.zeros_like(m) for n, m in masks.items()}
    empty = tvm_bsp.compile_model(empty_model, bspc=nothing, grid=grids, knobs={"lanes": 8})
    rows = breakdown(full, empty, 5, (2, 1, 16))
    parts = {r["part"]: r["us"] for r in rows if r["in_push"]}
    total = {r["part"]: r["us"] for r in rows}["total (session push)"]
    assert abs(sum(parts.values()) - total) < 1e-6 * max(total, 1)
    assert any("recurrent product" in p for p in parts)
    assert all(np.isfinite(r["us"]) for r in rows)
