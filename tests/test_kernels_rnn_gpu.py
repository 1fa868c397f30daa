"""OpenCL GRU/LSTM kernels (tvm_bsp.kernels.opencl.sequence*) on POCL against torch, and the OpenCL
compile path (``compile_model(..., "opencl-mali")`` builds and exports).

The kernels are TVM's generated OpenCL, run through :mod:`tvm_bsp.testing.opencl` (POCL via
pyopencl; ``scripts/setup_opencl.sh``); the tests skip without an OpenCL device.
"""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest
import torch

from tvm_bsp.bspc import BSPCMatrix
from tvm_bsp.frontend.kaldi_gru import KaldiGRU
from tvm_bsp.frontend.torch_import import from_torch
from tvm_bsp.kernels.layer_weights import LayerWeights
from tvm_bsp.kernels.opencl.knobs import GPURNNKnobs, default_gpu_rnn_knobs
from tvm_bsp.kernels.opencl.rnn import gpu_linear_kernel, gpu_sequence_kernel
from tvm_bsp.kernels.targets import resolve_target
from tvm_bsp.prune import bsp_mask
from tvm_bsp.testing.opencl import build_opencl_program, opencl_available, run_relax_function

needs_opencl = pytest.mark.skipif(
    not opencl_available(),
    reason="no OpenCL device through pyopencl; run scripts/setup_opencl.sh (POCL)",
)
pytestmark = pytest.mark.opencl

I, H = 13, 37
ATOL = 1e-4


# ----------------------------------------------------------------------------- models
def _torch_model(cell: str, layers: int, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    if cell == "gru":
        return torch.nn.GRU(I, H, layers).eval()
    if cell == "lstm":
        return torch.nn.LSTM(I, H, layers).eval()
    m = KaldiGRU(I, H, layers, dropout=0.2, batchnorm=True)
    with torch.no_grad():
        for bn in m.bn:  # non-trivial running statistics, folded by the importer
            bn.running_mean.uniform_(-0.3, 0.3)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.2, 0.2)
    return m.eval()


def _prune(module: torch.nn.Module, layers: int, rates: tuple[int, int] | None) -> dict:
    """BSP-prune every weight in place; return ``{(layer, role): (mask, grid)}``."""
    if rates is None:
        return {}
    masks = {}
    col_rate, row_rate = rates
    for k in range(layers):
        for role in ("ih", "hh"):
            p = getattr(module, f"weight_{role}_l{k}")
            w = p.detach().numpy()
            grid = (6, 4) if w.shape[1] >= 13 else (6, 1)
            mask = bsp_mask(w, grid[0], grid[1], col_rate=col_rate, row_rate=row_rate)
            with torch.no_grad():
                p.mul_(torch.from_numpy(mask.astype(np.float32)))
            masks[(k, role)] = (mask, grid)
    return masks


def _torch_forward(module, cell, x, state):
    with torch.no_grad():
        xt = torch.from_numpy(x)
        if cell == "lstm":
            s = torch.from_numpy(state)
            y, (h, c) = module(xt, (s[:, 0].contiguous(), s[:, 1].contiguous()))
            return y.numpy(), np.stack([h.numpy(), c.numpy()], axis=1)
        y, h = module(xt, torch.from_numpy(state))
        return y.numpy(), h.numpy()


# ---------------------------------------------------------------------------- kernels
class _Layer:
    """The input projection and sequence programs of one layer, built once, run many times."""

    def __init__(self, layer, index: int, masks: dict, target, knobs: GPURNNKnobs) -> None:
        self.cell = layer.cell
        u, w = layer.weight_hh, layer.weight_ih
        if (index, "hh") in masks:
            mask, grid = masks[(index, "hh")]
            u = BSPCMatrix.from_dense(u, mask, *grid)
        if (index, "ih") in masks:
            mask, grid = masks[(index, "ih")]
            w = BSPCMatrix.from_dense(w, mask, *grid)
        bias_ih = layer.bias_ih if layer.bias_ih is not None else np.zeros(u.shape[0], np.float32)
        weights = LayerWeights(layer.cell, u, bias_ih, layer.bias_hh, layer.candidate_scale, index)
        self.seq = gpu_sequence_kernel(weights, knobs)
        func, self.lin_consts, self.rows = gpu_linear_kernel(w, self.seq.input_bias, knobs)
        self.lin = build_opencl_program(func.with_attr("global_symbol", "main"), target)
        self.prog = build_opencl_program(self.seq.func.with_attr("global_symbol", "main"), target)

    def run(self, x: np.ndarray, state: np.ndarray):
        T, B, K = x.shape
        flat = np.ascontiguousarray(x.reshape(T * B, K))
        (xp,) = self.lin.run([flat, *self.lin_consts, np.zeros((T * B, self.rows), np.float32)])
        nout = 3 if self.cell == "lstm" else 2
        outs = [np.full((T, B, H), np.nan, np.float32)]
        outs += [np.full((B, H), np.nan, np.float32)] * (nout - 1)
        first = 2 + len(self.seq.consts)
        args = [xp.reshape(T, B, self.rows), state, *self.seq.consts, *outs]
        res = self.prog.run(args, list(range(first, first + nout)))
        hT = np.stack(res[1:], axis=0) if self.cell == "lstm" else res[1]
        return res[0], hT


def _stack(cell, layers, masks, device, knobs=None):
    target = resolve_target(f"opencl-{device}", host="host")
    desc_knobs = default_gpu_rnn_knobs(target).updated(knobs)
    return [_Layer(layer, k, masks, target, desc_knobs) for k, layer in enumerate(layers)]


def _forward(stack, x, state):
    """Run the layers in turn (each starts from ``state[k]``); return ``y`` and the new state."""
    finals = []
    for layer in stack:
        x, hT = layer.run(x, state)
        finals.append(hT)
    return x, np.stack(finals, axis=0)


def _check(cell, layers, rates, device, *, seed=0, T=7, B=2, knobs=None, steps=True):
    module = _torch_model(cell, layers, seed)
    masks = _prune(module, layers, rates)
    desc = from_torch(module)
    stack = _stack(cell, desc.layers, masks, device, knobs)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    shape = (layers, 2, B, H) if cell == "lstm" else (layers, B, H)
    state = (0.5 * rng.standard_normal(shape)).astype(np.float32)
    y_ref, s_ref = _torch_forward(module, cell, x, state)

    y, s = _forward(stack, x, state)  # per utterance
    np.testing.assert_allclose(y, y_ref, atol=ATOL, rtol=0)
    np.testing.assert_allclose(s, s_ref, atol=ATOL, rtol=0)
    if not steps:
        return
    s = state  # frame by frame: T calls of one frame carrying the state
    for t in range(T):
        y_t, s = _forward(stack, x[t : t + 1], s)
        np.testing.assert_allclose(y_t[0], y_ref[t], atol=ATOL, rtol=0)
    np.testing.assert_allclose(s, s_ref, atol=ATOL, rtol=0)


# ------------------------------------------------------------------------------ tests
@needs_opencl
@pytest.mark.parametrize(
    "cell, layers, rates, device",
    [
        ("gru", 1, None, "mali"),
        ("lstm", 2, (2, 2), "adreno"),
        ("kaldi_gru", 1, (2, 2), "mali"),
    ],
)
def test_layers_match_torch(cell, layers, rates, device):
    _check(cell, layers, rates, device, steps=cell == "gru")


@needs_opencl
@pytest.mark.parametrize("exact", [True, False])
@pytest.mark.parametrize("rates", [None, (2, 2)], ids=["dense", "bspc"])
@pytest.mark.parametrize("cell", ["gru", "kaldi_gru", "lstm"])
def test_every_cell_and_form_matches_torch(cell, rates, exact):
    """Each cell x weight form x activation form of the one generator, one layer."""
    _check(cell, 1, rates, "mali", seed=5, T=4, B=2, knobs={"exact": exact}, steps=False)


@needs_opencl
@pytest.mark.slow
@pytest.mark.parametrize("device", ["mali", "adreno"])
@pytest.mark.parametrize("rates", [None, (2, 2), (4, 2)])
@pytest.mark.parametrize("cell, layers", [("gru", 2), ("lstm", 1), ("kaldi_gru", 2)])
def test_layers_match_torch_all(cell, layers, rates, device):
    _check(cell, layers, rates, device, seed=layers + 3, T=9, B=3)


@needs_opencl
@pytest.mark.slow
@pytest.mark.parametrize("rates", [None, (4, 2)])
@pytest.mark.parametrize(
    "knobs",
    [
        {"work_group": 32, "vector": 1, "panel_rows": 8, "chunk": 16, "frames": 1},
        {"work_group": 256, "vector": 8, "panel_rows": 64, "chunk": 128, "frames": 8},
        {"exact": False},
    ],
)
def test_knob_configs_match_torch(knobs, rates):
    _check("gru", 1, rates, "mali", seed=11, T=5, B=1, knobs=knobs, steps=False)


@needs_opencl
def test_zero_frames_return_initial_state():
    module = _torch_model("lstm", 1, 3)
    stack = _stack("lstm", from_torch(module).layers, {}, "mali")
    state = np.random.default_rng(3).standard_normal((1, 2, 2, H)).astype(np.float32)
    y, s = _forward(stack, np.zeros((0, 2, I), np.float32), state)
    assert y.shape == (0, 2, H)
    np.testing.assert_array_equal(s, state)


def test_kernel_structure():
    """A host loop over time launches the step kernels; BSPC stages ``h`` in local memory."""
    target = resolve_target("opencl-mali", host="host")
    knobs = default_gpu_rnn_knobs(target)
    rng = np.random.default_rng(0)
    u = rng.standard_normal((3 * H, H)).astype(np.float32)
    b = np.zeros(3 * H, np.float32)
    dense = gpu_sequence_kernel(LayerWeights("gru", u, b, b), knobs)
    mask = bsp_mask(u, 6, 4, col_rate=2, row_rate=2)
    pruned = BSPCMatrix.from_dense(u * mask, mask, 6, 4)
    sparse = gpu_sequence_kernel(LayerWeights("kaldi_gru", pruned, b, None, 0.8), knobs)
    for seq, per_step in ((dense, 1), (sparse, 4)):
        program = build_opencl_program(seq.func.with_attr("global_symbol", "main"), target)
        _, loop, _ = program.launches
        assert len(loop.body) == per_step
        assert "__local" in program.source and "barrier(CLK_LOCAL_MEM_FENCE)" in program.source


def test_default_knobs_per_device():
    mali = default_gpu_rnn_knobs(resolve_target("opencl-mali"))
    adreno = default_gpu_rnn_knobs(resolve_target("opencl-adreno"))
    assert mali != adreno
    assert (mali.work_group, mali.vector) == (64, 4)
    with pytest.raises(ValueError, match="not an OpenCL target"):
        default_gpu_rnn_knobs(resolve_target("arm64"))


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"work_group": 48}, "work_group=48"),
        ({"vector": 0}, "vector=0"),
        ({"exact": 1}, "exact=1"),
        ({"threads": 2}, "unknown OpenCL RNN knobs"),
    ],
)
def test_bad_knobs_are_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        GPURNNKnobs().updated(overrides)


def test_bad_weight_shape_is_refused():
    u = np.zeros((3 * H, H + 1), np.float32)
    with pytest.raises(ValueError, match=r"must be \(114, 38\)"):
        gpu_sequence_kernel(LayerWeights("gru", u, np.zeros(3 * H)), GPURNNKnobs())
    with pytest.raises(ValueError, match="cell must be"):
        gpu_sequence_kernel(LayerWeights("rnn", u, np.zeros(3 * H)), GPURNNKnobs())


# ------------------------------------------------------------------ compile path
def _elf_machine(path) -> int:
    data = path.read_bytes()
    assert data[:4] == b"\x7fELF"
    return int.from_bytes(data[18:20], "little")


@pytest.mark.parametrize("target", ["opencl-mali", "opencl-adreno"])
def test_compile_model_opencl_exports(tmp_path, target):
    from tvm_bsp import compile_model

    if shutil.which("aarch64-linux-gnu-g++") is None:
        pytest.skip("no aarch64 cross compiler (scripts/setup_aarch64_emulator.sh)")
    module = _torch_model("lstm", 2, 0)
    masks = _prune(module, 2, (2, 2))
    bspc = {}
    for k in range(2):
        mask, grid = masks[(k, "hh")]
        weight = getattr(module, f"weight_hh_l{k}").detach().numpy()
        bspc[f"weight_hh_l{k}"] = BSPCMatrix.from_dense(weight, mask, *grid)
    cm = compile_model(module, target=target, bspc=bspc)
    assert not cm.runnable
    with pytest.raises(RuntimeError, match="cannot run"):
        cm.forward(np.zeros((1, 1, I), np.float32))
    kinds = sorted(
        str(f.attrs["tvm_bsp.kernel"])
        for _, f in cm.ir.functions_items()
        if f.attrs is not None and "tvm_bsp.kernel" in f.attrs
    )
    assert kinds == [
        "bspc_lstm_sequence_opencl",
        "bspc_lstm_sequence_opencl",
        "dense_linear_opencl",
        "dense_linear_opencl",
    ]
    path = cm.export(tmp_path / "model.so")
    assert _elf_machine(path) == 183  # EM_AARCH64: the host side runs on the phone's CPU
    kernels = set(re.findall(rb"__kernel void (\w+)\(", path.read_bytes()))
    assert {
        b"lstm_sequence_kernel",
        b"lstm_sequence_kernel_1",
        b"input_projection_kernel",
    } <= kernels
    assert cm.meta["threads"] == 1


def test_compile_model_opencl_dict_target(tmp_path):
    from tvm_bsp import compile_model

    cm = compile_model(
        _torch_model("gru", 1, 1), target={"kind": "opencl", "device": "adreno"},
        knobs={"work_group": 32},
    )  # fmt: skip
    knobs = {str(f.attrs["tvm_bsp.knobs"]) for _, f in cm.ir.functions_items()
             if f.attrs is not None and "tvm_bsp.knobs" in f.attrs}  # fmt: skip
    assert knobs and all('"work_group": 32' in k for k in knobs)
    with pytest.raises(ValueError, match="unknown OpenCL RNN knobs"):
        compile_model(_torch_model("gru", 1, 1), target="opencl-mali", knobs={"threads": 2})


class _Stack(torch.nn.Module):
    def __init__(self, rnn: torch.nn.Module, head: torch.nn.Module) -> None:
        super().__init__()
        self.rnn = rnn
        self.head = head

    def forward(self, x, h=None):
        y, h = self.rnn(x, h)
        return self.head(y), h


@needs_opencl
@pytest.mark.parametrize(
    "cell, rates, device",
    [
        ("gru", (2, 2), "mali"),
        pytest.param("lstm", None, "adreno", marks=pytest.mark.slow),
        pytest.param("kaldi_gru", (4, 2), "adreno", marks=pytest.mark.slow),
    ],
)
def test_compiled_model_runs_on_pocl(cell, rates, device):
    """The Relax module ``compile_model`` built (kernels, packed constants, reshapes, state
    stacking) runs on POCL: ``forward`` per utterance and ``step`` frame by frame = torch."""
    from tvm_bsp import compile_model

    layers, T, B, O = 2, 5, 2, 11
    rnn = _torch_model(cell, layers, 7)
    masks = _prune(rnn, layers, rates)
    torch.manual_seed(8)
    module = _Stack(rnn, torch.nn.Linear(H, O)).eval()
    bspc = {}
    for (k, role), (mask, grid) in masks.items():
        weight = getattr(rnn, f"weight_{role}_l{k}").detach().numpy()
        bspc[f"rnn.weight_{role}_l{k}"] = BSPCMatrix.from_dense(weight, mask, *grid)
    cm = compile_model(module, target=f"opencl-{device}", bspc=bspc)
    assert sorted(cm.sparse) == sorted(bspc)
    rng = np.random.default_rng(9)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    shape = (layers, 2, B, H) if cell == "lstm" else (layers, B, H)
    state = (0.5 * rng.standard_normal(shape)).astype(np.float32)
    with torch.no_grad():
        h0 = torch.from_numpy(state)
        y_ref, s_ref = module(torch.from_numpy(x), (h0[:, 0], h0[:, 1]) if cell == "lstm" else h0)
        y_ref = y_ref.numpy()
        s_ref = torch.stack(s_ref, 1).numpy() if cell == "lstm" else s_ref.numpy()

    target = resolve_target(f"opencl-{device}", host="host")
    programs: dict = {}
    y, s = run_relax_function(cm.ir, "forward", [x, state], target, programs=programs)
    np.testing.assert_allclose(y, y_ref, atol=ATOL, rtol=0)
    np.testing.assert_allclose(s, s_ref, atol=ATOL, rtol=0)
    s = state
    for t in range(T):
        y_t, s = run_relax_function(cm.ir, "step", [x[t], s], target, programs=programs)
        np.testing.assert_allclose(y_t, y_ref[t], atol=ATOL, rtol=0)
    np.testing.assert_allclose(s, s_ref, atol=ATOL, rtol=0)
