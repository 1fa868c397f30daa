"""The roofline of ``bench gru``: bytes a frame reads, and the bandwidth kernel."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import tvm_bsp
from tvm_bsp.experiments.bench.roofline import (
    frame_bytes,
    kernel_bytes,
    read_bandwidth,
    roofline_us,
)
from tvm_bsp.kernels.layout import pack_panels
from tvm_bsp.prune import bsp_mask


def _gru(hidden=16, inputs=5):
    torch.manual_seed(0)
    return torch.nn.GRU(inputs, hidden, 1).eval()


def test_dense_step_reads_every_packed_weight_once():
    model = _gru()
    cm = tvm_bsp.compile_model(model, knobs={"lanes": 8})
    H, D = 16, 5
    # Independent count: W_ih (3H x D) in row panels of 8 rows and its bias padded to the
    # panels; U (3H x H) in gate tiles; b_hn (H) - all float32.
    expected = (3 * H * D + 3 * H + 3 * H * H + H) * 4
    per_kernel = kernel_bytes(cm.ir, "forward")
    assert sum(per_kernel.values()) == expected
    assert set(per_kernel) == {"input_projection", "gru_sequence"}
    # the streamed step is one fused kernel that reads the same constants
    assert kernel_bytes(cm.ir, "step") == {"fused_step": expected}
    state = H * 4
    assert frame_bytes(cm.ir, "stream", 10, state) == expected + 2 * state
    # per utterance frame: the recurrent weight every frame, the projection once in 10
    recurrent = per_kernel["gru_sequence"]
    utt = frame_bytes(cm.ir, "utterance", 10, state)
    assert utt == int(recurrent + per_kernel["input_projection"] / 10) + 2 * state


def test_bspc_step_reads_the_panel_layout():
    model = _gru()
    U = model.weight_hh_l0.detach().numpy()
    mask = bsp_mask(U, 6, 4, col_rate=2.0, row_rate=2.0)
    with torch.no_grad():
        model.weight_hh_l0.mul_(torch.from_numpy(mask))
    knobs = {"lanes": 8, "k_split": 2, "threads": 1}
    cm = tvm_bsp.compile_model(model, bspc={"weight_hh_l0": mask}, grid=(6, 4), knobs=knobs)
    matrix = cm.sparse["weight_hh_l0"]
    layout = pack_panels(matrix, panel_rows=8, k_split=2, threads=1)
    arrays = ("thread_ptr", "panel_ptr", "cols", "vals", "row_slot")
    expected_u = sum(layout.arrays[n].nbytes for n in arrays) + 16 * 4  # + b_hn
    assert kernel_bytes(cm.ir, "forward")["gru_sequence"] == expected_u
    assert expected_u < (3 * 16 * 16 + 16) * 4  # smaller than the dense U


def test_read_bandwidth_is_finite_and_a_larger_read_takes_longer():
    small = read_bandwidth(64 << 10, min_seconds=0.002)
    assert np.isfinite(small) and small > 0.1
    assert roofline_us(1 << 20) > roofline_us(16 << 10)


@pytest.mark.parametrize("mode", ["stream", "utterance"])
def test_frame_bytes_names_the_mode(mode):
    cm = tvm_bsp.compile_model(_gru(), knobs={"lanes": 8})
    assert frame_bytes(cm.ir, mode, 4, 0) > 0
