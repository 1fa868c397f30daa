"""Exported .so files run in a fresh process through tvm_bsp.runtime.load, no torch/compiler."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import tvm_bsp
from tvm_bsp.compiler.model_file import RNNStack
from tvm_bsp.prune import bsp_mask
from tvm_bsp.prune.masked import add_mask

I, H, O = 13, 37, 5
ATOL = 1e-4

# The child blocks torch (tvm_ffi imports it when it is installed; a device has none), so any
# import of torch by tvm_bsp fails loudly, and reports what it imported. It sees only the files
# `tvm-bsp deploy` ships (PYTHONPATH): the finder of an editable install of tvm_bsp, which would
# fill in any other module from the repository, is dropped as on a device that has none.
_CHILD = """
import json, sys
sys.modules["torch"] = None
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in getattr(f, "__module__", "")]
import numpy as np
import tvm_bsp.runtime
print("RUNTIME " + tvm_bsp.runtime.__file__)

spec = json.load(open(sys.argv[1]))
for case in spec:
    session = tvm_bsp.runtime.load(case["so"])
    x = np.load(case["x"], allow_pickle=False)
    state = np.load(case["state"], allow_pickle=False)
    y, h = session.forward(x, state)
    session.reset()
    pushed = np.stack([session.push(frame) for frame in x])
    np.save(case["out"] + "_y.npy", y, allow_pickle=False)
    np.save(case["out"] + "_h.npy", h, allow_pickle=False)
    np.save(case["out"] + "_pushed.npy", pushed, allow_pickle=False)
loaded = sorted(m for m, v in sys.modules.items() if v is not None)
print("MODULES " + json.dumps(loaded))
"""


def _model(cell: str, pruned: bool, seed: int) -> RNNStack:
    torch.manual_seed(seed)
    rnn = nn.GRU(I, H, 2) if cell == "gru" else nn.LSTM(I, H, 2)
    if pruned:
        for name, p in list(rnn.named_parameters()):
            if name.startswith("weight"):
                add_mask(rnn, name, bsp_mask(p.detach(), 3, 2, 2.0, 1.5))
    return RNNStack(rnn, nn.Linear(H, O)).eval()


def _torch(model: RNNStack, cell: str, x: np.ndarray, state: np.ndarray):
    s = torch.from_numpy(state)
    h0 = (s[:, 0].contiguous(), s[:, 1].contiguous()) if cell == "lstm" else s
    with torch.no_grad():
        y, h = model(torch.from_numpy(x), h0)
    h = torch.stack(h, 1) if isinstance(h, tuple) else h
    return y.numpy(), h.numpy()


def _zero_state_torch(model: RNNStack, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x))[0].numpy()


CASES = [("gru", False), ("gru", True), ("lstm", False), ("lstm", True)]
#: Default (fast) run: a dense GRU and a BSPC LSTM; the slow test runs the other two.
FAST = [("gru", False), ("lstm", True)]


def _build(tmp_path: Path, target: str, which: list[tuple[str, bool]]) -> list[dict]:
    from tvm_bsp.deploy.targets import export_library

    cases = []
    for k, (cell, pruned) in enumerate(which):
        model = _model(cell, pruned, seed=k)
        cm = tvm_bsp.compile_model(model, target=target, knobs={"min_parallel_macs": 0})
        assert bool(cm.sparse) == pruned
        so = export_library(cm.executable, target, tmp_path / f"{cell}{k}.so")
        rng = np.random.default_rng(k)
        x = rng.standard_normal((6, 2, I)).astype(np.float32)
        state = (0.5 * rng.standard_normal(cm.model.state_shape(2))).astype(np.float32)
        np.save(tmp_path / f"x{k}.npy", x)
        np.save(tmp_path / f"s{k}.npy", state)
        cases.append(
            {
                "so": so.name,
                "x": f"x{k}.npy",
                "state": f"s{k}.npy",
                "out": f"o{k}",
                "model": model,
                "cell": cell,
            }
        )
    return cases


def _check(cases: list[dict], read) -> None:
    for case in cases:
        x = np.load(case["x_path"])
        state = np.load(case["state_path"])
        y_ref, h_ref = _torch(case["model"], case["cell"], x, state)
        np.testing.assert_allclose(read(case["out"] + "_y"), y_ref, atol=ATOL)
        np.testing.assert_allclose(read(case["out"] + "_h"), h_ref, atol=ATOL)
        pushed = read(case["out"] + "_pushed")
        np.testing.assert_allclose(pushed, _zero_state_torch(case["model"], x), atol=ATOL)


def _spec(cases: list[dict]) -> list[dict]:
    return [{k: v for k, v in c.items() if k in ("so", "x", "state", "out")} for c in cases]


def _assert_runtime_only(stdout: str) -> None:
    lines = [ln for ln in stdout.splitlines() if ln.startswith("MODULES ")]
    assert lines, stdout[-2000:]
    loaded = json.loads(lines[-1][len("MODULES ") :])
    assert not [m for m in loaded if m == "torch" or m.startswith("torch.")]
    assert not [m for m in loaded if m.startswith(("tvm_bsp.compiler", "tvm_bsp.frontend"))]
    compiler_side = ("tvm_bsp.kernels", "tvm_bsp.passes", "tvm.relax")
    assert not [m for m in loaded if m.startswith(compiler_side)]
    assert "tvm_bsp.runtime.session" in loaded
    others = [m for m in loaded if m.startswith("tvm_bsp.") and not m.startswith("tvm_bsp.runtime")]
    assert not others, f"the runtime imported other tvm_bsp modules: {others}"


def _shipped(root: Path) -> Path:
    """Copy the files ``tvm-bsp deploy`` ships to a device into ``root``; return it."""
    from tvm_bsp.deploy.shipped import runtime_files

    for rel, src in runtime_files().items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, root / rel)
    return root


def _run_host(tmp_path: Path, which: list[tuple[str, bool]]) -> None:
    cases = _build(tmp_path, "host", which)
    (tmp_path / "spec.json").write_text(json.dumps(_spec(cases)))
    device = _shipped(tmp_path / "device")
    env = dict(os.environ, TVM_USE_RUNTIME_LIB="1", PYTHONPATH=str(device))
    res = subprocess.run(
        [sys.executable, "-c", _CHILD, "spec.json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    _assert_runtime_only(res.stdout)
    where = next(ln for ln in res.stdout.splitlines() if ln.startswith("RUNTIME "))
    assert Path(where.split(" ", 1)[1]).parent == device / "tvm_bsp" / "runtime"
    for c in cases:
        c["x_path"], c["state_path"] = tmp_path / c["x"], tmp_path / c["state"]
    _check(cases, lambda name: np.load(tmp_path / f"{name}.npy"))


def test_host_so_in_fresh_process_matches_torch(tmp_path):
    _run_host(tmp_path, FAST)


@pytest.mark.slow
def test_host_so_in_fresh_process_matches_torch_other_cases(tmp_path):
    _run_host(tmp_path, [c for c in CASES if c not in FAST])


_COPY_BACK = """
import glob
for f in sorted(glob.glob("o*_*.npy")):
    a = np.load(f, allow_pickle=False).astype(np.float32)
    print("OUT", f[:-4], json.dumps(list(a.shape), separators=(",", ":")), a.tobytes().hex())
"""


@pytest.mark.slow
@pytest.mark.aarch64
def test_arm64_so_under_qemu_matches_torch(tmp_path):
    from tvm_bsp.deploy.shipped import runtime_files
    from tvm_bsp.devices.aarch64 import require_arm64, run_in_arm64

    require_arm64()
    cases = _build(tmp_path, "arm64", CASES)
    (tmp_path / "spec.json").write_text(json.dumps(_spec(cases)))
    files = {"spec.json": tmp_path / "spec.json", **runtime_files()}
    for c in cases:
        for key in ("so", "x", "state"):
            files[c[key]] = tmp_path / c[key]
    script = _CHILD.replace("json.load(open(sys.argv[1]))", 'json.load(open("spec.json"))')
    res = run_in_arm64(script + _COPY_BACK, files, timeout=900)
    assert res.returncode == 0, res.stderr[-4000:]
    _assert_runtime_only(res.stdout)
    outs = {}
    for line in res.stdout.splitlines():
        if line.startswith("OUT "):
            _, name, shape, data = line.split(" ", 3)
            outs[name] = np.frombuffer(bytes.fromhex(data), np.float32).reshape(json.loads(shape))
    for c in cases:
        c["x_path"], c["state_path"] = tmp_path / c["x"], tmp_path / c["state"]
    _check(cases, outs.__getitem__)
