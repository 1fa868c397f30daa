"""compile_model end to end: compiled modules against torch, streaming, export and load."""

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
from tvm_bsp.bspc import BSPCMatrix, save_bspc
from tvm_bsp.frontend import KaldiGRU, UnsupportedModuleError
from tvm_bsp.prune import bsp_mask
from tvm_bsp.prune.masked import add_mask

I, H, O = 13, 37, 5
ATOL = 1e-4
REPO = Path(__file__).resolve().parents[1]


class Stack(nn.Module):
    def __init__(self, rnn: nn.Module, head: nn.Module | None = None) -> None:
        super().__init__()
        self.rnn = rnn
        if head is not None:
            self.head = head

    def forward(self, x, h=None):
        y, h = self.rnn(x, h)
        return (self.head(y) if hasattr(self, "head") else y), h


def _rnn(cell: str, layers: int, batch_first: bool = False, bias: bool = True) -> nn.Module:
    if cell == "gru":
        return nn.GRU(I, H, layers, bias=bias, batch_first=batch_first)
    if cell == "lstm":
        return nn.LSTM(I, H, layers, bias=bias, batch_first=batch_first)
    model = KaldiGRU(I, H, layers, bias=bias, batch_first=batch_first, dropout=0.2)
    with torch.no_grad():
        for bn in model.bn:
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
    return model


def _prune(rnn: nn.Module, col_rate: float, row_rate: float, grid=(3, 2)) -> dict[str, np.ndarray]:
    """Put BSP masks on every weight matrix of ``rnn`` (parametrizations), return them."""
    masks = {}
    for name, p in list(rnn.named_parameters()):
        if name.startswith("weight"):
            mask = bsp_mask(p.detach(), grid[0], grid[1], col_rate, row_rate)
            add_mask(rnn, name, mask)
            masks[name] = mask.numpy()
    return masks


def _state_to_torch(cell: str, state: np.ndarray):
    t = torch.from_numpy(state)
    return (t[:, 0].contiguous(), t[:, 1].contiguous()) if cell == "lstm" else t


def _torch_run(model: nn.Module, cell: str, x: np.ndarray, state: np.ndarray):
    with torch.no_grad():
        y, h = model(torch.from_numpy(x), _state_to_torch(cell, state))
    h = torch.stack(h, 1) if isinstance(h, tuple) else h
    return y.numpy(), h.numpy()


CASES = {
    # name: (cell, layers, batch_first, bias, head, (col_rate, row_rate) or None, knobs)
    "gru2": ("gru", 2, False, True, True, None, None),
    "gru2_bsp2": ("gru", 2, False, True, True, (2.0, 1.0), None),
    "gru2_bsp6": ("gru", 2, False, True, True, (3.0, 2.0), None),
    "gru1_nobias_bf": ("gru", 1, True, False, True, None, None),
    "lstm3_bf": ("lstm", 3, True, True, False, None, None),
    "lstm2_bsp4_par": ("lstm", 2, False, False, True, (2.0, 2.0), {"min_parallel_macs": 0}),
    "kaldi2": ("kaldi_gru", 2, False, False, True, None, {"min_parallel_macs": 0}),
    "kaldi3_bsp4_bf": ("kaldi_gru", 3, True, True, True, (2.0, 2.0), None),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def compiled(request):
    cell, layers, batch_first, bias, head, rates, knobs = CASES[request.param]
    torch.manual_seed(hash(request.param) % 1000)
    rnn = _rnn(cell, layers, batch_first, bias)
    if rates is not None:
        _prune(rnn, *rates)
    model = Stack(rnn, nn.Sequential(nn.Linear(H, O), nn.ReLU()) if head else None).eval()
    cm = tvm_bsp.compile_model(model, knobs=knobs)
    return request.param, cell, batch_first, model, cm


def _inputs(cm, batch_first: bool, T: int, B: int, seed: int):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((B, T, I) if batch_first else (T, B, I)).astype(np.float32)
    state = (0.5 * rng.standard_normal(cm.model.state_shape(B))).astype(np.float32)
    return x, state


@pytest.mark.parametrize(("T", "B"), [(1, 1), (7, 3)])
def test_forward_matches_torch(compiled, T, B):
    name, cell, batch_first, model, cm = compiled
    x, state = _inputs(cm, batch_first, T, B, seed=T * 10 + B)
    y, h = cm.forward(x, state)
    y_ref, h_ref = _torch_run(model, cell, x, state)
    np.testing.assert_allclose(y, y_ref, atol=ATOL, err_msg=name)
    np.testing.assert_allclose(h, h_ref, atol=ATOL, err_msg=name)
    if name.startswith(("gru2_bsp", "lstm2_bsp", "kaldi3_bsp")):
        assert cm.sparse, "pruned weights must compile to BSPC"
        kinds = [str(f.attrs["tvm_bsp.kernel"]) for _, f in cm.ir.functions_items()
                 if f.attrs is not None and "tvm_bsp.kernel" in f.attrs]  # fmt: skip
        sequences = [k for k in kinds if k.endswith("_sequence")]
        assert sequences and all(k.startswith("bspc_") for k in sequences), kinds


def test_streaming_equals_utterance(compiled):
    _, _, batch_first, _, cm = compiled
    x, _ = _inputs(cm, batch_first, 9, 2, seed=1)
    y, h = cm.forward(x)  # zero initial state
    frames = np.swapaxes(x, 0, 1) if batch_first else x
    state, outs = None, []
    for frame in frames:
        y_t, state = cm.step(frame, state)
        outs.append(y_t)
    stream = np.stack(outs, 1 if batch_first else 0)
    np.testing.assert_allclose(stream, y, atol=1e-5)
    np.testing.assert_allclose(state, h, atol=1e-5)
    cm.reset()
    pushed = np.stack([cm.push(frame) for frame in frames], 1 if batch_first else 0)
    np.testing.assert_allclose(pushed, y, atol=1e-5)


def _gru_model(seed: int = 0, prune: bool = True, layers: int = 2):
    torch.manual_seed(seed)
    rnn = nn.GRU(I, H, layers)
    masks = _prune(rnn, 2.0, 1.5) if prune else {}
    return Stack(rnn, nn.Linear(H, O)).eval(), masks


def test_bspc_sources_dict_directory_auto(tmp_path):
    model, masks = _gru_model(3, layers=1)
    x = np.random.default_rng(0).standard_normal((5, 2, I)).astype(np.float32)
    with torch.no_grad():
        y_ref = model(torch.from_numpy(x))[0].numpy()
        weights = {f"rnn.{n}": getattr(model.rnn, n).numpy().copy() for n in masks}
    matrices = {n: BSPCMatrix.from_dense(w, masks[n[4:]], 3, 2) for n, w in weights.items()}
    for n, m in matrices.items():
        save_bspc(m, tmp_path / f"{n}.npz")
    for source in (None, matrices, str(tmp_path)):  # parametrization masks, dict, directory
        cm = tvm_bsp.compile_model(model, bspc=source)
        assert sorted(cm.sparse) == sorted(matrices)
        np.testing.assert_allclose(cm.forward(x)[0], y_ref, atol=ATOL)
    squashed = Stack(nn.GRU(I, H, 1), nn.Linear(H, O)).eval()  # pruned weights, no masks
    with torch.no_grad():
        for n, p in squashed.named_parameters():
            p.copy_(torch.from_numpy(weights[n]) if n in weights else model.get_parameter(n))
    auto = tvm_bsp.compile_model(squashed, bspc="auto")
    assert sorted(auto.sparse) == sorted(matrices)
    assert {(m.row_blocks, m.col_blocks) for m in auto.sparse.values()} == {(3, 2)}
    np.testing.assert_allclose(auto.forward(x)[0], y_ref, atol=ATOL)


def test_bspc_mismatch_is_refused():
    model, _ = _gru_model(4, prune=False)
    rng = np.random.default_rng(0)
    w = rng.standard_normal((3 * H, H)).astype(np.float32)
    other = BSPCMatrix.from_dense(w, bsp_mask(w, 3, 2, 2.0, 1.0), 3, 2)
    with pytest.raises(ValueError, match="differs from the model"):
        tvm_bsp.compile_model(model, bspc={"rnn.weight_hh_l0": other})
    with pytest.raises(ValueError, match="not weights of the model"):
        tvm_bsp.compile_model(model, bspc={"rnn.weight_hh_l9": other})


def test_unsupported_targets_and_modules():
    model, _ = _gru_model(5, prune=False)
    with pytest.raises(NotImplementedError, match="cuda"):  # OpenCL: tests/test_kernels_rnn_gpu.py
        tvm_bsp.compile_model(model, target={"kind": "cuda"})
    with pytest.raises(UnsupportedModuleError, match="RNN is not supported"):
        tvm_bsp.compile_model(nn.RNN(I, H))


_RUNTIME_ONLY = """
import sys, numpy as np
import tvm_bsp.runtime.load as load
session = load(sys.argv[1])
x = np.load(sys.argv[2])
y, h = session.forward(x)
np.save(sys.argv[3], y)
# (tvm_ffi itself imports torch when it is installed; the compiler must stay out)
prefixes = (
    "tvm.relax", "tvm_bsp.compiler", "tvm_bsp.frontend", "tvm_bsp.passes", "tvm_bsp.kernels"
)
heavy = sorted(m for m in sys.modules if m.startswith(prefixes))
print("heavy:", heavy)
"""


def test_export_and_runtime_only_load(tmp_path):
    model, _ = _gru_model(6)
    cm = tvm_bsp.compile_model(model)
    path = cm.export(tmp_path / "gru.so")
    x, _ = _inputs(cm, False, 6, 2, seed=2)
    np.save(tmp_path / "x.npy", x)
    env = dict(os.environ, TVM_USE_RUNTIME_LIB="1", PYTHONPATH=str(REPO))
    res = subprocess.run(
        [
            sys.executable,
            "-c",
            _RUNTIME_ONLY,
            str(path),
            str(tmp_path / "x.npy"),
            str(tmp_path / "y.npy"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "heavy: []" in res.stdout
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), cm.forward(x)[0], atol=1e-6)
    assert cm.meta["sparse"] == sorted(cm.sparse)


_GUEST = """
import json, numpy as np
from tvm_bsp.runtime.load import load
s = load("model.so")
x = np.load("x.npy", allow_pickle=False)
state0 = np.load("state.npy", allow_pickle=False)
y, h = s.forward(x, state0)
np.save("y.npy", y, allow_pickle=False)
np.save("h.npy", h, allow_pickle=False)
state, outs = state0, []
for frame in x:
    y_t, state = s.step(frame, state)
    outs.append(y_t)
np.save("stream.npy", np.stack(outs), allow_pickle=False)
print(json.dumps(s.meta))
"""


@pytest.mark.aarch64
@pytest.mark.parametrize("cell", ["gru", "lstm", "kaldi_gru"])
def test_arm64_build_under_qemu(tmp_path, cell):
    from tvm_bsp.devices.aarch64 import require_arm64, run_in_arm64

    require_arm64()
    torch.manual_seed(7)
    rnn = _rnn(cell, 2)
    _prune(rnn, 2.0, 1.5)
    model = Stack(rnn, nn.Linear(H, O)).eval()
    cm = tvm_bsp.compile_model(model, target="arm64", knobs={"min_parallel_macs": 0})
    assert not cm.runnable
    lib = cm.export(tmp_path / "model.so")
    x, state = _inputs(cm, False, 6, 2, seed=3)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "state.npy", state)
    from tvm_bsp.deploy.shipped import runtime_files  # what a device gets from tvm-bsp deploy

    files = {
        "model.so": lib,
        "x.npy": tmp_path / "x.npy",
        "state.npy": tmp_path / "state.npy",
        **runtime_files(),
    }
    res = run_in_arm64(_GUEST + _COPY_BACK, files, timeout=600)
    assert res.returncode == 0, res.stderr[-4000:]
    outs = {k: np.frombuffer(bytes.fromhex(v), np.float32) for k, v in _parse(res.stdout).items()}
    y_ref, h_ref = _torch_run(model, cell, x, state)
    np.testing.assert_allclose(outs["y"].reshape(y_ref.shape), y_ref, atol=ATOL)
    np.testing.assert_allclose(outs["h"].reshape(h_ref.shape), h_ref, atol=ATOL)
    np.testing.assert_allclose(outs["stream"].reshape(y_ref.shape), y_ref, atol=ATOL)


_COPY_BACK = """
for f in ("y", "h", "stream"):
    print("OUT", f, np.load(f + ".npy", allow_pickle=False).astype(np.float32).tobytes().hex())
"""


def _parse(stdout: str) -> dict[str, str]:
    out = {}
    for line in stdout.splitlines():
        if line.startswith("OUT "):
            _, key, value = line.split(" ", 2)
            out[key] = value
    return out


@pytest.mark.slow
@pytest.mark.parametrize("cell", ["gru", "lstm", "kaldi_gru"])
@pytest.mark.parametrize(("col_rate", "row_rate"), [(2.0, 1.0), (4.0, 2.0), (8.0, 4.0)])
@pytest.mark.parametrize("layers", [1, 3])
def test_rate_sweep(cell, col_rate, row_rate, layers):
    torch.manual_seed(layers)
    rnn = _rnn(cell, layers, batch_first=layers == 3)
    _prune(rnn, col_rate, row_rate, grid=(6, 3))
    model = Stack(rnn, nn.Linear(H, O)).eval()
    for knobs in (None, {"min_parallel_macs": 0, "lanes": 4}):
        cm = tvm_bsp.compile_model(model, knobs=knobs)
        x, state = _inputs(cm, layers == 3, 11, 2, seed=5)
        y, h = cm.forward(x, state)
        y_ref, h_ref = _torch_run(model, cell, x, state)
        np.testing.assert_allclose(y, y_ref, atol=ATOL)
        np.testing.assert_allclose(h, h_ref, atol=ATOL)


def test_tuned_knobs_reach_the_kernels():
    model, _ = _gru_model(8, layers=1)
    tuned = {"rnn.weight_hh_l0": {"lanes": 4, "k_split": 1}, "*": {"frames": 2}}
    cm = tvm_bsp.compile_model(model, tuned=tuned)
    knobs = {
        str(f.attrs["tvm_bsp.kernel"]): json.loads(str(f.attrs["tvm_bsp.knobs"]))
        for _, f in cm.ir.functions_items()
        if f.attrs is not None and "tvm_bsp.kernel" in f.attrs
    }
    assert knobs["bspc_gru_sequence"]["lanes"] == 4
    assert knobs["bspc_gru_sequence"]["frames"] == 2
    assert knobs["dense_linear"]["lanes"] != 4  # the head keeps the target default
    x = np.random.default_rng(1).standard_normal((4, 2, I)).astype(np.float32)
    y_ref, _ = _torch_run(model, "gru", x, np.zeros((1, 2, H), np.float32))
    np.testing.assert_allclose(cm.forward(x)[0], y_ref, atol=ATOL)
