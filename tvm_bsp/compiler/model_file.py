"""Model files that ``tvm-bsp compile`` / ``deploy`` read.

Two kinds, told apart by the JSON file beside the ``.pt`` (``model.pt`` -> ``model.json``):

speech model (``"format": "tvm_bsp.speech.AcousticModel"``)
    Written by ``tvm-bsp train`` / ``prune`` (:func:`tvm_bsp.speech.model.save_model`). Its
    outputs are the 39 TIMIT phone classes (plus the blank for CTC heads); the decoding
    settings chosen in training (``extra["decode"]``) go into the sidecar.
plain RNN module (``"format": "tvm_bsp.rnn_module"``)
    Written by :func:`save_rnn_module` for any ``torch.nn.GRU`` / ``torch.nn.LSTM`` with an
    optional ``nn.Linear`` head. ``model.pt`` is the state dict of an :class:`RNNStack`
    (keys ``rnn.*`` and ``head.*``); the JSON holds ``cell`` (``"gru"`` or ``"lstm"``),
    ``input_size``, ``hidden_size``, ``num_layers``, ``bias``, ``batch_first``,
    ``head_outputs`` (``null``: no head) and optionally ``labels`` (names of the outputs).

A ``.onnx`` file (a GRU/LSTM graph, :func:`tvm_bsp.frontend.from_onnx`) needs no JSON; its
outputs are labelled ``"0"``, ``"1"``, ...

State dicts are read with ``torch.load(..., weights_only=True)``: no pickled code runs.
"""

from __future__ import annotations

import json
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

RNN_MODULE_FORMAT = "tvm_bsp.rnn_module"
_SPEECH_FORMAT = "tvm_bsp.speech.AcousticModel"
#: Framewise decoding used when a speech model's config has none (as ``tvm-bsp prune``).
DEFAULT_DECODE = {"smooth": 7, "min_run": 4}


class RNNStack(nn.Module):
    """``rnn`` (nn.GRU / nn.LSTM) then an optional ``head`` (nn.Linear).

    ``forward(x, h=None)`` returns ``(head(rnn(x)[0]), state)`` like the torch modules.
    """

    def __init__(self, rnn: nn.Module, head: nn.Module | None = None) -> None:
        super().__init__()
        self.rnn = rnn
        if head is not None:
            self.head = head

    def forward(self, x: torch.Tensor, h: Any = None) -> tuple[torch.Tensor, Any]:
        """Run the stack; see the class docstring."""
        y, h = self.rnn(x, h)
        return (self.head(y) if hasattr(self, "head") else y), h


@dataclass
class LoadedModel:
    """A model file opened for compilation.

    Attributes
    ----------
    module : torch.nn.Module or RNNModel
        In eval mode; the description (:class:`tvm_bsp.frontend.model.RNNModel`) of an
        ``.onnx`` file.
    labels : list of str
        One name per output class.
    head : str
        ``"framewise"`` or ``"ctc"``.
    decode : dict
        ``{"smooth", "min_run"}`` for framewise decoding.
    kind : str
        ``"speech"``, ``"rnn_module"`` or ``"onnx"``.
    """

    module: Any  # nn.Module, or RNNModel for .onnx files
    labels: list[str]
    head: str = "framewise"
    decode: dict[str, int] = field(default_factory=lambda: {"smooth": 1, "min_run": 1})
    kind: str = "rnn_module"


def _config(module: RNNStack, labels: list[str] | None) -> dict[str, Any]:
    rnn = module.rnn
    if isinstance(rnn, nn.GRU) and not isinstance(rnn, nn.LSTM):
        cell = "gru"
    elif isinstance(rnn, nn.LSTM):
        cell = "lstm"
    else:
        raise ValueError(f"save_rnn_module takes nn.GRU or nn.LSTM, got {type(rnn).__name__}")
    if rnn.bidirectional or getattr(rnn, "proj_size", 0):
        raise ValueError("bidirectional and projected RNNs are not supported")
    head = getattr(module, "head", None)
    if head is not None and not isinstance(head, nn.Linear):
        raise ValueError(f"the head must be nn.Linear, got {type(head).__name__}")
    outputs = head.out_features if head is not None else rnn.hidden_size
    if labels is not None and len(labels) != outputs:
        raise ValueError(f"{len(labels)} labels for {outputs} outputs")
    return {
        "format": RNN_MODULE_FORMAT,
        "version": 1,
        "cell": cell,
        "input_size": rnn.input_size,
        "hidden_size": rnn.hidden_size,
        "num_layers": rnn.num_layers,
        "bias": bool(rnn.bias),
        "batch_first": bool(rnn.batch_first),
        "head_outputs": None if head is None else head.out_features,
        "labels": labels,
    }


def save_rnn_module(
    module: RNNStack, path: str | os.PathLike[str], labels: list[str] | None = None
) -> tuple[Path, Path]:
    """Save an :class:`RNNStack` as ``path`` (state dict) plus ``path.with_suffix(".json")``.

    Parameters
    ----------
    module : RNNStack
        ``rnn`` (nn.GRU or nn.LSTM, unidirectional) and an optional nn.Linear ``head``.
        Pruning parametrizations must be squashed first (plain weights are saved).
    path : path-like
        The ``.pt`` file.
    labels : list of str, optional
        Names of the outputs (for the runner's phone printing).

    Returns
    -------
    (pathlib.Path, pathlib.Path)
        The state-dict file and the JSON file; both written atomically.
    """
    from tvm_bsp.runtime.labels import write_json

    config = _config(module, labels)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().clone() for k, v in module.state_dict().items()}
    from tvm_bsp.runtime.files import atomic_output

    with atomic_output(path) as tmp:
        torch.save(state, tmp)
    return path, write_json(path.with_suffix(".json"), config)


def _json_bool(config: dict[str, Any], key: str, default: bool, where: Path) -> bool:
    value = config.get(key, default)
    if not isinstance(value, bool):  # bool("false") is True: accept JSON booleans only
        raise ValueError(f"{where}: {key} must be true or false (a JSON boolean), got {value!r}")
    return value


def _build_rnn_module(config: dict[str, Any], where: Path) -> RNNStack:
    bias = _json_bool(config, "bias", True, where)
    batch_first = _json_bool(config, "batch_first", False, where)
    try:
        cls = {"gru": nn.GRU, "lstm": nn.LSTM}[config["cell"]]
        rnn = cls(
            int(config["input_size"]),
            int(config["hidden_size"]),
            int(config["num_layers"]),
            bias=bias,
            batch_first=batch_first,
        )
        outputs = config.get("head_outputs")
        head = None if outputs is None else nn.Linear(rnn.hidden_size, int(outputs))
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{where}: bad {RNN_MODULE_FORMAT} config ({err!r})") from None
    return RNNStack(rnn, head)


def load_model_file(path: str | os.PathLike[str]) -> LoadedModel:
    """Open a speech model, plain RNN module or ``.onnx`` file (see the module docstring).

    Raises
    ------
    FileNotFoundError
        If the ``.pt`` or its JSON file is missing.
    ValueError
        If the JSON is not one of the two formats or the weights do not fit it.
    """
    path = Path(path)
    if path.suffix.lower() == ".onnx":  # a GRU/LSTM ONNX graph (tvm_bsp.frontend.from_onnx)
        if not path.is_file():
            raise FileNotFoundError(f"model file {path} not found")
        return _load_onnx(path)
    if path.suffix == ".safetensors":  # a shipped speech model (tvm_bsp.speech.pretrained)
        if not path.is_file():
            raise FileNotFoundError(f"model file {path} not found")
        return _load_speech(path)
    cfg = path.with_suffix(".json")
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} not found")
    if not cfg.is_file():
        raise FileNotFoundError(
            f"model config {cfg} not found (tvm-bsp train/prune or save_rnn_module write it)"
        )
    try:
        meta = json.loads(cfg.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{cfg} is not valid JSON: {err}") from None
    fmt = meta.get("format") if isinstance(meta, dict) else None
    if fmt == _SPEECH_FORMAT:
        return _load_speech(path)
    if fmt != RNN_MODULE_FORMAT:
        raise ValueError(
            f"{cfg} has format {fmt!r}; expected {_SPEECH_FORMAT!r} or {RNN_MODULE_FORMAT!r}"
        )
    module = _build_rnn_module(meta, cfg)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        module.load_state_dict(state)
    except (RuntimeError, OSError, EOFError, pickle.UnpicklingError) as err:
        raise ValueError(f"{path} does not fit the config in {cfg}: {err}") from None
    outputs = module.head.out_features if hasattr(module, "head") else module.rnn.hidden_size
    labels = meta.get("labels") or [str(i) for i in range(outputs)]
    if not isinstance(labels, list) or len(labels) != outputs:
        count = len(labels) if isinstance(labels, list) else repr(labels)
        raise ValueError(f"{cfg}: {count} labels for {outputs} outputs of the module")
    return LoadedModel(module.eval(), list(labels))


def _load_onnx(path: Path) -> LoadedModel:
    from tvm_bsp.frontend.dispatch import import_model

    desc = import_model(path)  # UnsupportedOnnxError (a ValueError) names what it refuses
    return LoadedModel(desc, [str(i) for i in range(desc.output_size)], kind="onnx")


def _load_speech(path: Path) -> LoadedModel:
    from tvm_bsp.speech.model import load_model
    from tvm_bsp.speech.phones import PHONES_39

    try:
        model, extra = load_model(path)
    except (RuntimeError, EOFError, pickle.UnpicklingError) as err:
        raise ValueError(f"cannot read {path}: {err}") from None
    head = model.config.head
    labels = ["<blank>", *PHONES_39] if head == "ctc" else list(PHONES_39)
    decode = dict(extra.get("decode") or DEFAULT_DECODE)
    return LoadedModel(model, labels, head, decode, "speech")
