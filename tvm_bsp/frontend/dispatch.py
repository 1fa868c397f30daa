"""``import_model``: a torch module, an ONNX model or a description, to an ``RNNModel``."""

from __future__ import annotations

import os
from typing import Any

from tvm_bsp.frontend.model import RNNModel


def is_onnx(obj: Any) -> bool:
    """Whether ``obj`` is an ``onnx.ModelProto`` or a path ending in ``.onnx``."""
    if isinstance(obj, str | os.PathLike):
        return os.fspath(obj).lower().endswith(".onnx")
    cls = type(obj)
    return cls.__name__ == "ModelProto" and cls.__module__.startswith("onnx")


def import_model(obj: Any) -> RNNModel:
    """Describe ``obj``: :func:`~tvm_bsp.frontend.onnx_import.from_onnx` for ONNX models and
    ``.onnx`` paths, :func:`~tvm_bsp.frontend.torch_import.from_torch` otherwise.

    Parameters
    ----------
    obj : torch.nn.Module, onnx.ModelProto, str or os.PathLike (``.onnx``), or RNNModel

    Returns
    -------
    RNNModel
    """
    if is_onnx(obj):
        from tvm_bsp.frontend.onnx_import import from_onnx

        return from_onnx(obj)
    if isinstance(obj, str | os.PathLike):
        raise ValueError(f"a model path must end in .onnx, got {os.fspath(obj)!r}")
    from tvm_bsp.frontend.torch_import import from_torch

    return from_torch(obj)
