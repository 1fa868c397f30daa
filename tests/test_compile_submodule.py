"""compile_model(model, submodule=...): the recurrent part of a bigger model, spliced back."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from rnn_torch_cases import ATOL, prune
from torch import nn

import tvm_bsp

F_IN, C, H, T, B = 10, 16, 24, 12, 2


class Decoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(C, H, 2, batch_first=True)
        self.head = nn.Linear(H, 1)

    def forward(self, z):
        y, _ = self.rnn(z)
        return self.head(y)


class VAD(nn.Module):
    """A voice-activity detector: conv encoder, LSTM decoder, sigmoid; input ``(B, F, T)``."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv1d(F_IN, C, 3, padding=1), nn.ReLU())
        self.decoder = Decoder()

    def forward(self, feats):
        z = self.encoder(feats).transpose(1, 2)  # (B, T, C)
        return torch.sigmoid(self.decoder(z)).squeeze(-1)


class Spliced(nn.Module):
    """The README's pattern: torch encoder -> compiled LSTM -> torch head."""

    def __init__(self, model: VAD, compiled) -> None:
        super().__init__()
        self.model, self.compiled = model, compiled

    def forward(self, feats):
        z = self.model.encoder(feats).transpose(1, 2).contiguous()
        y, _ = self.compiled.forward(z.numpy())
        return torch.sigmoid(self.model.decoder.head(torch.from_numpy(y))).squeeze(-1)


def _model(seed: int = 0) -> VAD:
    torch.manual_seed(seed)
    return VAD().eval()


def _feats() -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(0).standard_normal((B, F_IN, T)).astype("f4"))


def test_compiled_lstm_spliced_between_encoder_and_head():
    model = _model()
    cm = tvm_bsp.compile_model(model, submodule="decoder.rnn")
    assert cm.model.head == [] and cm.model.batch_first
    assert sorted(cm.model.weights())[0].startswith("decoder.rnn.")
    with torch.no_grad():
        np.testing.assert_allclose(Spliced(model, cm)(_feats()), model(_feats()), atol=ATOL)


def test_container_submodule_includes_the_head():
    model = _model(1)
    cm = tvm_bsp.compile_model(model, submodule="decoder")
    assert cm.model.output_size == 1
    with torch.no_grad():
        z = model.encoder(_feats()).transpose(1, 2).contiguous()
        y, _ = cm.forward(z.numpy())
        np.testing.assert_allclose(torch.sigmoid(torch.from_numpy(y)).squeeze(-1), model(_feats()),
                                   atol=ATOL)  # fmt: skip
        # streaming: the encoder's frames pushed one at a time
        cm.reset()
        pushed = np.stack([cm.push(z[:, t].numpy()) for t in range(T)], 1)
        np.testing.assert_allclose(pushed, y, atol=1e-5)


def test_pruned_submodule_compiles_to_bspc_with_full_names():
    model = _model(2)
    prune(model.decoder.rnn)
    cm = tvm_bsp.compile_model(model, submodule="decoder.rnn")
    assert "decoder.rnn.weight_hh_l0" in cm.sparse
    with torch.no_grad():
        np.testing.assert_allclose(Spliced(model, cm)(_feats()), model(_feats()), atol=ATOL)


def test_unknown_submodule_lists_the_choices():
    with pytest.raises(
        ValueError, match=r"no submodule 'decoder.gru'.*\['decoder', 'decoder.rnn'\]"
    ):
        tvm_bsp.compile_model(_model(), submodule="decoder.gru")


def test_whole_model_is_refused_by_name():
    with pytest.raises(
        tvm_bsp.frontend.UnsupportedModuleError,
        match=r"'encoder\.0' is Conv1d; .* submodule='decoder\.rnn'",
    ):
        tvm_bsp.compile_model(_model())
