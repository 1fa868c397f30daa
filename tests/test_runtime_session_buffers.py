"""The session's call path without copies (tvm_bsp.runtime.session): results stay valid.

Outputs are zero-copy views of the VM's tensors, inputs reach the device zero-copy when
aligned or through staging tensors the session reuses, and ``push`` keeps the state on the
device. These tests check that nothing a caller holds is overwritten by a later call, against
torch.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import tvm_bsp


@pytest.fixture(scope="module")
def gru():
    torch.manual_seed(0)
    model = torch.nn.GRU(7, 16, 2).eval()
    return model, tvm_bsp.compile_model(model)


def _torch_steps(model, frames):
    h, ys = None, []
    with torch.no_grad():
        for f in frames:
            y, h = model(torch.from_numpy(f)[None], h)
            ys.append(y[0].numpy())
    return ys, h.numpy()


def _unaligned(a):
    """A copy of ``a`` whose data does not start on a 64-byte boundary."""
    raw = np.empty(a.size + 16, np.float32)
    offset = next(i for i in range(16) if (raw[i:].ctypes.data % 64) != 0)
    out = raw[offset : offset + a.size].reshape(a.shape)
    out[...] = a
    return out


@pytest.mark.parametrize("layout", ["aligned", "unaligned"])
def test_pushed_outputs_stay_valid_and_match_torch(gru, layout):
    model, cm = gru
    session = cm.session
    session.reset()
    rng = np.random.default_rng(1)
    frames = [rng.standard_normal((1, 7)).astype(np.float32) for _ in range(6)]
    if layout == "unaligned":
        frames = [_unaligned(f) for f in frames]
        assert all(f.ctypes.data % 64 for f in frames)
    ys = [session.push(f) for f in frames]  # every y kept while later frames run
    expected, h = _torch_steps(model, frames)
    for y, e in zip(ys, expected, strict=True):
        np.testing.assert_allclose(y, e, atol=1e-5)
    np.testing.assert_allclose(session.state, h, atol=1e-5)


def test_state_read_is_a_copy_and_set_state_continues_the_stream(gru):
    model, cm = gru
    session = cm.session
    session.reset()
    rng = np.random.default_rng(2)
    frames = [rng.standard_normal((1, 7)).astype(np.float32) for _ in range(4)]
    for f in frames[:2]:
        session.push(f)
    saved = session.state
    saved_copy = saved.copy()
    session.push(frames[2])
    np.testing.assert_array_equal(saved, saved_copy)  # the read state did not move on
    session.state = saved
    y = session.push(frames[2])
    expected, _ = _torch_steps(model, frames[:3])
    np.testing.assert_allclose(y, expected[2], atol=1e-5)


def test_forward_results_survive_the_next_call(gru):
    model, cm = gru
    session = cm.session
    rng = np.random.default_rng(3)
    x1 = rng.standard_normal((5, 1, 7)).astype(np.float32)
    x2 = _unaligned(rng.standard_normal((5, 1, 7)).astype(np.float32))
    y1, h1 = session.forward(x1)
    y2, _ = session.forward(x2)
    with torch.no_grad():
        e1, eh1 = model(torch.from_numpy(x1))
        e2, _ = model(torch.from_numpy(np.ascontiguousarray(x2)))
    np.testing.assert_allclose(y1, e1.numpy(), atol=1e-5)
    np.testing.assert_allclose(h1, eh1.numpy(), atol=1e-5)
    np.testing.assert_allclose(y2, e2.numpy(), atol=1e-5)
