"""NaN and +-inf inputs propagate as in torch (defect 2 of issue 13: the clamp of the fast exp
made a NaN 87, so a GRU frame with one NaN feature gave h = 1 and an LSTM h = 0).

References: numpy for the activations, torch for dense models; for BSPC models torch (which
multiplies every pruned zero: ``inf * 0 = NaN``) and a numpy recurrence that skips the pruned
weights bound the result (see ``_check_bspc``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import tvm
from torch import nn
from tvm.script import tirx as T

import tvm_bsp
from tvm_bsp.kernels.epilogue import fast_activation
from tvm_bsp.kernels.fast_math import EXP_CLAMP, fast_exp, fast_sigmoid, fast_tanh
from tvm_bsp.prune import bsp_mask
from tvm_bsp.prune.masked import add_mask

I, H = 13, 37
ATOL = 1e-4
N = 64
SPECIAL = np.array([np.nan, np.inf, -np.inf, 0.0, 1.0, -3.0, 100.0, -100.0], np.float32)


def _vector_inputs() -> np.ndarray:
    x = np.linspace(-20, 20, N).astype(np.float32)
    x[::8] = SPECIAL  # one special value in every vector lane position class
    x[1::8] = SPECIAL[::-1]
    return x


def _run_elementwise(builder) -> np.ndarray:
    @T.prim_func
    def apply(a: T.Buffer((N,), "float32"), b: T.Buffer((N,), "float32")):
        for o in range(N // 16):
            for i in T.vectorized(16):
                b[o * 16 + i] = builder(a[o * 16 + i])

    ex = tvm.compile(tvm.IRModule({"main": apply}), target="llvm")
    dev = tvm.cpu()
    out = tvm.runtime.tensor(np.zeros(N, np.float32), dev)
    ex["main"](tvm.runtime.tensor(_vector_inputs(), dev), out)
    return out.numpy()


def test_fast_activations_propagate_nan_and_saturate_inf():
    x = _vector_inputs().astype(np.float64)
    builders = [fast_sigmoid, fast_tanh, fast_activation("sigmoid"), fast_activation("tanh")]
    got = [_run_elementwise(b) for b in [*builders, fast_exp]]
    with np.errstate(over="ignore"):
        sig, tanh = 1 / (1 + np.exp(-x)), np.tanh(x)
    for row, want in zip(got[:4], [sig, tanh, sig, tanh], strict=True):
        np.testing.assert_array_equal(np.isnan(row), np.isnan(x))
        np.testing.assert_allclose(row, want, atol=3e-7, rtol=0)  # +-inf -> 0, 1, +-1
    exp = got[4]
    assert np.isnan(exp[np.isnan(x)]).all()
    inside = np.abs(x) <= EXP_CLAMP - 1  # inside the clamp, away from float32's denormals
    np.testing.assert_allclose(exp[inside], np.exp(x[inside]), rtol=3e-7)
    big, small = x > EXP_CLAMP, x < -EXP_CLAMP
    assert (exp[big] > 1e37).all() and (exp[small] < 1e-37).all()  # clamped, +-inf too


# ----------------------------------------------------------------------------- models
def _rnn(cell: str, pruned: bool, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    rnn = (nn.GRU if cell == "gru" else nn.LSTM)(I, H, 2).eval()
    if pruned:
        for name, p in list(rnn.named_parameters()):
            if name.startswith("weight"):
                add_mask(rnn, name, bsp_mask(p.detach(), 3, 2, 2.0, 1.5))
    return rnn


def _torch(rnn: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return rnn(torch.from_numpy(x))[0].numpy()


def _sparse_mv(w: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``w @ v`` over the non-zero weights only (what a BSPC kernel computes)."""
    with np.errstate(invalid="ignore", over="ignore"):
        return np.where(w != 0, w * v[None, :], 0.0).sum(axis=1)


def _sigmoid(v: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return 1 / (1 + np.exp(-v))


def _numpy_sparse(rnn: nn.Module, cell: str, x: np.ndarray) -> np.ndarray:
    """Zero-state recurrence of a (B = 1) torch GRU/LSTM in float64, pruned weights skipped."""
    seq = x[:, 0].astype(np.float64)
    for k in range(rnn.num_layers):
        w, u = (getattr(rnn, f"weight_{r}_l{k}").detach().double().numpy() for r in ("ih", "hh"))
        b_ih, b_hh = (
            getattr(rnn, f"bias_{r}_l{k}").detach().double().numpy() for r in ("ih", "hh")
        )
        h, c, out = np.zeros(H), np.zeros(H), []
        for v in seq:
            a, g = _sparse_mv(w, v) + b_ih, _sparse_mv(u, h) + b_hh
            if cell == "gru":
                r, z = _sigmoid(a[:H] + g[:H]), _sigmoid(a[H : 2 * H] + g[H : 2 * H])
                n = np.tanh(a[2 * H :] + r * g[2 * H :])
                h = (1 - z) * n + z * h
            else:
                s = a + g
                i, f, o = _sigmoid(s[:H]), _sigmoid(s[H : 2 * H]), _sigmoid(s[3 * H :])
                c = f * c + i * np.tanh(s[2 * H : 3 * H])
                h = o * np.tanh(c)
            out.append(h)
        seq = np.stack(out)
    return seq[:, None].astype(np.float32)


def _special_inputs(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((6, 1, I)).astype(np.float32)
    cases = {}
    for name, value in (("nan", np.nan), ("inf", np.inf), ("-inf", -np.inf)):
        x = base.copy()
        x[2, 0, 4] = value  # one bad feature in the third frame
        cases[name] = x
    return cases


def _check(got: np.ndarray, want: np.ndarray, what: str) -> None:
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=f"{what}: NaN pattern")
    np.testing.assert_allclose(got, want, atol=ATOL, rtol=0, err_msg=what)


def _check_bspc(got: np.ndarray, rnn: nn.Module, cell: str, x: np.ndarray, what: str) -> None:
    """BSPC multiplies kept weights (and zeros of its panel padding, which sit where the dense
    weight is zero): NaN where the pruned-math reference is, maybe more, never where torch
    (which multiplies every pruned zero) is finite; elsewhere the reference's values."""
    ref, full = _numpy_sparse(rnn, cell, x), _torch(rnn, x)
    assert not (np.isnan(ref) & ~np.isnan(got)).any(), f"{what}: a NaN was lost"
    assert not (np.isnan(got) & ~np.isnan(full)).any(), f"{what}: NaN where torch has none"
    ok = ~np.isnan(got)
    np.testing.assert_allclose(got[ok], ref[ok], atol=ATOL, rtol=0, err_msg=what)


@pytest.mark.parametrize(
    "cell, pruned", [("gru", False), ("lstm", False), ("gru", True), ("lstm", True)]
)
def test_compiled_model_nan_and_inf_like_the_reference(cell, pruned):
    rnn = _rnn(cell, pruned, seed=3)
    cm = tvm_bsp.compile_model(rnn, target="host", knobs={"min_parallel_macs": 0})
    assert bool(cm.sparse) == pruned
    for name, x in _special_inputs(4).items():
        y, _ = cm.forward(x)
        cm.reset()
        pushed = np.stack([cm.push(frame) for frame in x])
        assert not np.isnan(y[:2]).any()
        if name == "nan":
            assert np.isnan(y[2:]).any()
        for got, how in ((y, "forward"), (pushed, "push")):
            if pruned:
                _check_bspc(got, rnn, cell, x, f"{cell} {how} {name}")
            else:
                _check(got, _torch(rnn, x), f"{cell} {how} {name}")
    if not pruned:  # the pruned-math reference agrees with torch on dense weights
        x = _special_inputs(4)["nan"]
        _check(_numpy_sparse(rnn, cell, x), _torch(rnn, x), "reference")


def test_nan_in_the_state_propagates():
    rnn = _rnn("gru", False, seed=5)
    cm = tvm_bsp.compile_model(rnn, target="host")
    x = np.random.default_rng(6).standard_normal((1, I)).astype(np.float32)
    h = np.zeros((2, 1, H), np.float32)
    h[0, 0, 7] = np.nan
    _, h1 = cm.step(x, h)
    with torch.no_grad():
        _, ht = rnn(torch.from_numpy(x[None]), torch.from_numpy(h))
    _check(h1, ht.numpy(), "state")


@pytest.mark.opencl
@pytest.mark.parametrize("exact", [True, False])
def test_opencl_kernels_propagate_nan_on_pocl(exact):
    from tvm_bsp.kernels.targets import resolve_target
    from tvm_bsp.testing.opencl import opencl_available, run_relax_function

    if not opencl_available():
        pytest.skip("no OpenCL device through pyopencl; run scripts/setup_opencl.sh (POCL)")
    rnn = _rnn("gru", False, seed=7)
    cm = tvm_bsp.compile_model(rnn, target="opencl-mali", knobs={"exact": exact})
    target = resolve_target("opencl-mali", host="host")
    programs: dict = {}
    for name, x in _special_inputs(8).items():
        state = np.zeros((2, 1, H), np.float32)
        y, _ = run_relax_function(cm.ir, "forward", [x, state], target, programs=programs)
        _check(y, _torch(rnn, x), f"opencl exact={exact} {name}")


_GUEST = """
import numpy as np, sys
sys.modules["torch"] = None
import tvm_bsp.runtime
for name in ("dense", "bspc"):
    s = tvm_bsp.runtime.load(name + ".so")
    for case in ("nan", "inf", "-inf"):
        y, _ = s.forward(np.load(case + ".npy"))
        print("OUT", name, case, y.astype(np.float32).tobytes().hex())
"""


@pytest.mark.slow
@pytest.mark.aarch64
def test_arm64_build_propagates_nan_under_qemu(tmp_path):
    from tvm_bsp.deploy.shipped import runtime_files
    from tvm_bsp.deploy.targets import export_library
    from tvm_bsp.devices.aarch64 import require_arm64, run_in_arm64

    require_arm64()
    files = dict(runtime_files())
    models = {}
    for name, pruned in (("dense", False), ("bspc", True)):
        rnn = models[name] = _rnn("gru", pruned, seed=9)
        cm = tvm_bsp.compile_model(rnn, target="arm64", knobs={"min_parallel_macs": 0})
        files[f"{name}.so"] = export_library(cm.executable, "arm64", tmp_path / f"{name}.so")
    inputs = _special_inputs(10)
    for case, x in inputs.items():
        np.save(tmp_path / f"{case}.npy", x)
        files[f"{case}.npy"] = tmp_path / f"{case}.npy"
    res = run_in_arm64(_GUEST, files, timeout=900)
    assert res.returncode == 0, res.stderr[-4000:]
    seen = 0
    for line in res.stdout.splitlines():
        if line.startswith("OUT "):
            _, name, case, data = line.split(" ")
            y = np.frombuffer(bytes.fromhex(data), np.float32).reshape(6, 1, H)
            rnn, x = models[name], inputs[case]
            if name == "bspc":
                _check_bspc(y, rnn, "gru", x, f"arm64 bspc {case}")
            else:
                _check(y, _torch(rnn, x), f"arm64 dense {case}")
            seen += 1
    assert seen == 6, res.stdout[-2000:]
