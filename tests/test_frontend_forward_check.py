"""Defect 3 of issue 13: the importer follows what a container's forward does (torch.fx).

Before the fix the importer read the list of children: ``F.log_softmax`` after the head was
dropped, ``rnn(x * 2)`` and ``torch.tanh`` were ignored, and a registered but unused
``nn.Linear`` was applied. Each of those four cases has a test here.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import tvm_bsp
from tvm_bsp.frontend import Activation, DenseLayer, UnsupportedModuleError, from_torch
from tvm_bsp.frontend import reference_forward as ref

I, H, O = 7, 12, 5


class Base(nn.Module):
    def __init__(self, cell: str = "gru") -> None:
        super().__init__()
        self.rnn = (nn.GRU if cell == "gru" else nn.LSTM)(I, H)
        self.head = nn.Linear(H, O)


class LogSoftmax(Base):
    def forward(self, x):
        y, _ = self.rnn(x)
        return F.log_softmax(self.head(y), dim=-1)


class ScaledInput(Base):
    def forward(self, x):
        y, _ = self.rnn(x * 2)
        return self.head(y)


class TanhAfter(Base):
    def forward(self, x, h=None):
        y, h = self.rnn(x, h)
        return torch.tanh(self.head(y)), h


class UnusedLinear(Base):
    def __init__(self) -> None:
        super().__init__()
        self.extra = nn.Linear(O, O)  # registered after the head, never called

    def forward(self, x):
        y, _ = self.rnn(x)
        return self.head(y)


def _x(T: int = 6, B: int = 2) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32)


def _torch_y(module: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        out = module.eval()(torch.from_numpy(x))
    return (out[0] if isinstance(out, tuple) else out).numpy()


@pytest.mark.parametrize("kind", [LogSoftmax, TanhAfter, UnusedLinear])
def test_translated_forward_matches_torch(kind):
    torch.manual_seed(1)
    module = kind()
    desc = from_torch(module)
    x = _x()
    np.testing.assert_allclose(ref(desc, x)[0], _torch_y(module, x), atol=1e-5)


def test_log_softmax_compiled():
    torch.manual_seed(2)
    module = LogSoftmax()
    desc = from_torch(module)
    assert isinstance(desc.head[-1], Activation) and desc.head[-1].kind == "log_softmax"
    cm = tvm_bsp.compile_model(module)
    x = _x(9, 3)
    np.testing.assert_allclose(cm.forward(x)[0], _torch_y(module, x), atol=1e-4)
    steps = np.stack([cm.step(frame, s)[0] for frame, s in _stream_states(cm, x)])
    np.testing.assert_allclose(steps, _torch_y(module, x), atol=1e-4)


def _stream_states(cm, x):
    state = None
    for frame in x:
        yield frame, state
        state = cm.step(frame, state)[1]


def test_scaled_input_is_refused_by_name():
    with pytest.raises(
        UnsupportedModuleError,
        match=r"ScaledInput computes .* before the recurrent module \(function mul\(\)",
    ):
        from_torch(ScaledInput())


def test_unused_linear_is_not_applied():
    desc = from_torch(UnusedLinear())
    assert [type(h) for h in desc.head] == [DenseLayer]
    assert desc.output_size == O


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ("y, _ = self.rnn(x); return self.head(y) + y.sum()", r"method \.sum\(\)"),
        ("y, _ = self.rnn(x); return F.softmax(self.head(y), dim=0)", "over axis 0"),
        ("y, _ = self.rnn(x); return self.head(y * 0.5)", "function mul"),
        ("y, h = self.rnn(x, h * 0); return self.head(y)", "before the recurrent module"),
        ("y, _ = self.rnn(x); z = self.head(y); return y", "must return the head's output"),
        ("y, _ = self.rnn(x); return self.head(y), y", "expected y or"),
        ("return self.head(x)", "first child module"),
        ("y, _ = self.rnn(x)\n        if y.sum() > 0:\n            y = -y\n        return y",
         "cannot verify the forward"),
    ],
)  # fmt: skip
def test_other_forwards_are_refused(body, match):
    ns: dict = {"F": F, "Base": Base}
    src = f"class M(Base):\n    def forward(self, x, h=None):\n        {body}\n"
    exec(src, ns)
    with pytest.raises(UnsupportedModuleError, match=match):
        from_torch(ns["M"]())


def test_call_order_not_registration_order():
    class Swapped(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.out = nn.Linear(8, O)  # registered first, called last
            self.rnn = nn.LSTM(I, H)
            self.mid = nn.Linear(H, 8)

        def forward(self, x):
            y, (h, c) = self.rnn(x)
            return self.out(torch.relu(self.mid(y))).log_softmax(-1), (h, c)

    torch.manual_seed(3)
    module = Swapped()
    desc = from_torch(module)
    assert [getattr(h, "kind", "dense") for h in desc.head] == [
        "dense", "relu", "dense", "log_softmax"]  # fmt: skip
    x = _x()
    np.testing.assert_allclose(ref(desc, x)[0], _torch_y(module, x), atol=1e-5)


@pytest.mark.parametrize("cell", ["gru", "lstm", "kaldi_gru"])
def test_acoustic_model_still_imports(cell):
    from tvm_bsp.speech.model import AcousticModel, ModelConfig

    torch.manual_seed(4)
    model = AcousticModel(ModelConfig(cell=cell, input_dim=13, hidden=16, layers=2)).eval()
    desc = from_torch(model)
    x = np.random.default_rng(1).standard_normal((5, 2, 13)).astype(np.float32)
    with torch.no_grad():
        y_ref = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ref(desc, x)[0], y_ref, atol=1e-5)
