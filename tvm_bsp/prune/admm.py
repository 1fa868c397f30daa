"""ADMM pruning of torch modules onto BSP (and ESE / magnitude) constraint sets.

The problem (RTMobile Sec. III-C, after ADMM-NN) is ``min_W f(W)`` subject to ``W_i in S_i``
for every pruned weight ``W_i``, where ``S_i`` is the set of matrices that fit the spec's
structure (:mod:`tvm_bsp.prune.config`). ADMM splits it with an auxiliary ``Z_i in S_i`` and a
scaled dual ``U_i``:

1. train ``W`` for a while on ``f(W) + sum_i rho/2 ||W_i - Z_i + U_i||^2`` (the task loss plus
   :meth:`BSPPruner.penalty`, with any optimizer);
2. :meth:`BSPPruner.step`: ``Z_i <- proj_S_i(W_i + U_i)``, ``U_i <- U_i + W_i - Z_i``, then
   ``rho`` follows its schedule (and ``U`` is rescaled by ``rho_old / rho_new`` so that the
   unscaled dual ``rho * U`` is unchanged, Boyd et al. 2011, Sec. 3.4.1; pass
   ``rescale_dual=False`` for the plain ADMM-NN update);
3. repeat; :meth:`BSPPruner.distance` reports how far each ``W_i`` still is from its set.

Then :meth:`BSPPruner.hard_prune` projects every ``W_i`` onto its set and freezes the masks,
masked retraining keeps them fixed (the masks are parametrizations,
:mod:`tvm_bsp.prune.masked`), and :meth:`BSPPruner.squash_mask` bakes them into plain
parameters. The lifecycle follows ``torch.ao.pruning``'s sparsifiers::

    pruner = BSPPruner(rho=1e-3, rho_schedule=RhoSchedule(factor=1.5, max_rho=1.0))
    pruner.prepare(model, {"gru.weight_*": BSPSpec(16, 8, col_rate=16, row_rate=2)})
    optimizer = torch.optim.Adam(model.parameters())   # before or after prepare
    for epoch in range(admm_epochs):
        for x, y in data:
            loss = task_loss(model(x), y) + pruner.penalty()
            optimizer.zero_grad(); loss.backward(); optimizer.step()
        pruner.step()
    pruner.hard_prune()
    ...                                             # masked retraining, same loop, no penalty
    pruner.squash_mask()

Phases: ``"admm"`` (after :meth:`~BSPPruner.prepare`; masks all ones), ``"retrain"`` (after
:meth:`~BSPPruner.hard_prune`; masks fixed), ``"squashed"`` (after
:meth:`~BSPPruner.squash_mask`; plain parameters, masks remembered for export).

This module holds the pruner's lifecycle and state; the ``rho`` schedules are in
:mod:`tvm_bsp.prune.rho_schedule`, the projection of torch weights and the distances in
:mod:`tvm_bsp.prune.torch_weights`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from tvm_bsp.prune import masked
from tvm_bsp.prune.config import (
    PruneConfig,
    Spec,
    config_from_json,
    config_to_json,
    resolve_config,
)
from tvm_bsp.prune.projections import achieved_rate
from tvm_bsp.prune.rho_schedule import RhoSchedule
from tvm_bsp.prune.torch_weights import projection_mask, prunable_shapes, relative_norm

__all__ = ["PHASES", "STATE_FORMAT", "STATE_VERSION", "BSPPruner", "RhoSchedule", "prunable_shapes"]

PHASES = ("admm", "retrain", "squashed")
STATE_FORMAT = "tvm_bsp.prune.BSPPruner"
STATE_VERSION = 1


@dataclass
class _Entry:
    """One pruned weight: where it lives, its spec, and its ADMM variables."""

    module: nn.Module
    attr: str
    spec: Spec
    z: torch.Tensor | None = None
    u: torch.Tensor | None = None


class BSPPruner:
    """ADMM pruner for the 2-D weights of a torch module (see the module docstring).

    Each configured weight is pruned as one matrix: for ``nn.GRU`` / ``nn.LSTM`` that is the
    stacked gate matrix (``3H x I``, ``4H x H``, ...), the layout RTMobile and the BSPC kernels
    use (:mod:`tvm_bsp.prune.config`).

    Parameters
    ----------
    config : mapping, optional
        ``{parameter name or glob pattern: spec}`` (:mod:`tvm_bsp.prune.config`); may instead be
        given to :meth:`prepare`.
    rho : float
        Initial ADMM penalty weight (> 0).
    rho_schedule : callable, optional
        ``rho_schedule(rho, step) -> new rho``, called after every :meth:`step` with the 1-based
        step count; e.g. :class:`RhoSchedule`. ``None`` keeps ``rho`` constant. Not stored in
        :meth:`state_dict`: pass the same schedule when resuming.
    rescale_dual : bool
        Rescale ``U`` by ``rho_old / rho_new`` when ``rho`` changes (default ``True``).

    Attributes
    ----------
    model : torch.nn.Module or None
        The prepared model.
    specs : dict
        ``{parameter name: spec}`` after :meth:`prepare`, in model order.
    phase : str or None
        ``None`` before :meth:`prepare`, then one of :data:`PHASES`.
    rho : float
    admm_steps : int
        Number of :meth:`step` calls so far.
    """

    def __init__(
        self,
        config: PruneConfig | None = None,
        *,
        rho: float = 1e-3,
        rho_schedule: Callable[[float, int], float] | None = None,
        rescale_dual: bool = True,
    ) -> None:
        if not (isinstance(rho, int | float) and math.isfinite(rho) and rho > 0):
            raise ValueError(f"rho must be a finite positive number, got {rho!r}")
        self.config = config
        self.rho = float(rho)
        self.rho_schedule = rho_schedule
        self.rescale_dual = rescale_dual
        self.model: nn.Module | None = None
        self.specs: dict[str, Spec] = {}
        self.phase: str | None = None
        self.admm_steps = 0
        self._entries: dict[str, _Entry] = {}
        self._squashed_masks: dict[str, torch.Tensor] = {}

    # ------------------------------------------------------------------ lifecycle
    def prepare(self, model: nn.Module, config: PruneConfig | None = None) -> None:
        """Attach to ``model``: resolve the config, add all-ones masks, start ADMM.

        ``Z`` starts as the projection of each weight and ``U`` at zero (ADMM-NN's start). The
        masked weights' ``Parameter`` objects stay the same (they move under
        ``module.parametrizations``), so an optimizer built before ``prepare`` keeps working;
        note that ``model.parameters()`` lists them in a different order afterwards.

        Raises
        ------
        ValueError
            If there is no config, it does not resolve
            (:func:`~tvm_bsp.prune.config.resolve_config`), or the model already carries masks.
        RuntimeError
            If this pruner is already prepared.
        """
        if self.model is not None:
            raise RuntimeError("this pruner is already prepared; use a new BSPPruner")
        config = self.config if config is None else config
        if config is None:
            raise ValueError("no pruning config: pass one to BSPPruner(...) or prepare(...)")
        for name, module in model.named_modules():
            if any(isinstance(m, masked.WeightMask) for m in module.children()):
                raise ValueError(f"model already carries pruning masks (at {name or 'the root'})")
        specs = resolve_config(prunable_shapes(model), config)
        entries = {}
        for name, spec in specs.items():
            module, attr = masked.split_name(model, name)
            entries[name] = _Entry(module, attr, spec)
        for entry in entries.values():
            masked.add_mask(entry.module, entry.attr)
            w = masked.original(entry.module, entry.attr).detach()
            entry.z = w * projection_mask(entry.spec, w)
            entry.u = torch.zeros_like(w)
        self.model, self.specs, self._entries = model, specs, entries
        self.config = config
        self.phase = "admm"
        self.admm_steps = 0

    @property
    def names(self) -> list[str]:
        """Names of the pruned weights, in model order."""
        return list(self.specs)

    def weight(self, name: str) -> torch.Tensor:
        """The weight ``name`` as the model uses it (masked), detached."""
        entry = self._entry(name)
        return getattr(entry.module, entry.attr).detach()

    def penalty(self) -> torch.Tensor:
        """The augmented-Lagrangian term ``sum_i rho/2 ||W_i - Z_i + U_i||^2`` to add to the loss.

        Differentiable with respect to the weights. Zero (a scalar tensor) outside the ADMM
        phase, so a training loop can add it unconditionally.
        """
        self._require_prepared()
        terms = []
        for entry in self._entries.values():
            w = masked.original(entry.module, entry.attr)
            if self.phase != "admm":
                return w.new_zeros(())
            terms.append((w - entry.z + entry.u).pow(2).sum())
        return 0.5 * self.rho * sum(terms[1:], terms[0])

    @torch.no_grad()
    def step(self) -> dict[str, float]:
        """One ADMM update: ``Z <- proj(W + U)``, ``U <- U + W - Z``, then the rho schedule.

        Returns
        -------
        dict
            ``{name: ||W - Z|| / ||W||}``, the relative primal residual after the update.

        Raises
        ------
        RuntimeError
            Outside the ADMM phase.
        """
        self._require_phase("admm", "step")
        residuals = {}
        for name, entry in self._entries.items():
            w = masked.original(entry.module, entry.attr).detach()
            v = w + entry.u
            entry.z = v * projection_mask(entry.spec, v)
            entry.u = v - entry.z  # = U + W - Z
            residuals[name] = relative_norm(w - entry.z, w)
        self.admm_steps += 1
        if self.rho_schedule is not None:
            new_rho = float(self.rho_schedule(self.rho, self.admm_steps))
            if not (math.isfinite(new_rho) and new_rho > 0):
                raise ValueError(f"rho_schedule returned {new_rho}; rho must stay positive")
            if self.rescale_dual and new_rho != self.rho:
                scale = self.rho / new_rho
                for entry in self._entries.values():
                    entry.u.mul_(scale)
            self.rho = new_rho
        return residuals

    @torch.no_grad()
    def distance(self) -> dict[str, float]:
        """``{name: ||W - proj(W)|| / ||W||}`` for the weights as the model uses them."""
        self._require_prepared()
        out = {}
        for name, entry in self._entries.items():
            w = getattr(entry.module, entry.attr).detach()
            out[name] = relative_norm(w - w * projection_mask(entry.spec, w), w)
        return out

    @torch.no_grad()
    def hard_prune(self) -> dict[str, float]:
        """Project every weight onto its set, zero the pruned entries and fix the masks.

        Ends the ADMM phase (``Z`` and ``U`` are dropped) and starts masked retraining: from
        now on the model computes with ``W * mask`` and pruned entries get zero gradients.
        Calling it right after :meth:`prepare` is one-shot projection pruning.

        Returns
        -------
        dict
            ``{name: achieved compression}`` (:func:`~tvm_bsp.prune.projections.achieved_rate`).
        """
        self._require_phase("admm", "hard_prune")
        rates = {}
        for name, entry in self._entries.items():
            w = masked.original(entry.module, entry.attr)
            mask = projection_mask(entry.spec, w.detach())
            w.masked_fill_(~mask, 0)
            masked.set_mask(entry.module, entry.attr, mask)
            entry.z = entry.u = None
            rates[name] = achieved_rate(mask)
        self.phase = "retrain"
        return rates

    @torch.no_grad()
    def zero_pruned_(self) -> None:
        """Zero the pruned entries of the originals (cosmetic: the model already uses zeros).

        Optimizers with momentum or decoupled weight decay can move the hidden pruned entries of
        an original; calling this after ``optimizer.step()`` keeps them at zero, like the
        "re-apply masks after each step" style of masked training.
        """
        if self.phase != "retrain":
            return
        for entry in self._entries.values():
            wm = masked.mask_module(entry.module, entry.attr)
            masked.original(entry.module, entry.attr).masked_fill_(~wm.mask, 0)

    def squash_mask(self) -> None:
        """Bake the masks into plain parameters and remove the parametrizations.

        The masks stay available from :meth:`masks` (for :func:`~tvm_bsp.prune.export.export_bspc`).
        """
        self._require_phase("retrain", "squash_mask")
        for name, entry in self._entries.items():
            self._squashed_masks[name] = masked.mask_module(entry.module, entry.attr).mask.clone()
            masked.remove_mask(entry.module, entry.attr)
        self.phase = "squashed"

    def masks(self) -> dict[str, torch.Tensor]:
        """``{name: bool mask}`` (copies). All ones during the ADMM phase."""
        self._require_prepared()
        if self.phase == "squashed":
            return {n: m.clone() for n, m in self._squashed_masks.items()}
        return {
            n: masked.mask_module(e.module, e.attr).mask.clone() for n, e in self._entries.items()
        }

    def achieved_rates(self) -> dict[str, float]:
        """``{name: compression of its current mask}``."""
        return {n: achieved_rate(m) for n, m in self.masks().items()}

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: phase, rho, step count, config (JSON), Z, U, masks.

        Only strings, numbers and tensors, so it can be saved with ``torch.save`` and loaded
        with ``torch.load(..., weights_only=True)``.
        """
        self._require_prepared()
        entries = self._entries.items()
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "phase": self.phase,
            "rho": self.rho,
            "admm_steps": self.admm_steps,
            "config": config_to_json(self.specs),
            "z": {n: e.z.clone() for n, e in entries if e.z is not None},
            "u": {n: e.u.clone() for n, e in entries if e.u is not None},
            "masks": self.masks(),
        }

    @torch.no_grad()
    def load_state_dict(self, state: Mapping[str, Any], model: nn.Module | None = None) -> None:
        """Restore :meth:`state_dict` output.

        If the pruner is not prepared yet, it is prepared on ``model`` with the stored config
        (so a fresh process needs only the model skeleton). If it is prepared, the stored
        config must equal its own. Load the model's own ``state_dict`` *after* this (its keys
        depend on the phase: masked weights live under ``parametrizations`` until squashed).

        Raises
        ------
        ValueError
            If the state is not a pruner state, its config differs, or a tensor has the wrong
            shape or dtype.
        RuntimeError
            If the pruner is not prepared and no model is given, or it is squashed and the state
            is not.
        """
        if state.get("format") != STATE_FORMAT or state.get("version") != STATE_VERSION:
            raise ValueError(
                f"not a BSPPruner state (format {state.get('format')!r}, "
                f"version {state.get('version')!r}; expected {STATE_FORMAT!r} v{STATE_VERSION})"
            )
        phase = state["phase"]
        if phase not in PHASES:
            raise ValueError(f"unknown pruner phase {phase!r}")
        specs = config_from_json(state["config"])
        if self.model is None:
            if model is None:
                raise RuntimeError("pruner not prepared: pass the model to load_state_dict")
            self.prepare(model, specs)
        elif specs != self.specs:
            raise ValueError(
                f"checkpoint config {config_to_json(specs)} differs from this pruner's "
                f"{config_to_json(self.specs)}"
            )
        if self.phase == "squashed" and phase != "squashed":
            raise RuntimeError("cannot load an unsquashed state into a squashed pruner")
        for key in ("z", "u") if phase == "admm" else ():
            missing = set(self.specs) - set(state[key])
            if missing:
                raise ValueError(f"state lacks {key!r} for {sorted(missing)}")
        masks = state["masks"]
        if set(masks) != set(self.specs):
            raise ValueError(f"state masks are for {sorted(masks)}, pruner has {self.names}")
        for name, entry in self._entries.items():
            w = masked.original(entry.module, entry.attr)
            mask = _checked(masks[name], w, torch.bool, f"masks[{name!r}]")
            if phase == "admm":
                entry.z = _checked(state["z"][name], w, w.dtype, f"z[{name!r}]").clone()
                entry.u = _checked(state["u"][name], w, w.dtype, f"u[{name!r}]").clone()
            else:
                entry.z = entry.u = None
            if self.phase == "squashed":
                self._squashed_masks[name] = mask.clone()
            else:
                masked.set_mask(entry.module, entry.attr, mask)
        self.rho = float(state["rho"])
        self.admm_steps = int(state["admm_steps"])
        if phase == "squashed" and self.phase != "squashed":
            self.phase = "retrain"
            self.squash_mask()
        self.phase = phase

    # ------------------------------------------------------------------ helpers
    def _require_prepared(self) -> None:
        if self.model is None:
            raise RuntimeError("pruner not prepared: call prepare(model, config) first")

    def _require_phase(self, phase: str, what: str) -> None:
        self._require_prepared()
        if self.phase != phase:
            raise RuntimeError(
                f"{what}() needs the {phase!r} phase; the pruner is in {self.phase!r}"
            )

    def _entry(self, name: str) -> _Entry:
        self._require_prepared()
        if name not in self._entries:
            raise KeyError(f"{name!r} is not pruned; pruned weights: {self.names}")
        return self._entries[name]

    def __repr__(self) -> str:
        return (
            f"BSPPruner(phase={self.phase!r}, rho={self.rho:g}, admm_steps={self.admm_steps}, "
            f"weights={self.names})"
        )


def _checked(t: Any, like: torch.Tensor, dtype: torch.dtype, what: str) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{what} is not a tensor")
    if tuple(t.shape) != tuple(like.shape) or t.dtype != dtype:
        raise ValueError(
            f"{what} has shape {tuple(t.shape)} and dtype {t.dtype}; "
            f"expected {tuple(like.shape)} and {dtype}"
        )
    return t.to(like.device)
