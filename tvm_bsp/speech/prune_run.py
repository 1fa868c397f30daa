"""Prune the GRU matrices of an acoustic model: BSP (RTMobile), ESE-balanced or magnitude.

One call of :func:`prune_model` runs :func:`tvm_bsp.prune.admm_prune` on a copy of a trained
model: a short ADMM phase, hard pruning, masked retraining. The pruned weights are the stacked
GRU matrices ``rnn.weight_ih_l{k}`` (``3H x I``) and ``rnn.weight_hh_l{k}`` (``3H x H``) of
every layer; the head stays dense, and compression counts the GRU matrices only, like
RTMobile's Table I.

Specs per method (:func:`prune_config`):

Per-matrix rates come from :func:`matrix_rates`: by default the first layer's small input
matrix is pruned less and the others more, so that the overall compression is the target.

``"bsp"``
    :class:`~tvm_bsp.prune.BSPSpec` with RTMobile's column rate for the target
    (:data:`~tvm_bsp.prune.PAPER_SPLITS`, capped by the matrix's own rate and rounded so that
    the kept column count per stripe rounds up) and the row rate found by bisection so that
    each matrix reaches its rate (:func:`~tvm_bsp.prune.bsp_mask_at_rate`). The grid is
    ``(row_blocks, col_blocks)`` for the ``H``-wide matrices and
    ``(row_blocks, input_col_blocks)`` for the first layer's input matrix (39 columns).
``"balanced"``
    :class:`~tvm_bsp.prune.BalancedSpec` (ESE) with ``balanced_groups`` row groups.
``"magnitude"``
    :class:`~tvm_bsp.prune.MagnitudeSpec`, unstructured.

"Epochs" of the pruning schedule are slices of ``utts_per_epoch`` training utterances (the
slices walk through the shuffled training set), so that an ADMM step happens every few hundred
utterances and a checkpoint is written as often.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from tvm_bsp.prune import (
    PAPER_SPLITS,
    BalancedSpec,
    BSPPruner,
    BSPSpec,
    EpochContext,
    MagnitudeSpec,
    RhoSchedule,
    admm_prune,
)
from tvm_bsp.speech.batching import ChunkSettings
from tvm_bsp.speech.model import AcousticModel
from tvm_bsp.speech.precision import resolve_bf16
from tvm_bsp.speech.teacher import TeacherScores
from tvm_bsp.speech.train import UtteranceLike, distilled_loss_fn, train_epoch

METHODS = ("bsp", "magnitude", "balanced")
METHOD_FIELDS: dict[str, tuple[str, ...]] = {
    "bsp": ("row_blocks", "col_blocks", "input_col_blocks"),
    "magnitude": (),
    "balanced": ("balanced_groups",),
}
"""The :class:`PruneSettings` fields that only one method reads (its grid or groups)."""


@dataclass(frozen=True)
class PruneSettings:
    """How to prune (grid, schedule, optimiser).

    Attributes
    ----------
    row_blocks : int
        Horizontal stripes of every GRU matrix (``3H`` rows; a multiple of 3 aligns the
        stripes with the gates).
    col_blocks : int
        Vertical stripes of the ``H``-wide matrices.
    input_col_blocks : int
        Vertical stripes of the first layer's input matrix.
    balanced_groups : int
        ESE processing elements (row groups) of the balanced comparison.
    admm_epochs, retrain_epochs : int
        Units of ``utts_per_epoch`` utterances in each phase.
    utts_per_epoch : int
        Utterances per unit (0: the whole training set).
    lr : float
        Adam learning rate in the ADMM phase; masked retraining decays it by cosine to
        ``lr * final_lr_fraction``.
    final_lr_fraction : float
    rho : float
        Initial ADMM penalty.
    rho_factor : float
        ``rho`` grows by this factor after every ADMM step.
    max_frames : int
        Padded frames per batch.
    input_rate_power : float or None
        Non-uniform rates (:func:`matrix_rates`): the first layer's input matrix (39 columns,
        5 % of the weights but every input feature flows through it) is pruned at
        ``rate ** input_rate_power`` (while it keeps at most ``input_share`` of the kept
        weights), the other matrices at the rate that makes the overall compression ``rate``.
        ``None``: every matrix at ``rate``.
    input_share : float
    seed : int
    distill_weight : float
        Knowledge distillation from the teacher (the dense model): every batch loss is
        ``(1 - w) * cross-entropy + w * KD`` (:func:`~tvm_bsp.speech.train.distilled_loss_fn`),
        in the ADMM and the retraining phase. 0 (default): the task loss only.
    distill_temperature : float
        Softening temperature of the distillation term.
    max_rho : float
        Cap of the geometric ``rho`` schedule.
    chunk_frames, left_context : int
        Train on chunks of ``chunk_frames`` scored frames after ``left_context`` warm-up
        frames (:mod:`tvm_bsp.speech.batching`); ``chunk_frames = 0``: whole utterances.
    bf16 : bool or "auto"
        bfloat16 autocast of the training forward passes (:mod:`tvm_bsp.speech.precision`).
    first_retrain_epochs : int
        Retraining units of the first row of a gradual chain (the one pruned from the dense
        model, which moves furthest); 0: ``retrain_epochs``.
    """

    row_blocks: int = 24
    col_blocks: int = 16
    input_col_blocks: int = 4
    balanced_groups: int = 32
    admm_epochs: int = 2
    retrain_epochs: int = 6
    utts_per_epoch: int = 350
    lr: float = 2e-3
    final_lr_fraction: float = 0.05
    rho: float = 5e-2
    rho_factor: float = 2.0
    max_frames: int = 6000
    input_rate_power: float | None = 0.5
    input_share: float = 0.3
    seed: int = 0
    distill_weight: float = 0.0
    distill_temperature: float = 2.0
    max_rho: float = 10.0
    chunk_frames: int = 0
    left_context: int = 20
    bf16: bool | str = False
    first_retrain_epochs: int = 0

    def for_row(self, first: bool) -> PruneSettings:
        """The settings a row runs with: ``first`` rows retrain ``first_retrain_epochs``."""
        if not first or self.first_retrain_epochs <= 0:
            return self
        return replace(self, retrain_epochs=self.first_retrain_epochs)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dictionary."""
        return asdict(self)

    def shared_dict(self) -> dict[str, Any]:
        """The fields every method reads: :meth:`to_dict` without :data:`METHOD_FIELDS`."""
        return without_method_fields(self.to_dict())

    def method_dict(self, method: str) -> dict[str, Any]:
        """The fields only ``method`` reads (its entry of :data:`METHOD_FIELDS`)."""
        if method not in METHOD_FIELDS:
            raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
        return {name: getattr(self, name) for name in METHOD_FIELDS[method]}


def without_method_fields(prune: dict[str, Any]) -> dict[str, Any]:
    """``prune`` (a :meth:`PruneSettings.to_dict`) without the method-specific fields."""
    specific = {name for names in METHOD_FIELDS.values() for name in names}
    return {k: v for k, v in prune.items() if k not in specific}


def gru_weight_names(model: nn.Module) -> list[str]:
    """Names of the GRU matrices (``rnn.weight_ih_l*`` / ``rnn.weight_hh_l*``) in model order."""
    return [
        name
        for name, p in model.named_parameters()
        if name.startswith("rnn.weight_") and p.ndim == 2
    ]


def paper_split(rate: float) -> tuple[float, float]:
    """RTMobile's (column rate, row rate) for ``rate``; other rates: column rate ``min(rate, 16)``.

    The row rate is then nominal: :func:`~tvm_bsp.prune.bsp_mask_at_rate` sets the exact one.
    """
    key = round(rate)
    if key == rate and key in PAPER_SPLITS:
        col, row = PAPER_SPLITS[key]
        return float(col), float(row)
    col = min(float(rate), 16.0)
    return col, float(rate) / col


def matrix_rates(
    shapes: dict[str, tuple[int, int]], rate: float, settings: PruneSettings
) -> dict[str, float]:
    """Per-matrix rates whose overall compression is ``rate`` (``input_rate_power``).

    Parameters
    ----------
    shapes : dict
        ``{name: (rows, cols)}`` of the GRU matrices.
    rate : float
        Overall target.
    settings : PruneSettings

    Returns
    -------
    dict
        ``{name: rate}``; uniform when ``input_rate_power`` is ``None``, when there is no
        ``rnn.weight_ih_l0``, or when the split is infeasible.
    """
    uniform = {n: float(rate) for n in shapes}
    first = "rnn.weight_ih_l0"
    if settings.input_rate_power is None or first not in shapes or len(shapes) < 2:
        return uniform
    sizes = {n: r * c for n, (r, c) in shapes.items()}
    total = sum(sizes.values())
    target_kept = total / rate
    r_in = max(rate**settings.input_rate_power, sizes[first] / (settings.input_share * target_kept))
    r_in = min(max(r_in, 1.0), float(rate))
    rest = total - sizes[first]
    rest_kept = target_kept - sizes[first] / r_in
    if rest_kept <= 0 or rest / rest_kept < 1:
        return uniform
    r_rest = rest / rest_kept
    return {n: (r_in if n == first else r_rest) for n in shapes}


def prune_config(
    model: nn.Module, method: str, rate: float, settings: PruneSettings
) -> dict[str, Any]:
    """The ``{parameter name: spec}`` config of one method and rate (module docstring)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if not (math.isfinite(rate) and rate >= 1):
        raise ValueError(f"rate must be a finite number >= 1, got {rate}")
    names = gru_weight_names(model)
    if not names:
        raise ValueError("the model has no rnn.weight_ih_l*/rnn.weight_hh_l* matrices")
    params = dict(model.named_parameters())
    rates = matrix_rates({n: tuple(params[n].shape) for n in names}, rate, settings)
    config: dict[str, Any] = {}
    for name in names:
        r = rates[name]
        if method == "magnitude":
            config[name] = MagnitudeSpec(r)
        elif method == "balanced":
            config[name] = BalancedSpec(settings.balanced_groups, r)
        else:
            col_rate = min(paper_split(rate)[0], r)
            cols = int(params[name].shape[1])
            col_rate = cols / math.ceil(cols / col_rate - 1e-9)  # kept columns round up
            is_input = name == "rnn.weight_ih_l0"
            col_blocks = settings.input_col_blocks if is_input else settings.col_blocks
            config[name] = BSPSpec(settings.row_blocks, col_blocks, col_rate=col_rate, rate=r)
    return config


def masks_of(model: nn.Module) -> dict[str, torch.Tensor]:
    """Non-zero patterns of the GRU matrices of a (squashed) model."""
    params = dict(model.named_parameters())
    return {name: params[name].detach() != 0 for name in gru_weight_names(model)}


def overall_rate(masks: dict[str, torch.Tensor]) -> tuple[float, int, int]:
    """``(compression, kept, total)`` over all masks together."""
    total = sum(int(m.numel()) for m in masks.values())
    kept = sum(int(m.sum()) for m in masks.values())
    return (total / kept if kept else math.inf), kept, total


@dataclass
class PruneOutcome:
    """Result of :func:`prune_model`.

    Attributes
    ----------
    model : AcousticModel
        The pruned model (masks squashed: pruned weights are exact zeros).
    pruner : BSPPruner
        For :func:`~tvm_bsp.prune.export_bspc`.
    config : dict
        ``{name: spec}`` used.
    masks : dict
        ``{name: bool mask}`` of the GRU matrices.
    achieved_rate : float
        Compression over all GRU matrices.
    kept, total : int
        Kept and total GRU weights.
    history : list of dict
        :func:`~tvm_bsp.prune.admm_prune`'s history.
    epochs_run : int
        Units trained by this call (0 when everything was already checkpointed).
    """

    model: AcousticModel
    pruner: BSPPruner
    config: dict[str, Any]
    masks: dict[str, torch.Tensor]
    achieved_rate: float
    kept: int
    total: int
    history: list[dict[str, Any]]
    epochs_run: int


def _slice(n: int, per_epoch: int, epoch: int, seed: int) -> np.ndarray:
    """Indices of the ``epoch``-th unit: consecutive slices of seeded permutations."""
    if per_epoch <= 0 or per_epoch >= n:
        return np.arange(n)
    start = epoch * per_epoch
    out: list[int] = []
    while len(out) < per_epoch:
        cycle, offset = divmod(start + len(out), n)
        perm = np.random.default_rng([seed, 7919, cycle]).permutation(n)
        take = min(per_epoch - len(out), n - offset)
        out.extend(perm[offset : offset + take].tolist())
    return np.asarray(out)


def prune_model(
    dense: AcousticModel,
    train: Sequence[UtteranceLike],
    method: str,
    rate: float,
    settings: PruneSettings = PruneSettings(),
    *,
    checkpoint_dir: str | os.PathLike | None = None,
    progress: bool = True,
    log: Callable[[str], Any] | None = None,
    teacher: AcousticModel | None = None,
    teacher_scores: TeacherScores | None = None,
) -> PruneOutcome:
    """ADMM-prune and retrain a copy of ``dense`` (module docstring).

    Parameters
    ----------
    dense : AcousticModel
        The trained model to start from (not modified): the dense model, or for gradual
        pruning a model pruned at a lower rate.
    train : sequence of utterances
        Training data.
    method : {"bsp", "magnitude", "balanced"}
    rate : float
        Target compression of the GRU matrices.
    settings : PruneSettings
    checkpoint_dir : path-like, optional
        Resumable checkpoints (:func:`~tvm_bsp.prune.admm_prune`).
    progress : bool
        Progress bars.
    log : callable, optional
        Receives one line per unit.
    teacher : AcousticModel, optional
        Teacher of the distillation term (``settings.distill_weight > 0``); default ``dense``.
    teacher_scores : TeacherScores, optional
        The teacher's scores cached per training utterance (:mod:`tvm_bsp.speech.teacher`),
        used instead of running the teacher on every batch.

    Returns
    -------
    PruneOutcome
    """
    model = copy.deepcopy(dense)
    loss_fn = None
    if settings.distill_weight > 0:
        loss_fn = distilled_loss_fn(
            teacher if teacher is not None else copy.deepcopy(dense),
            settings.distill_weight,
            settings.distill_temperature,
            teacher_scores,
        )
    chunks = (
        ChunkSettings(settings.chunk_frames, settings.left_context)
        if settings.chunk_frames > 0
        else None
    )
    bf16 = resolve_bf16(settings.bf16)
    config = prune_config(model, method, rate, settings)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    pruner = BSPPruner(
        rho=settings.rho,
        rho_schedule=RhoSchedule(factor=settings.rho_factor, max_rho=settings.max_rho),
    )
    counter = {"epochs": 0}

    def lr_at(ctx: EpochContext) -> float:
        if ctx.phase == "admm" or settings.retrain_epochs <= 1:
            return settings.lr
        t = ctx.phase_epoch / (settings.retrain_epochs - 1)
        low = settings.lr * settings.final_lr_fraction
        return low + 0.5 * (settings.lr - low) * (1 + math.cos(math.pi * t))

    def train_fn(m: nn.Module, extra: Callable[[], torch.Tensor], ctx: EpochContext) -> dict:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(ctx)
        idx = _slice(len(train), settings.utts_per_epoch, ctx.epoch, settings.seed)
        subset = [train[i] for i in idx]
        torch.manual_seed(settings.seed * 100003 + ctx.epoch)
        metrics = train_epoch(
            m,  # type: ignore[arg-type]
            subset,
            optimizer,
            epoch=ctx.epoch,
            seed=settings.seed,
            max_frames=settings.max_frames,
            extra_loss_fn=extra if ctx.phase == "admm" else None,
            progress=progress,
            desc=f"{method} {rate:g}x {ctx.phase} {ctx.phase_epoch + 1}",
            loss_fn=loss_fn,
            chunks=chunks,
            bf16=bf16,
        )
        counter["epochs"] += 1
        if log is not None:
            log(f"{method} {rate:g}x {ctx.phase} {ctx.phase_epoch + 1}: loss {metrics['loss']:.3f}")
        return {"loss": metrics["loss"]}

    result = admm_prune(
        model,
        config,
        train_fn,
        settings.admm_epochs,
        settings.retrain_epochs,
        optimizer=optimizer,
        pruner=pruner,
        checkpoint_dir=checkpoint_dir,
        squash=True,
        progress=progress,
        desc=f"{method} {rate:g}x",
    )
    masks = {k: v.detach().cpu().bool() for k, v in result.pruner.masks().items()}
    achieved, kept, total = overall_rate(masks)
    return PruneOutcome(
        model=model,
        pruner=result.pruner,
        config=config,
        masks=masks,
        achieved_rate=achieved,
        kept=kept,
        total=total,
        history=result.history,
        epochs_run=counter["epochs"],
    )
