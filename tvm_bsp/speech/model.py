"""Acoustic models: a recurrent stack (GRU, LSTM or the pytorch-kaldi GRU) and a linear head.

The module's children are, in order, ``rnn`` then ``head``: the shape the compile path's
importer accepts, so a trained model compiles as it is. Inputs are time-major ``(T, B, 39)``
feature frames; outputs are ``(T, B, classes)`` scores: 39 phone classes for framewise
training, 40 for CTC (class 0 is the blank, phone ``k`` is class ``k + 1``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

NUM_PHONES = 39


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of an :class:`AcousticModel`.

    Attributes
    ----------
    cell : str
        ``"gru"`` (torch.nn.GRU), ``"lstm"`` (torch.nn.LSTM) or ``"kaldi_gru"`` (the
        pytorch-kaldi GRU of RTMobile: reset gate before the recurrent product, batch-norm on
        the input projections, dropout-scaled candidate).
    input_dim, hidden, layers : int
    head : str
        ``"framewise"`` (cross-entropy on aligned frames) or ``"ctc"``.
    dropout : float
        Dropout between layers (and, for ``kaldi_gru``, on the candidate).
    """

    cell: str = "gru"
    input_dim: int = 39
    hidden: int = 256
    layers: int = 2
    head: str = "framewise"
    dropout: float = 0.0

    @property
    def classes(self) -> int:
        """Output classes: 39 phones, plus the CTC blank."""
        return NUM_PHONES + (1 if self.head == "ctc" else 0)

    def to_dict(self) -> dict:
        """A JSON-able dictionary."""
        return asdict(self)


class AcousticModel(nn.Module):
    """Recurrent acoustic model (see the module docstring)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.head not in ("framewise", "ctc"):
            raise ValueError(f"head must be 'framewise' or 'ctc', got {config.head!r}")
        self.config = config
        self.rnn = _make_rnn(config)
        self.head = nn.Linear(config.hidden, config.classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scores ``(T, B, classes)`` for features ``(T, B, input_dim)``."""
        out, _ = self.rnn(x)
        return self.head(out)


def _make_rnn(config: ModelConfig) -> nn.Module:
    dropout = config.dropout if config.layers > 1 else 0.0
    if config.cell == "gru":
        return nn.GRU(config.input_dim, config.hidden, config.layers, dropout=dropout)
    if config.cell == "lstm":
        return nn.LSTM(config.input_dim, config.hidden, config.layers, dropout=dropout)
    if config.cell == "kaldi_gru":
        from tvm_bsp.frontend.kaldi_gru import KaldiGRU

        return KaldiGRU(config.input_dim, config.hidden, config.layers, dropout=config.dropout)
    raise ValueError(f"unknown cell {config.cell!r}: choose gru, lstm or kaldi_gru")
