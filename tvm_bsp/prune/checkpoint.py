"""Resumable checkpoints of a pruning run: model, optimizer, pruner, RNG states, epoch.

A checkpoint is one file written atomically (:func:`tvm_bsp.bspc.atomic_write`) with
``torch.save``. It holds only tensors, numbers and strings: ``model``, ``optimizer`` and
``lr_scheduler`` state dicts, the pruner's :meth:`~tvm_bsp.prune.admm.BSPPruner.state_dict`
(whose config is a JSON string), the torch and numpy RNG states as tensors, and ``meta``, a JSON
string with the epoch, the caller's ``extra`` (must be JSON-serialisable) and the Python
``random`` state. :func:`load_checkpoint` reads it with ``torch.load(..., weights_only=True)``,
torch's restricted unpickler (tensors, primitive containers, ``OrderedDict``; no arbitrary
objects, no code execution), so loading an untrusted file cannot run code; anything else raises
:class:`CheckpointError`.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tvm_bsp.bspc.io import atomic_write
from tvm_bsp.prune.admm import BSPPruner

CHECKPOINT_FORMAT = "tvm_bsp.prune.checkpoint"
CHECKPOINT_VERSION = 1


class CheckpointError(ValueError):
    """The file is not a readable checkpoint of this format (or holds disallowed objects)."""


@dataclass
class CheckpointInfo:
    """What :func:`load_checkpoint` returns besides restoring the objects.

    Attributes
    ----------
    epoch : int
        The epoch stored at save time (conventionally the last completed one).
    extra : dict
        The caller's ``extra`` dictionary (parsed JSON).
    pruner_phase : str or None
        The pruner's phase at save time, ``None`` if no pruner was saved.
    """

    epoch: int
    extra: dict[str, Any] = field(default_factory=dict)
    pruner_phase: str | None = None


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    pruner: BSPPruner | None = None,
    epoch: int = 0,
    extra: dict[str, Any] | None = None,
    *,
    lr_scheduler: Any | None = None,
) -> Path:
    """Write a checkpoint atomically (the old file, if any, survives a crash mid-write).

    Parameters
    ----------
    path : path-like
        Checkpoint file; its directory must exist.
    model : torch.nn.Module
    optimizer : torch.optim.Optimizer, optional
    pruner : BSPPruner, optional
        Must be prepared.
    epoch : int
        Stored as is (:func:`tvm_bsp.prune.loop.admm_prune` stores the last completed epoch).
    extra : dict, optional
        JSON-serialisable data to keep with the checkpoint (history, settings).
    lr_scheduler : optional
        Anything with ``state_dict()`` / ``load_state_dict()`` holding plain data.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    ValueError
        If ``extra`` is not JSON-serialisable.
    """
    try:
        meta = json.dumps(
            {
                "epoch": int(epoch),
                "extra": extra or {},
                "pruner_phase": pruner.phase if pruner is not None else None,
                "python_rng": _python_rng_to_json(random.getstate()),
                "numpy_rng": _numpy_rng_meta(),
                "torch_version": torch.__version__,
            }
        )
    except TypeError as err:
        raise ValueError(f"checkpoint extra must be JSON-serialisable: {err}") from None
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "meta": meta,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "lr_scheduler": lr_scheduler.state_dict() if lr_scheduler is not None else None,
        "pruner": pruner.state_dict() if pruner is not None else None,
        "rng": {
            "torch": torch.get_rng_state(),
            "numpy_keys": torch.from_numpy(np.random.get_state()[1].astype(np.int64)),
        },
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    data = buf.getvalue()
    return atomic_write(path, lambda f: f.write(data))


def load_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    pruner: BSPPruner | None = None,
    *,
    lr_scheduler: Any | None = None,
    restore_rng: bool = True,
    map_location: str | torch.device | None = "cpu",
) -> CheckpointInfo:
    """Restore a checkpoint into fresh (or existing) objects.

    The pruner is restored first (a fresh, unprepared pruner is prepared on ``model`` with the
    stored config, which adds the mask parametrizations the model's state dict expects), then
    the model, the optimizer, the scheduler and, with ``restore_rng``, the torch, numpy and
    Python global RNG states. Build the optimizer the same way as in the saving run (its state
    is matched to parameters by position).

    Raises
    ------
    FileNotFoundError
        If there is no file.
    CheckpointError
        If the file is not a checkpoint of this format, is truncated, or holds objects the
        restricted unpickler refuses.
    ValueError
        If a pruner is given but none was saved, or the stored config differs from a prepared
        pruner's.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, AttributeError) as err:
        raise CheckpointError(f"{path}: not a loadable checkpoint ({err})") from None
    if (
        not isinstance(payload, dict)
        or payload.get("format") != CHECKPOINT_FORMAT
        or payload.get("version") != CHECKPOINT_VERSION
    ):
        raise CheckpointError(f"{path}: not a {CHECKPOINT_FORMAT} v{CHECKPOINT_VERSION} file")
    try:
        meta = json.loads(payload["meta"])
        int(meta["epoch"])
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: damaged checkpoint metadata ({err})") from None
    if pruner is not None:
        if payload["pruner"] is None:
            raise ValueError(f"{path} holds no pruner state")
        pruner.load_state_dict(payload["pruner"], model)
    model.load_state_dict(payload["model"])
    if optimizer is not None and payload["optimizer"] is not None:
        optimizer.load_state_dict(payload["optimizer"])
    if lr_scheduler is not None and payload["lr_scheduler"] is not None:
        lr_scheduler.load_state_dict(payload["lr_scheduler"])
    if restore_rng:
        torch.set_rng_state(payload["rng"]["torch"].cpu())
        np_meta = meta["numpy_rng"]
        keys = payload["rng"]["numpy_keys"].cpu().numpy().astype(np.uint32)
        np.random.set_state(
            (np_meta["name"], keys, np_meta["pos"], np_meta["has_gauss"], np_meta["cached"])
        )
        random.setstate(_python_rng_from_json(meta["python_rng"]))
    return CheckpointInfo(int(meta["epoch"]), dict(meta["extra"]), meta["pruner_phase"])


def _numpy_rng_meta() -> dict[str, Any]:
    name, _, pos, has_gauss, cached = np.random.get_state()
    return {"name": name, "pos": int(pos), "has_gauss": int(has_gauss), "cached": float(cached)}


def _python_rng_to_json(state: tuple) -> list:
    version, internal, gauss_next = state
    return [version, list(internal), gauss_next]


def _python_rng_from_json(data: list) -> tuple:
    version, internal, gauss_next = data
    return (version, tuple(internal), gauss_next)
