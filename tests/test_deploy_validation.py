"""Run-time input checks of Session.forward / step / push (deploy.load and CompiledModel) and of
the deployed runner: bad input is a clear Python exception naming the expected and the given
shape or dtype; float64, lists and non-contiguous arrays are converted (results = torch's)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import tvm_bsp
from tvm_bsp.compiler.model_file import RNNStack

I, H, O = 13, 37, 5
REPO = Path(__file__).resolve().parents[1]

# Each bad case runs in a child process with the runtime-only loader: a crash there fails the
# test (exit code) instead of killing pytest. Every case prints one JSON line.
_CHILD = r"""
import json, sys
import numpy as np
import tvm_bsp.runtime

s = tvm_bsp.runtime.load(sys.argv[1])
rng = np.random.default_rng(0)
x = rng.standard_normal((4, 1, 13)).astype(np.float32)
wide = rng.standard_normal((4, 3, 26)).astype(np.float32)
CASES = {
    "features": lambda: s.forward(x[..., :12]),
    "rank": lambda: s.forward(x[:, 0]),
    "no_frames": lambda: s.forward(x[:0]),
    "no_batch": lambda: s.forward(x[:, :0]),
    "int_dtype": lambda: s.forward(x.astype(np.int32)),
    "half_dtype": lambda: s.forward(x.astype(np.float16)),
    "ragged": lambda: s.forward([[1.0, 2.0], [3.0]]),
    "strings": lambda: s.forward(np.full((4, 1, 13), "a")),
    "state_shape": lambda: s.forward(x, np.zeros((1, 1, 37), np.float32)),
    "state_dtype": lambda: s.forward(x, np.zeros((2, 1, 37), np.int64)),
    "step_rank": lambda: s.step(x),
    "step_vector": lambda: s.step(x[0, 0]),
    "step_state": lambda: s.step(x[0], np.zeros((2, 2, 37), np.float32)),
    "push_features": lambda: s.push(np.zeros((1, 14), np.float32)),
    "push_dtype": lambda: s.push(np.zeros((1, 13), bool)),
    "set_state": lambda: setattr(s, "state", np.zeros((3, 1, 37), np.float32)),
}
for name, case in CASES.items():
    try:
        case()
        print(json.dumps({"case": name, "error": None}))
    except Exception as err:
        print(json.dumps({"case": name, "error": type(err).__name__, "message": str(err)}))

GOOD = {
    "float64": lambda: s.forward(x.astype(np.float64))[0],
    "list": lambda: s.forward(x.tolist())[0],
    "fortran": lambda: s.forward(np.asfortranarray(x))[0],
    "strided": lambda: s.forward(wide[:, 1:2, ::2])[0],
    "state64": lambda: s.forward(x, np.zeros((2, 1, 37)))[0],
    "step64": lambda: s.step(x[0].astype(np.float64))[0][None],
}
for name, case in GOOD.items():
    y = np.asarray(case(), np.float32)
    print(json.dumps({"case": name, "shape": list(y.shape), "data": y.tobytes().hex()}))
s.reset()
pushed = np.stack([s.push(frame) for frame in x])  # after the bad push: a clean stream
print(json.dumps({"case": "push", "shape": list(pushed.shape), "data": pushed.tobytes().hex()}))
"""

EXPECTED = {
    "features": ("ValueError", "expected (T, B, 13) features, got shape (4, 1, 12)"),
    "rank": ("ValueError", "expected (T, B, 13) features, got shape (4, 13)"),
    "no_frames": ("ValueError", "at least one frame (T >= 1), got (0, 1, 13)"),
    "no_batch": ("ValueError", "at least one sequence, got (4, 0, 13)"),
    "int_dtype": ("TypeError", "must be float32 (float64 is converted), got dtype int32"),
    "half_dtype": ("TypeError", "got dtype float16"),
    "ragged": ("TypeError", "x must be a float32 array"),
    "strings": ("TypeError", "got dtype <U1"),
    "state_shape": ("ValueError", "state: expected shape (2, 1, 37) (batch 1), got (1, 1, 37)"),
    "state_dtype": ("TypeError", "state must be float32 (float64 is converted), got dtype int64"),
    "step_rank": ("ValueError", "step: expected (B, 13) features, got shape (4, 1, 13)"),
    "step_vector": ("ValueError", "got shape (13,); one frame is x_t[None]"),
    "step_state": ("ValueError", "expected shape (2, 1, 37) (batch 1), got (2, 2, 37)"),
    "push_features": ("ValueError", "push: expected (B, 13) features, got shape (1, 14)"),
    "push_dtype": ("TypeError", "x_t must be float32 (float64 is converted), got dtype bool"),
    "set_state": ("ValueError", "expected shape (2, 1, 37) (batch 1), got (3, 1, 37)"),
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    model = RNNStack(nn.GRU(I, H, 2), nn.Linear(H, O)).eval()
    cm = tvm_bsp.compile_model(model, target="host")
    return model, cm, cm.export(tmp_path_factory.mktemp("validation") / "gru.so")


def _child(so: Path) -> dict[str, dict]:
    env = dict(os.environ, TVM_USE_RUNTIME_LIB="1", PYTHONPATH=str(REPO))
    res = subprocess.run(
        [sys.executable, "-c", _CHILD, str(so)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return {r["case"]: r for r in map(json.loads, res.stdout.splitlines())}


def test_bad_inputs_raise_clear_errors_in_a_fresh_process(exported):
    model, _, so = exported
    results = _child(so)
    for name, (kind, message) in EXPECTED.items():
        got = results[name]
        assert got["error"] == kind, (name, got)
        assert message in got["message"], (name, got["message"])
    x = np.random.default_rng(0).standard_normal((4, 1, I)).astype(np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(x))[0].numpy()
    for name in ("float64", "list", "fortran", "state64", "step64", "push"):
        got = results[name]
        y = np.frombuffer(bytes.fromhex(got["data"]), np.float32).reshape(got["shape"])
        ref = want[:1] if name == "step64" else want
        np.testing.assert_allclose(y, ref, atol=1e-4, err_msg=name)
    strided = results["strided"]  # a (4, 1, 13) view with steps in two axes
    rng = np.random.default_rng(0)  # the child's draws: x, then the wide array
    rng.standard_normal((4, 1, I))
    view = rng.standard_normal((4, 3, 26)).astype(np.float32)[:, 1:2, ::2]
    with torch.no_grad():
        ref = model(torch.from_numpy(np.ascontiguousarray(view)))[0].numpy()
    y = np.frombuffer(bytes.fromhex(strided["data"]), np.float32).reshape(strided["shape"])
    np.testing.assert_allclose(y, ref, atol=1e-4)


def test_compiled_model_checks_the_same_way(exported):
    _, cm, _ = exported
    x = np.zeros((3, 2, I), np.float32)
    with pytest.raises(ValueError, match=r"expected \(T, B, 13\) features, got shape \(3, 2, 4\)"):
        cm.forward(x[..., :4])
    with pytest.raises(TypeError, match="got dtype int64"):
        cm.push(np.zeros((2, I), np.int64))
    with pytest.raises(ValueError, match=r"expected shape \(2, 2, 37\)"):
        cm.step(x[0], np.zeros((2, 1, H), np.float32))
    y, h = cm.forward(x.astype(np.float64))
    assert y.dtype == np.float32 and h.shape == (2, 2, H)


def test_push_keeps_its_own_state_and_setting_it_is_checked(exported):
    model, cm, _ = exported
    x = np.random.default_rng(1).standard_normal((5, 1, I)).astype(np.float32)
    with torch.no_grad():
        y_ref, h_ref = model(torch.from_numpy(x))
    cm.reset()
    for frame in x[:3]:
        cm.push(frame)
    kept = cm.session.state.copy()
    cm.reset()
    cm.session.state = kept.astype(np.float64)  # continue the stream from a saved state
    y = np.stack([cm.push(frame) for frame in x[3:]])
    np.testing.assert_allclose(y, y_ref.numpy()[3:], atol=1e-4)
    np.testing.assert_allclose(cm.session.state, h_ref.numpy(), atol=1e-4)


def _not_streamable_session():
    """A module with ``meta["streamable"] == False``: a bidirectional GRU when the compiler
    takes one, else a forward GRU whose meta says so (the session only reads the meta)."""
    torch.manual_seed(2)
    try:
        cm = tvm_bsp.compile_model(nn.GRU(I, H, 1, bidirectional=True), target="host")
    except Exception:  # bidirectional models not compiled yet
        cm = tvm_bsp.compile_model(
            nn.GRU(I, H, 1),
            target="host",
            extra_meta={"streamable": False, "streamable_reason": "it has a backward direction"},
        )
    assert cm.meta["streamable"] is False
    return cm


def test_step_and_push_refuse_a_module_that_cannot_stream():
    cm = _not_streamable_session()
    x = np.zeros((3, 1, I), np.float32)
    assert cm.session.streamable is False
    for call in (lambda: cm.step(x[0]), lambda: cm.push(x[0])):
        with pytest.raises(ValueError, match=r"cannot stream .*backward.*call forward"):
            call()
    y, _ = cm.forward(x)
    assert y.shape[:2] == (3, 1)


@pytest.mark.parametrize(
    "make, message",
    [
        (
            lambda: np.zeros((4, 12), np.float32),
            "expected (frames, 13) features, got shape (4, 12)",
        ),
        (
            lambda: np.zeros((0, 13), np.float32),
            "expected (frames, 13) features, got shape (0, 13)",
        ),
        (lambda: np.zeros((4, 13), np.int16), "float32 or float64 features, got dtype int16"),
        (lambda: np.full((4, 13), np.nan, np.float32), "NaN or infinity"),
    ],
)
def test_runner_refuses_bad_feature_files(tmp_path, exported, make, message):
    _, _, so = exported
    feats = tmp_path / "f.npy"
    np.save(feats, make())
    env = dict(os.environ, TVM_USE_RUNTIME_LIB="1", PYTHONPATH=str(REPO))
    res = subprocess.run(
        [sys.executable, "-m", "tvm_bsp.runtime.runner", str(so), "--features", str(feats)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert res.returncode == 1, res.stderr[-2000:]
    assert "runner: error:" in res.stderr and message in res.stderr.replace("\n", " ")
