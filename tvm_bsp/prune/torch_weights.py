"""The pruner's view of torch weights: which parameters a config can name, the projection
mask of a torch weight, and relative distances between weights.

The projections themselves work on float tensors (:mod:`tvm_bsp.prune.projections`, through a
spec's ``mask``); these helpers adapt dtypes and devices for :class:`tvm_bsp.prune.admm.BSPPruner`.
"""

from __future__ import annotations

import torch
from torch import nn

from tvm_bsp.prune.config import Spec

__all__ = ["projection_mask", "prunable_shapes", "relative_norm"]


def prunable_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """``{name: shape}`` of the parameters a config can name (parametrized ones excluded).

    Parameters
    ----------
    model : torch.nn.Module
        The model, with or without pruning masks.

    Returns
    -------
    dict of str to tuple of int
        Parameter names as ``named_parameters`` gives them, minus those under
        ``parametrizations`` (the originals of masked weights).
    """
    return {
        name: tuple(p.shape)
        for name, p in model.named_parameters()
        if "parametrizations" not in name.split(".")
    }


def projection_mask(spec: Spec, w: torch.Tensor) -> torch.Tensor:
    """Projection mask of a torch weight onto the set of ``spec``.

    Parameters
    ----------
    spec : Spec
        The constraint set (:mod:`tvm_bsp.prune.config`).
    w : torch.Tensor
        The weight; projected in float32 unless it is float32 or float64 already.

    Returns
    -------
    torch.Tensor
        The bool mask of the entries the projection keeps, on ``w``'s device.
    """
    src = w.detach()
    if src.dtype not in (torch.float32, torch.float64):
        src = src.float()
    return spec.mask(src).to(w.device)


def relative_norm(diff: torch.Tensor, ref: torch.Tensor) -> float:
    """``||diff|| / ||ref||`` in float64 (0 when ``ref`` is zero).

    Parameters
    ----------
    diff, ref : torch.Tensor
        The difference and the reference it is measured against.

    Returns
    -------
    float
        The relative Euclidean (Frobenius) norm.
    """
    norm = float(torch.linalg.vector_norm(ref.double()))
    return float(torch.linalg.vector_norm(diff.double())) / norm if norm > 0 else 0.0
