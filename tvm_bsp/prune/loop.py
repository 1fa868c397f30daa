"""A generic ADMM-prune-retrain loop with progress bar and resumable checkpoints.

:func:`admm_prune` knows nothing about data or models; it owns the schedule:

1. ``epochs_admm`` epochs of ADMM training: your ``train_fn`` trains one epoch adding
   ``extra_loss_fn()`` (the pruner's penalty) to every batch loss; after every ``admm_every``-th
   epoch the pruner takes an ADMM step (``Z``, ``U``, rho);
2. hard pruning at the end of the last ADMM epoch;
3. ``epochs_retrain`` epochs of masked retraining (same ``train_fn``; ``extra_loss_fn()`` is 0);
4. optionally :meth:`~tvm_bsp.prune.admm.BSPPruner.squash_mask`.

The callback
------------
``train_fn(model, extra_loss_fn, ctx) -> float | dict[str, float] | None`` runs one epoch (or
whatever unit of work should separate two ADMM steps)::

    def train_fn(model, extra_loss_fn, ctx):
        total = 0.0
        for x, y in loader:
            loss = criterion(model(x), y) + extra_loss_fn()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item()
        return {"loss": total / len(loader)}

``ctx`` is an :class:`EpochContext` (global epoch, phase, epoch within the phase, the pruner).
The returned metrics go into the history and the progress bar.

Resuming
--------
With ``checkpoint_dir``, a checkpoint (model, optimizer, scheduler, pruner, global RNG states,
history) is written atomically after every epoch to ``checkpoint_dir/admm_prune.pt``. A later
call with the same directory, a freshly built model and optimizer (built the same way, before
the call) and the same settings continues after the last completed epoch; if ``train_fn`` draws
its randomness from the global torch / numpy / ``random`` generators (or seeds from
``ctx.epoch``), the result is bitwise the same as an uninterrupted run. A call whose epochs or
config differ from the checkpoint's is refused.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from tvm_bsp.prune.admm import BSPPruner, prunable_shapes
from tvm_bsp.prune.checkpoint import load_checkpoint, save_checkpoint
from tvm_bsp.prune.config import PruneConfig, config_to_json, resolve_config

CHECKPOINT_NAME = "admm_prune.pt"


@dataclass(frozen=True)
class EpochContext:
    """What ``train_fn`` learns about the epoch it runs.

    Attributes
    ----------
    epoch : int
        Global 0-based epoch (ADMM epochs first, then retraining).
    phase : str
        ``"admm"`` or ``"retrain"``.
    phase_epoch : int
        0-based epoch within the phase.
    pruner : BSPPruner
    """

    epoch: int
    phase: str
    phase_epoch: int
    pruner: BSPPruner


@dataclass
class PruneResult:
    """Outcome of :func:`admm_prune`.

    Attributes
    ----------
    pruner : BSPPruner
        The pruner (squashed if ``squash=True``); its :meth:`~BSPPruner.masks` feed
        :func:`~tvm_bsp.prune.export.export_bspc`.
    history : list of dict
        Per epoch: ``epoch``, ``phase``, ``metrics`` (what ``train_fn`` returned), ``rho``, and
        in the ADMM phase ``distance`` (per weight) and, after an ADMM step, ``residual``.
    rates : dict
        Achieved compression per pruned weight.
    resumed_from : int or None
        Number of epochs already done when this call started from a checkpoint.
    """

    pruner: BSPPruner
    history: list[dict[str, Any]] = field(default_factory=list)
    rates: dict[str, float] = field(default_factory=dict)
    resumed_from: int | None = None


TrainFn = Callable[[nn.Module, Callable[[], torch.Tensor], EpochContext], Any]


def admm_prune(
    model: nn.Module,
    config: PruneConfig,
    train_fn: TrainFn,
    epochs_admm: int,
    epochs_retrain: int,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    lr_scheduler: Any | None = None,
    pruner: BSPPruner | None = None,
    rho: float = 1e-3,
    rho_schedule: Callable[[float, int], float] | None = None,
    admm_every: int = 1,
    checkpoint_dir: str | os.PathLike | None = None,
    squash: bool = True,
    progress: bool = True,
    desc: str = "BSP prune",
) -> PruneResult:
    """ADMM training, hard pruning, masked retraining (see the module docstring).

    Parameters
    ----------
    model : torch.nn.Module
        A model without pruning masks (fresh, also when resuming).
    config : mapping
        ``{parameter name or glob: spec}`` (:mod:`tvm_bsp.prune.config`).
    train_fn : callable
        ``train_fn(model, extra_loss_fn, ctx)``, one epoch of training.
    epochs_admm, epochs_retrain : int
        Epochs of each phase (``>= 0``). With ``epochs_admm == 0`` it is one-shot projection
        pruning followed by retraining.
    optimizer : torch.optim.Optimizer, optional
        The optimizer ``train_fn`` steps, only to checkpoint it; build it from
        ``model.parameters()`` before calling (the parameter objects survive the masking).
    lr_scheduler : optional
        Checkpointed as well (``train_fn`` steps it).
    pruner : BSPPruner, optional
        An unprepared pruner (to choose ``rescale_dual`` or a custom schedule); otherwise one is
        made from ``rho`` and ``rho_schedule``.
    rho, rho_schedule :
        See :class:`~tvm_bsp.prune.admm.BSPPruner`.
    admm_every : int
        ADMM step after every ``admm_every``-th ADMM epoch.
    checkpoint_dir : path-like, optional
        Where to checkpoint every epoch and resume from.
    squash : bool
        Bake the masks into plain parameters at the end.
    progress : bool
        Show a tqdm progress bar.
    desc : str
        Progress bar label.

    Returns
    -------
    PruneResult
    """
    for value, name in ((epochs_admm, "epochs_admm"), (epochs_retrain, "epochs_retrain")):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    if isinstance(admm_every, bool) or not isinstance(admm_every, int) or admm_every < 1:
        raise ValueError(f"admm_every must be a positive integer, got {admm_every!r}")
    if pruner is None:
        pruner = BSPPruner(rho=rho, rho_schedule=rho_schedule)
    elif pruner.model is not None:
        raise ValueError("pass an unprepared pruner (admm_prune prepares it)")
    settings = {
        "epochs_admm": epochs_admm,
        "epochs_retrain": epochs_retrain,
        "admm_every": admm_every,
    }
    total = epochs_admm + epochs_retrain

    ckpt_path = None
    start, history, resumed_from = 0, [], None
    if checkpoint_dir is not None:
        Path(checkpoint_dir).mkdir(parents=True, exist_ok=True)
        ckpt_path = Path(checkpoint_dir) / CHECKPOINT_NAME
    if ckpt_path is not None and ckpt_path.exists():
        expected = resolve_config(prunable_shapes(model), config)
        info = load_checkpoint(
            ckpt_path, model, optimizer, pruner, lr_scheduler=lr_scheduler, restore_rng=True
        )
        if pruner.specs != expected:
            raise ValueError(
                f"{ckpt_path} was made with config {config_to_json(pruner.specs)}, "
                f"not {config_to_json(expected)}"
            )
        if info.extra.get("settings") != settings:
            raise ValueError(
                f"{ckpt_path} was made with {info.extra.get('settings')}, not {settings}"
            )
        start = resumed_from = info.epoch + 1
        history = list(info.extra.get("history", []))
    else:
        pruner.prepare(model, config)

    with tqdm(total=total, initial=start, disable=not progress, desc=desc) as bar:
        for epoch in range(start, total):
            phase = "admm" if epoch < epochs_admm else "retrain"
            if phase == "retrain" and pruner.phase == "admm":  # only when epochs_admm == 0
                pruner.hard_prune()
            phase_epoch = epoch if phase == "admm" else epoch - epochs_admm
            ctx = EpochContext(epoch, phase, phase_epoch, pruner)
            metrics = _metrics(train_fn(model, pruner.penalty, ctx))
            record: dict[str, Any] = {
                "epoch": epoch,
                "phase": phase,
                "metrics": metrics,
                "rho": pruner.rho,
            }
            if phase == "admm":
                if (phase_epoch + 1) % admm_every == 0:
                    record["residual"] = pruner.step()
                record["distance"] = pruner.distance()
                if epoch == epochs_admm - 1:
                    record["rates"] = pruner.hard_prune()
            else:
                pruner.zero_pruned_()
            history.append(record)
            if ckpt_path is not None:
                save_checkpoint(
                    ckpt_path,
                    model,
                    optimizer,
                    pruner,
                    epoch,
                    {"settings": settings, "history": history},
                    lr_scheduler=lr_scheduler,
                )
            bar.set_postfix(_postfix(record), refresh=False)
            bar.update(1)

    if pruner.phase == "admm":  # no epochs at all
        pruner.hard_prune()
    if squash and pruner.phase == "retrain":
        pruner.squash_mask()
    return PruneResult(pruner, history, pruner.achieved_rates(), resumed_from)


def _metrics(out: Any) -> dict[str, float]:
    if out is None:
        return {}
    if isinstance(out, Mapping):
        return {str(k): _number(v) for k, v in out.items()}
    return {"loss": _number(out)}


def _number(v: Any) -> float:
    return float(v.item() if isinstance(v, torch.Tensor) else v)


def _postfix(record: Mapping[str, Any]) -> dict[str, str]:
    post = {k: f"{v:.4g}" for k, v in record["metrics"].items() if isinstance(v, float)}
    post["phase"] = record["phase"]
    if record.get("distance"):
        post["dist"] = f"{max(record['distance'].values()):.3g}"
    post["rho"] = f"{record['rho']:.3g}"
    return post
