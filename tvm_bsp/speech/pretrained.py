"""Shipped acoustic models: one self-describing safetensors file per model, pruned ones sparse.

A pretrained file holds the model's state dict and, in the safetensors header entry ``meta``
(JSON), the :class:`~tvm_bsp.speech.model.ModelConfig` and ``info`` (how it was made: the
command, seed, corpus settings, wall time, its PER). A pruned weight is stored sparse: its
kept values in row-major order (``<name>::values``, float32) and its mask as packed bits
(``<name>::mask``, :func:`numpy.packbits`), so a 10x BSP model takes about a tenth of the dense
file. safetensors holds only tensors and strings: loading runs no code, and every size is
checked against the header before any array is built (a hostile file is refused with
:class:`PretrainedFormatError`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tvm_bsp.speech.model import AcousticModel, ModelConfig

PRETRAINED_FORMAT = "tvm_bsp.speech.pretrained"
PRETRAINED_VERSION = 1
MAX_FILE_BYTES = 512 * 2**20
"""Largest pretrained file :func:`load_pretrained` opens."""


class PretrainedFormatError(ValueError):
    """The file is not a readable pretrained model of this format."""


def save_pretrained(
    model: AcousticModel,
    path: str | os.PathLike,
    *,
    masks: dict[str, torch.Tensor] | None = None,
    info: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` (masked weights sparse) to ``path`` atomically.

    Parameters
    ----------
    model : AcousticModel
        A plain model (pruning parametrizations squashed).
    path : path-like
        The ``.safetensors`` file.
    masks : dict, optional
        ``{state-dict name: bool mask}`` of the pruned weights; the weights must be zero
        outside their masks.
    info : dict, optional
        JSON-able provenance (command, seed, corpus, wall time, PER).

    Returns
    -------
    pathlib.Path
    """
    from safetensors.torch import save_file

    masks = masks or {}
    state = model.state_dict()
    unknown = sorted(set(masks) - set(state))
    if unknown:
        raise ValueError(f"masks for unknown weights {unknown}")
    tensors: dict[str, torch.Tensor] = {}
    masked: dict[str, list[int]] = {}
    for name, value in state.items():
        value = value.detach().float().contiguous()
        if name not in masks:
            tensors[name] = value
            continue
        mask = masks[name].detach().bool().cpu()
        if tuple(mask.shape) != tuple(value.shape):
            raise ValueError(f"mask of {name} is {tuple(mask.shape)}, weight {tuple(value.shape)}")
        if bool((value[~mask] != 0).any()):
            raise ValueError(f"{name} has non-zero weights outside its mask")
        tensors[f"{name}::values"] = value[mask].contiguous()
        tensors[f"{name}::mask"] = torch.from_numpy(np.packbits(mask.numpy().reshape(-1)))
        masked[name] = list(value.shape)
    meta = {
        "format": PRETRAINED_FORMAT,
        "version": PRETRAINED_VERSION,
        "config": model.config.to_dict(),
        "masked": masked,
        "info": info or {},
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, str(tmp), metadata={"meta": json.dumps(meta)})
    tmp.chmod(0o644)
    os.replace(tmp, path)
    return path


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON header of a pretrained file (config, masked weights, info) without the arrays."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained model {path} not found")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise PretrainedFormatError(f"{path} is larger than {MAX_FILE_BYTES} bytes")
    try:
        with safe_open(str(path), framework="pt") as fh:
            header = fh.metadata() or {}
        meta = json.loads(header.get("meta", "null"))
    except (SafetensorError, OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise PretrainedFormatError(f"{path} is not a safetensors model file: {err}") from None
    if not isinstance(meta, dict) or meta.get("format") != PRETRAINED_FORMAT:
        raise PretrainedFormatError(f"{path} is not a {PRETRAINED_FORMAT} file")
    if meta.get("version") != PRETRAINED_VERSION:
        raise PretrainedFormatError(f"{path}: unsupported version {meta.get('version')!r}")
    return meta


def load_pretrained(
    path: str | os.PathLike,
) -> tuple[AcousticModel, dict[str, torch.Tensor], dict[str, Any]]:
    """Load what :func:`save_pretrained` wrote.

    Returns
    -------
    (AcousticModel, dict, dict)
        The model in eval mode (pruned weights dense, zero outside their masks), the masks
        ``{name: bool tensor}`` and the ``info`` dictionary.

    Raises
    ------
    PretrainedFormatError
        If the file is not such a model, or its arrays disagree with its header.
    """
    from safetensors.torch import load_file

    meta = read_meta(path)
    try:
        model = AcousticModel(ModelConfig.from_dict(meta["config"]))
        tensors = load_file(str(path))
    except (ValueError, TypeError, KeyError, OSError) as err:
        raise PretrainedFormatError(f"{path}: {err}") from None
    state = model.state_dict()
    masks: dict[str, torch.Tensor] = {}
    masked = meta.get("masked", {})
    if not isinstance(masked, dict) or set(masked) - set(state):
        raise PretrainedFormatError(f"{path}: masked weights {sorted(masked)} not in the model")
    loaded: dict[str, torch.Tensor] = {}
    for name, ref in state.items():
        if name in masked:
            loaded[name], masks[name] = _unpack(tensors, name, tuple(ref.shape), path)
        elif name in tensors and tuple(tensors[name].shape) == tuple(ref.shape):
            loaded[name] = tensors[name]
        else:
            raise PretrainedFormatError(f"{path}: weight {name} missing or of the wrong shape")
    model.load_state_dict(loaded)
    model.eval()
    return model, masks, dict(meta.get("info", {}))


def _unpack(
    tensors: dict[str, torch.Tensor], name: str, shape: tuple[int, ...], path: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    values, bits = tensors.get(f"{name}::values"), tensors.get(f"{name}::mask")
    size = int(np.prod(shape))
    if values is None or bits is None or bits.dtype != torch.uint8 or values.ndim != 1:
        raise PretrainedFormatError(f"{path}: sparse weight {name} is incomplete")
    if bits.numel() != (size + 7) // 8:
        raise PretrainedFormatError(f"{path}: mask of {name} has {bits.numel()} bytes")
    mask = np.unpackbits(bits.numpy(), count=size).astype(bool)
    if int(mask.sum()) != values.numel():
        raise PretrainedFormatError(
            f"{path}: {name} keeps {int(mask.sum())} weights but stores {values.numel()}"
        )
    dense = torch.zeros(size, dtype=torch.float32)
    dense[torch.from_numpy(mask)] = values.float()
    return dense.reshape(shape), torch.from_numpy(mask.reshape(shape))
