"""FuseStep (tvm_bsp.passes.fuse_step) and the fused kernel called without the VM
(tvm_bsp.runtime.kernel_step): one kernel per streamed frame, equal to torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import tvm
from torch import nn
from tvm import relax

import tvm_bsp
from tvm_bsp.passes.fuse_step import CONSTANTS_NAME, FUSED_NAME, fuse_step
from tvm_bsp.prune import bsp_mask

ATOL = 1e-5


class Stack(nn.Module):
    """An RNN then a linear head (what the importer takes)."""

    def __init__(self, rnn: nn.Module, classes: int) -> None:
        super().__init__()
        self.rnn, self.head = rnn, nn.Linear(rnn.hidden_size, classes)

    def forward(self, x, h=None):
        y, h = self.rnn(x, h)
        return self.head(y), h


def _model(cell: str, layers: int, head: bool, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    rnn = (nn.GRU if cell == "gru" else nn.LSTM)(7, 24, layers).eval()
    return Stack(rnn, 5).eval() if head else rnn


def _bspc(model: nn.Module) -> tuple[dict, dict]:
    """BSP masks on the recurrent and input weights (applied to the model), their grids."""
    masks, grids = {}, {}
    for name, p in model.named_parameters():
        if name.rpartition(".")[2].startswith("weight_") and p.dim() == 2:
            rows = 8 if p.shape[0] % 8 == 0 else 1
            mask = bsp_mask(p.detach().numpy(), rows, 1 if p.shape[1] < 8 else 4, 2.0, 1.5)
            with torch.no_grad():
                p.mul_(torch.from_numpy(mask))
            masks[name], grids[name] = mask, (rows, 1 if p.shape[1] < 8 else 4)
    return masks, grids


def _torch_stream(model: nn.Module, x: np.ndarray) -> tuple[np.ndarray, object]:
    with torch.no_grad():
        y, h = model(torch.from_numpy(x))
    return y.numpy(), h


def _state(h) -> np.ndarray:
    if isinstance(h, tuple):  # LSTM: (layers, 2, B, H)
        return torch.stack(h, 1).numpy()
    return h.numpy()


def _calls(func: relax.Function) -> list[str]:
    names = []

    def visit(expr):
        if isinstance(expr, relax.Call) and expr.op == tvm.ir.Op.get("relax.call_tir"):
            names.append(expr.args[0].name_hint)

    relax.analysis.post_order_visit(func.body, visit)
    return names


CASES = [
    ("gru", 2, False, False, 1),
    ("gru", 3, False, False, 1),  # layers 2 and 3 share their kernels: inlined twice
    ("gru", 2, True, True, 1),
    ("lstm", 2, True, True, 1),
    ("lstm", 1, False, False, 1),
    ("gru", 2, True, True, 2),
    ("lstm", 2, True, False, 2),
]


@pytest.mark.parametrize(("cell", "layers", "head", "sparse", "threads"), CASES)
def test_fused_step_streams_as_torch(cell, layers, head, sparse, threads):
    model = _model(cell, layers, head)
    kwargs = {}
    if sparse:
        masks, grids = _bspc(model)
        kwargs = {"bspc": masks, "grid": grids}
    # a small min_parallel_macs makes every kernel of the 2-thread builds parallel
    knobs = {"threads": threads, "lanes": 8, "min_parallel_macs": 1}
    cm = tvm_bsp.compile_model(model, knobs=knobs, **kwargs)
    assert _calls(cm.ir["step"]) == [FUSED_NAME]
    assert cm.meta["step_kernel"] == FUSED_NAME
    x = np.random.default_rng(1).standard_normal((9, 3, 7)).astype(np.float32)
    ref, h = _torch_stream(model, x)
    session = cm.session
    assert session.kernel_step() is not None
    streamed = np.stack([session.push(frame) for frame in x])
    np.testing.assert_allclose(streamed, ref, atol=ATOL)
    np.testing.assert_allclose(session.state, _state(h), atol=ATOL)
    # the VM's step (one call_tir of the same kernel) from an explicit state
    y_t, state = cm.step(x[0])
    _, h1 = _torch_stream(model, x[:1])
    np.testing.assert_allclose(y_t, ref[0], atol=ATOL)
    np.testing.assert_allclose(state, _state(h1), atol=ATOL)


def test_parallel_fused_step_launches_its_threads_once():
    model = _model("gru", 2, True)
    masks, grids = _bspc(model)
    knobs = {"threads": 2, "lanes": 8, "min_parallel_macs": 1}
    cm = tvm_bsp.compile_model(model, bspc=masks, grid=grids, knobs=knobs)
    script = cm.ir[FUSED_NAME].script()
    assert script.count("pragma_parallel_launch_point") == 1
    # the sequence kernels each had their own region (forward keeps them)
    assert cm.ir["gru_sequence"].script().count("pragma_parallel_launch_point") == 1


def test_step_constants_are_the_fused_kernels_constant_arguments():
    model = _model("gru", 2, False)
    cm = tvm_bsp.compile_model(model, knobs={"lanes": 8})
    (call,) = [b.value for b in cm.ir["step"].body.blocks[0].bindings][:1]
    consts = [a for a in call.args[1].fields if not isinstance(a, relax.Var)]
    returned = cm.session.vm[CONSTANTS_NAME]()
    assert len(returned) == len(consts) > 0
    for got, const in zip(returned, consts, strict=True):
        np.testing.assert_array_equal(got.numpy(), const.value.numpy())


def test_push_keeps_caller_arrays_and_follows_a_set_state_and_batch_change():
    model = _model("gru", 2, True)
    cm = tvm_bsp.compile_model(model, knobs={"lanes": 8})
    session = cm.session
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 2, 7)).astype(np.float32)
    first = session.push(x[0])
    held = first.copy()
    session.push(x[1])
    np.testing.assert_array_equal(first, held)  # a later frame does not overwrite it
    # continue from a state the caller sets
    h0 = 0.3 * rng.standard_normal((2, 2, 24)).astype(np.float32)
    session.state = h0
    with torch.no_grad():
        ref, _ = model(torch.from_numpy(x[2:]), torch.from_numpy(h0))
    streamed = np.stack([session.push(frame) for frame in x[2:]])
    np.testing.assert_allclose(streamed, ref.numpy(), atol=ATOL)
    # another batch size starts from zeros
    one = x[:, :1]
    with torch.no_grad():
        ref1, _ = model(torch.from_numpy(one))
    np.testing.assert_allclose(session.push(one[0]), ref1.numpy()[0], atol=ATOL)
    session.reset()
    np.testing.assert_allclose(session.push(x[0]), ref_first(model, x[0]), atol=ATOL)


def ref_first(model: nn.Module, frame: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(frame[None]))[0].numpy()[0]


def test_exported_module_streams_through_the_kernel(tmp_path):
    model = _model("lstm", 2, True)
    cm = tvm_bsp.compile_model(model, knobs={"lanes": 8})
    path = cm.export(tmp_path / "model.so")
    from tvm_bsp.runtime.load import load

    session = load(path)
    assert session.kernel_step() is not None
    x = np.random.default_rng(4).standard_normal((5, 1, 7)).astype(np.float32)
    ref, _ = _torch_stream(model, x)
    np.testing.assert_allclose(np.stack([session.push(f) for f in x]), ref, atol=ATOL)


def test_a_step_with_an_op_without_kernel_is_left_alone():
    bb = relax.BlockBuilder()
    x = relax.Var("x_t", relax.TensorType([1, 4], "float32"))
    s = relax.Var("state", relax.TensorType([1, 1, 4], "float32"))
    with bb.function("step", [x, s]):
        with bb.dataflow():
            y = bb.emit(relax.op.add(x, x))
            out = bb.emit_output(relax.Tuple([y, s]))
        bb.emit_func_output(out)
    mod = bb.get()
    assert fuse_step(mod).same_as(mod)
    assert fuse_step(mod, "absent").same_as(mod)


def test_opencl_builds_keep_their_step_kernels():
    model = _model("gru", 1, False)
    cm = tvm_bsp.compile_model(model, target="opencl-mali")
    assert FUSED_NAME not in _calls(cm.ir["step"])
    assert "step_kernel" not in cm.meta
