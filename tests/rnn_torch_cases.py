"""Shared helpers of the tests of bidirectional, projected and cell modules against torch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tvm_bsp.prune import bsp_mask
from tvm_bsp.prune.masked import add_mask

ATOL = 1e-4


def prune(module: nn.Module, grid=(3, 2), col_rate: float = 2.0, row_rate: float = 1.5) -> list:
    """BSP masks (parametrizations) on every ``weight*`` matrix of ``module``; their names."""
    names = []
    for name, p in list(module.named_parameters()):
        if name.rpartition(".")[2].startswith("weight") and p.dim() == 2:
            owner = module.get_submodule(name.rpartition(".")[0]) if "." in name else module
            add_mask(
                owner, name.rpartition(".")[2], bsp_mask(p.detach(), *grid, col_rate, row_rate)
            )
            names.append(name)
    return names


def to_torch_state(state: np.ndarray, cell: str, proj: int = 0):
    """Our state layout (see tvm_bsp.frontend.model) as torch's ``h_0`` / ``(h_0, c_0)``."""
    t = torch.from_numpy(np.ascontiguousarray(state))
    if cell != "lstm":
        return t
    h = t[:, 0, :, :proj] if proj else t[:, 0]
    return h.contiguous(), t[:, 1].contiguous()


def from_torch_state(h, hidden: int) -> np.ndarray:
    """torch's ``h_n`` / ``(h_n, c_n)`` in our layout (projected ``h`` zero-padded to ``H``)."""
    if not isinstance(h, tuple):
        return h.detach().numpy()
    hn, cn = (v.detach().numpy() for v in h)
    out = np.zeros((hn.shape[0], 2, hn.shape[1], hidden), np.float32)
    out[:, 0, :, : hn.shape[2]] = hn
    out[:, 1] = cn
    return out


def random_state(model, batch: int, seed: int) -> np.ndarray:
    """A random state of ``model`` (an RNNModel), zero where the layout pads."""
    state = 0.5 * np.random.default_rng(seed).standard_normal(model.state_shape(batch))
    state = state.astype(np.float32)
    if model.proj_size:
        state[:, 0, :, model.proj_size :] = 0
    return state


def kernel_kinds(cm) -> list[str]:
    """The ``tvm_bsp.kernel`` tags of the compiled module's sequence kernels."""
    kinds = [
        str(f.attrs["tvm_bsp.kernel"])
        for _, f in cm.ir.functions_items()
        if f.attrs is not None and "tvm_bsp.kernel" in f.attrs
    ]
    return [k for k in kinds if k.endswith("_sequence")]


GUEST = """
import json, numpy as np
from tvm_bsp.runtime.load import load
s = load("model.so")
x = np.load("x.npy", allow_pickle=False)
state0 = np.load("state.npy", allow_pickle=False)
y, h = s.forward(x, state0)
outs = {"y": y, "h": h}
if s.meta.get("streamable", True):
    state, ys = state0, []
    for frame in x:
        y_t, state = s.step(frame, state)
        ys.append(y_t)
    outs["stream"] = np.stack(ys)
for k, v in outs.items():
    a = np.ascontiguousarray(v, np.float32)
    print("OUT", k, json.dumps(list(a.shape), separators=(",", ":")), a.tobytes().hex())
"""


def run_arm64(cm, x: np.ndarray, state: np.ndarray, tmp_path: Path) -> dict[str, np.ndarray]:
    """Export ``cm`` (an arm64 build), run forward (and step if streamable) under qemu."""
    from tvm_bsp.deploy.shipped import runtime_files
    from tvm_bsp.devices.aarch64 import run_in_arm64

    lib = cm.export(tmp_path / "model.so")
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "state.npy", state)
    files = {
        "model.so": lib,
        "x.npy": tmp_path / "x.npy",
        "state.npy": tmp_path / "state.npy",
        **runtime_files(),  # what tvm-bsp deploy copies to a device
    }
    res = run_in_arm64(GUEST, files, timeout=900)
    assert res.returncode == 0, res.stderr[-4000:]
    outs = {}
    for line in res.stdout.splitlines():
        if line.startswith("OUT "):
            _, name, shape, data = line.split(" ", 3)
            outs[name] = np.frombuffer(bytes.fromhex(data), np.float32).reshape(json.loads(shape))
    return outs
