"""Dense-training checkpoints in safetensors: resumable across machines, no pickle.

A training run that spans sessions commits its checkpoint, so the file must be safe to load
from a repository: :func:`save_train_state` writes one ``.safetensors`` file with the model's
state dict (``model.*``), Adam's per-parameter state (``adam.<index>.exp_avg``,
``...exp_avg_sq``, ``...step``) and a JSON header entry ``meta`` (epoch, history, the
optimizer's hyper-parameters, the model config). :func:`load_train_state` restores them;
safetensors holds only tensors and strings, so loading runs no code.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

STATE_FORMAT = "tvm_bsp.speech.train_state"


@dataclass
class TrainState:
    """What :func:`load_train_state` read besides the restored tensors.

    Attributes
    ----------
    epoch : int
        The last finished epoch.
    history : list of dict
        Per-epoch records of :func:`tvm_bsp.speech.train.train_model`.
    extra : dict
        The caller's JSON metadata.
    """

    epoch: int
    history: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


def save_train_state(
    path: str | os.PathLike,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    epoch: int,
    history: list[dict[str, Any]],
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write the model and Adam state atomically to ``path`` (see the module docstring)."""
    from safetensors.torch import save_file

    tensors = {f"model.{k}": v.detach().contiguous() for k, v in model.state_dict().items()}
    state = optimizer.state_dict()
    for index, entry in state["state"].items():
        for key, value in entry.items():
            t = value if torch.is_tensor(value) else torch.tensor(float(value))
            tensors[f"adam.{index}.{key}"] = t.detach().contiguous()
    meta = {
        "format": STATE_FORMAT,
        "epoch": epoch,
        "history": history,
        "param_groups": state["param_groups"],
        "extra": extra or {},
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, str(tmp), metadata={"meta": json.dumps(meta)})
    os.replace(tmp, path)
    return path


def load_train_state(
    path: str | os.PathLike, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None
) -> TrainState:
    """Restore what :func:`save_train_state` wrote into ``model`` (and ``optimizer``).

    Raises
    ------
    ValueError
        If the file is not such a checkpoint or does not fit the model.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as fh:
            header = fh.metadata() or {}
        tensors = load_file(str(path))
        meta = json.loads(header.get("meta", "null"))
    except (SafetensorError, OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not a readable training checkpoint: {err}") from None
    if not isinstance(meta, dict) or meta.get("format") != STATE_FORMAT:
        raise ValueError(f"{path} is not a {STATE_FORMAT} file")
    weights = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        raise ValueError(f"{path} does not fit the model: {err}") from None
    if optimizer is not None:
        per_param: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            if key.startswith("adam."):
                _, index, name = key.split(".", 2)
                per_param.setdefault(int(index), {})[name] = value
        optimizer.load_state_dict({"state": per_param, "param_groups": meta["param_groups"]})
    return TrainState(int(meta["epoch"]), list(meta.get("history", [])), meta.get("extra", {}))
