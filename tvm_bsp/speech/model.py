"""Acoustic models: a recurrent stack (GRU, LSTM or the pytorch-kaldi GRU) and a linear head.

The module's children are, in order, ``rnn`` then ``head``: the shape the compile path's
importer accepts, so a trained model compiles as it is. Inputs are time-major ``(T, B, 39)``
feature frames; outputs are ``(T, B, classes)`` scores: 39 phone classes for framewise
training, 40 for CTC (class 0 is the blank, phone ``k`` is class ``k + 1``).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

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

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown ModelConfig field(s) {unknown}; known: {sorted(known)}")
        return cls(**data)


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


MODEL_FORMAT = "tvm_bsp.speech.AcousticModel"


def config_path(path: str | os.PathLike) -> Path:
    """The JSON file that sits beside a saved model: ``model.pt`` -> ``model.json``."""
    return Path(path).with_suffix(".json")


def save_model(
    model: AcousticModel, path: str | os.PathLike, extra: dict | None = None
) -> tuple[Path, Path]:
    """Save a model as a torch state dict (``path``) plus its JSON config beside it.

    Parameters
    ----------
    model : AcousticModel
        A plain model (pruning masks squashed).
    path : path-like
        The ``.pt`` file; the config goes to :func:`config_path` of it.
    extra : dict, optional
        JSON-able metadata stored in the config file (e.g. PER, pruning rate).

    Returns
    -------
    (pathlib.Path, pathlib.Path)
        The state-dict file and the config file.
    """
    from tvm_bsp.speech.storage import atomic_write_text

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    meta = {"format": MODEL_FORMAT, "config": model.config.to_dict(), "extra": extra or {}}
    cfg = config_path(path)
    atomic_write_text(cfg, json.dumps(meta, indent=2) + "\n")
    return path, cfg


def load_model(path: str | os.PathLike) -> tuple[AcousticModel, dict]:
    """Load a model written by :func:`save_model` (``weights_only=True``), or a shipped
    ``.safetensors`` model (:func:`tvm_bsp.speech.pretrained.load_pretrained`; its ``info``
    is returned as the metadata).

    Returns
    -------
    (AcousticModel, dict)
        The model in eval mode and the ``extra`` metadata.

    Raises
    ------
    FileNotFoundError
        If the state dict or its JSON config is missing.
    ValueError
        If the config file is not a saved model's, or the weights do not fit it.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        from tvm_bsp.speech.pretrained import load_pretrained

        model, _, info = load_pretrained(path)
        return model, info
    cfg = config_path(path)
    if not path.exists():
        raise FileNotFoundError(f"model file {path} not found")
    if not cfg.exists():
        raise FileNotFoundError(f"model config {cfg} not found (save_model writes it)")
    try:
        meta = json.loads(cfg.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{cfg} is not valid JSON: {err}") from None
    if not isinstance(meta, dict) or meta.get("format") != MODEL_FORMAT:
        raise ValueError(f"{cfg} does not describe a saved {MODEL_FORMAT}")
    model = AcousticModel(ModelConfig.from_dict(meta["config"]))
    state = torch.load(path, map_location="cpu", weights_only=True)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"{path} does not fit the config in {cfg}: {err}") from None
    model.eval()
    return model, dict(meta.get("extra", {}))


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
