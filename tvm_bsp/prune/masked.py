"""Fixed masks on module weights, as ``torch.nn.utils.parametrize`` parametrizations.

:func:`add_mask` registers a :class:`WeightMask` on ``module.<name>``: the trained tensor moves to
``module.parametrizations.<name>.original`` (the *same* ``Parameter`` object, so an optimizer
built before keeps working) and every read of ``module.<name>`` returns
``original.masked_fill(~mask, 0)``. Hence

* the weight the module computes with is exactly zero where the mask is ``False``, whatever an
  optimizer (momentum, Adam, weight decay) does to the original's pruned entries;
* gradients of pruned entries of the original are exactly zero;
* :func:`remove_mask` bakes ``original * mask`` back into a plain parameter (same object).

``torch.nn.GRU`` / ``LSTM`` / ``RNN`` keep a list ``_flat_weights`` that their forward passes to
the fused kernel. Their forward calls ``_update_flat_weights``, which re-reads every weight by
name when the tensor objects changed; a parametrized weight is a new tensor on every read, so the
list is rebuilt, with masked weights, on every forward (tested on the CPU path). The price is
that each forward evaluates the mask twice per masked weight (an elementwise ``masked_fill``), small
against the recurrence itself. cuDNN's packed-weight buffer is not used on this path.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize


class WeightMask(nn.Module):
    """Parametrization ``w -> w.masked_fill(~mask, 0)`` with a boolean ``mask`` buffer.

    The mask is a buffer: it moves with ``module.to(...)`` and appears in the model's
    ``state_dict`` (as ``<module>.parametrizations.<name>.0.mask``).
    """

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask.detach().to(torch.bool).clone())

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w.masked_fill(~self.mask, 0)


def split_name(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    """Return ``(owner module, attribute)`` for a dotted name such as ``"gru.weight_hh_l0"``."""
    path, _, attr = name.rpartition(".")
    try:
        module = model.get_submodule(path) if path else model
    except AttributeError:
        raise ValueError(f"model has no submodule {path!r} (from parameter {name!r})") from None
    return module, attr


def mask_module(module: nn.Module, attr: str) -> WeightMask | None:
    """The :class:`WeightMask` on ``module.<attr>``, or ``None``."""
    if not parametrize.is_parametrized(module, attr):
        return None
    for p in module.parametrizations[attr]:
        if isinstance(p, WeightMask):
            return p
    return None


def original(module: nn.Module, attr: str) -> nn.Parameter:
    """The trained tensor behind ``module.<attr>`` (the parameter the optimizer updates)."""
    if parametrize.is_parametrized(module, attr):
        return module.parametrizations[attr].original
    tensor = getattr(module, attr)
    if not isinstance(tensor, nn.Parameter):
        raise ValueError(f"{type(module).__name__}.{attr} is not a parameter")
    return tensor


def add_mask(module: nn.Module, attr: str, mask: torch.Tensor | None = None) -> WeightMask:
    """Register a :class:`WeightMask` on ``module.<attr>`` (all-ones mask if ``mask is None``).

    Raises
    ------
    ValueError
        If the tensor is already parametrized (by this or another parametrization), or the mask
        has another shape.
    """
    if parametrize.is_parametrized(module, attr):
        raise ValueError(
            f"{type(module).__name__}.{attr} is already parametrized; masks can only be added to "
            "plain parameters"
        )
    weight = original(module, attr)
    if mask is None:
        mask = torch.ones_like(weight, dtype=torch.bool)
    if tuple(mask.shape) != tuple(weight.shape):
        raise ValueError(f"mask shape {tuple(mask.shape)} != weight shape {tuple(weight.shape)}")
    wm = WeightMask(mask.to(weight.device))
    parametrize.register_parametrization(module, attr, wm)
    return wm


def set_mask(module: nn.Module, attr: str, mask: torch.Tensor) -> None:
    """Replace the mask on ``module.<attr>`` in place (the buffer keeps its identity)."""
    wm = mask_module(module, attr)
    if wm is None:
        raise ValueError(f"{type(module).__name__}.{attr} has no WeightMask")
    if tuple(mask.shape) != tuple(wm.mask.shape):
        raise ValueError(f"mask shape {tuple(mask.shape)} != weight shape {tuple(wm.mask.shape)}")
    wm.mask.copy_(mask.to(torch.bool))


def remove_mask(module: nn.Module, attr: str) -> nn.Parameter:
    """Bake the mask into the original (pruned entries set to zero) and unregister it.

    Returns
    -------
    torch.nn.Parameter
        The plain parameter now at ``module.<attr>`` (the same object as the original).
    """
    wm = mask_module(module, attr)
    if wm is None:
        raise ValueError(f"{type(module).__name__}.{attr} has no WeightMask")
    if len(module.parametrizations[attr]) != 1:
        raise ValueError(f"{type(module).__name__}.{attr} carries other parametrizations too")
    weight = original(module, attr)
    with torch.no_grad():
        weight.masked_fill_(~wm.mask, 0)
    parametrize.remove_parametrizations(module, attr, leave_parametrized=False)
    return weight
