"""Training of acoustic models on utterances with features and frame labels.

An utterance here is anything with ``features`` (``(T, 39)`` float32), ``labels`` (``(T,)``
frame labels in ``0..38``, or ``None`` for recordings without an alignment) and ``phones``
(the phone sequence as 39-set symbols), as :func:`tvm_bsp.speech.corpus.load_split` and
:func:`tvm_bsp.speech.real.load_real_utterances` return.

Batches group utterances (or, with :class:`~tvm_bsp.speech.batching.ChunkSettings`, chunks of
utterances) of similar length, at most ``max_frames`` padded frames each; the loss ignores
padding. The models are unidirectional, so padding at the end of a sequence does not change
the scores of the real frames. ``bf16=True`` runs the forward pass under bfloat16 autocast
(:mod:`tvm_bsp.speech.precision`). Decoding and PER live in :mod:`tvm_bsp.speech.scoring`
(re-exported here).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from tvm_bsp.speech.batching import (
    IGNORE,
    Batch,
    ChunkSettings,
    Piece,
    chunk_pieces,
    collate_pieces,
    group_pieces,
    utterance_pieces,
)
from tvm_bsp.speech.model import AcousticModel
from tvm_bsp.speech.precision import autocast
from tvm_bsp.speech.scoring import (
    decode,
    evaluate_per,
    remove_short_runs,
    smoothed_framewise_decode,
)
from tvm_bsp.speech.teacher import TeacherScores

__all__ = [
    "IGNORE",
    "Batch",
    "ChunkSettings",
    "batch_loss",
    "collate",
    "cosine_lr",
    "decode",
    "distillation_loss",
    "distilled_loss_fn",
    "evaluate_per",
    "make_batches",
    "remove_short_runs",
    "smoothed_framewise_decode",
    "train_epoch",
    "train_model",
]


class UtteranceLike(Protocol):
    """The fields training needs."""

    features: np.ndarray
    labels: np.ndarray | None
    phones: Sequence[str]


def make_batches(
    utts: Sequence[UtteranceLike], max_frames: int, rng: np.random.Generator | None = None
) -> list[list[int]]:
    """Group utterance indices into batches of similar length.

    Parameters
    ----------
    utts : sequence of utterances
    max_frames : int
        Upper bound of ``B * T_max`` per batch (an utterance longer than that is alone).
    rng : numpy.random.Generator, optional
        Shuffles the batch order (and ties in length) when given.

    Returns
    -------
    list of list of int
    """
    pieces = utterance_pieces([len(u.features) for u in utts])
    return [[p.utt for p in group] for group in group_pieces(pieces, max_frames, rng)]


def collate(utts: Sequence[UtteranceLike], indices: Sequence[int]) -> Batch:
    """Pad the selected whole utterances into one time-major :class:`Batch`."""
    return collate_pieces(utts, [Piece(i, 0, len(utts[i].features), 0) for i in indices])


def batch_loss(model: AcousticModel, batch: Batch) -> torch.Tensor:
    """Mean loss of a batch: frame cross-entropy, or CTC (phone ``k`` is class ``k + 1``)."""
    return _task_loss(model, model(batch.x), batch)


def _at_least_f32(t: torch.Tensor) -> torch.Tensor:
    """Scores of a bf16 / fp16 autocast forward in float32 (losses are computed in float32)."""
    return t.float() if t.dtype in (torch.bfloat16, torch.float16) else t


def _task_loss(model: AcousticModel, scores: torch.Tensor, batch: Batch) -> torch.Tensor:
    scores = _at_least_f32(scores)
    if model.config.head == "framewise":
        return F.cross_entropy(
            scores.reshape(-1, scores.shape[-1]),
            batch.frame_labels.reshape(-1),
            ignore_index=IGNORE,
        )
    targets = [torch.tensor(p, dtype=torch.long) + 1 for p in batch.phone_targets]
    return F.ctc_loss(
        scores.log_softmax(-1),
        torch.cat(targets),
        batch.lengths,
        torch.tensor([len(t) for t in targets]),
        blank=0,
        zero_infinity=True,
    )


def distillation_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    frame_labels: torch.Tensor,
    temperature: float = 2.0,
) -> torch.Tensor:
    """Mean KL divergence between teacher and student frame posteriors (Hinton et al. 2015).

    ``T**2 * KL(softmax(teacher / T) || softmax(student / T))`` averaged over the frames whose
    label is not :data:`IGNORE` (the padding), so that its gradient scale matches the
    cross-entropy's at any temperature.

    Parameters
    ----------
    student, teacher : torch.Tensor, shape (T, B, C)
        Scores (logits); the teacher's are treated as constants.
    frame_labels : torch.Tensor, shape (T, B)
        Frame labels with :data:`IGNORE` on padding (only the padding pattern is used).
    temperature : float
        Softening temperature ``T > 0``.

    Returns
    -------
    torch.Tensor
        Scalar loss (0 when no frame is valid).
    """
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite positive number, got {temperature}")
    if student.shape != teacher.shape:
        raise ValueError(f"student {tuple(student.shape)} and teacher {tuple(teacher.shape)}")
    valid = (frame_labels != IGNORE).reshape(-1)
    student, teacher = _at_least_f32(student), _at_least_f32(teacher)
    s = (student.reshape(-1, student.shape[-1])[valid] / temperature).log_softmax(-1)
    t = (teacher.detach().reshape(-1, teacher.shape[-1])[valid] / temperature).log_softmax(-1)
    if s.shape[0] == 0:
        return student.sum() * 0.0
    kl = (t.exp() * (t - s)).sum(-1).mean()
    return kl * temperature**2


def distilled_loss_fn(
    teacher: AcousticModel,
    weight: float,
    temperature: float = 2.0,
    scores: TeacherScores | None = None,
) -> Callable[[AcousticModel, Batch], torch.Tensor]:
    """A ``loss_fn`` for :func:`train_epoch`: ``(1 - weight) * task loss + weight * KD``.

    Parameters
    ----------
    teacher : AcousticModel
        The (dense) teacher, evaluated without gradients in eval mode (float32); a framewise
        model with the student's classes.
    weight : float
        Share of the distillation term, in ``[0, 1]``.
    temperature : float
        :func:`distillation_loss` temperature.
    scores : TeacherScores, optional
        The teacher's scores cached per utterance (:mod:`tvm_bsp.speech.teacher`); batches
        whose utterances are all cached take them from there instead of running the teacher.

    Returns
    -------
    callable
        ``loss_fn(model, batch) -> scalar tensor``.
    """
    if not 0 <= weight <= 1:
        raise ValueError(f"distillation weight must be in [0, 1], got {weight}")
    if teacher.config.head != "framewise":
        raise ValueError("distillation needs a framewise teacher (frame posteriors)")
    teacher.eval()

    def teacher_scores(batch: Batch) -> torch.Tensor:
        if scores is not None and batch.ids and all(i in scores.index for i in batch.ids):
            return scores.for_batch(batch)
        with torch.no_grad(), autocast(False):
            return teacher(batch.x)

    def loss_fn(model: AcousticModel, batch: Batch) -> torch.Tensor:
        out = model(batch.x)
        task = _task_loss(model, out, batch)
        if weight == 0:
            return task
        kd = distillation_loss(out, teacher_scores(batch), batch.frame_labels, temperature)
        return (1 - weight) * task + weight * kd

    return loss_fn


def train_epoch(
    model: AcousticModel,
    utts: Sequence[UtteranceLike],
    optimizer: torch.optim.Optimizer,
    *,
    epoch: int,
    seed: int = 0,
    max_frames: int = 12000,
    extra_loss_fn: Callable[[], torch.Tensor] | None = None,
    clip: float = 5.0,
    after_step: Callable[[], Any] | None = None,
    progress: bool = True,
    desc: str = "train",
    loss_fn: Callable[[AcousticModel, Batch], torch.Tensor] | None = None,
    chunks: ChunkSettings | None = None,
    bf16: bool = False,
) -> dict[str, float]:
    """Train one epoch; batch order is drawn from ``(seed, epoch)`` so reruns are identical.

    Parameters
    ----------
    model : AcousticModel
    utts : sequence of utterances
    optimizer : torch.optim.Optimizer
    epoch, seed : int
        Seed the batch order.
    max_frames : int
        Padded frames per batch (:func:`make_batches`).
    extra_loss_fn : callable, optional
        Added to every batch loss (e.g. the ADMM penalty); not part of the reported loss.
    clip : float
        Gradient-norm clip.
    after_step : callable, optional
        Called after every optimizer step (e.g. to re-zero pruned weights).
    progress : bool
        Show a tqdm bar.
    desc : str
        Its label.
    loss_fn : callable, optional
        ``loss_fn(model, batch)`` replacing :func:`batch_loss` (e.g.
        :func:`distilled_loss_fn`); the reported loss is then its value.
    chunks : ChunkSettings, optional
        Train on chunks of frames (:func:`~tvm_bsp.speech.batching.chunk_pieces`, phases
        drawn from ``(seed, epoch)``) instead of whole utterances; framewise models only.
    bf16 : bool
        bfloat16 autocast of the forward pass (:mod:`tvm_bsp.speech.precision`).

    Returns
    -------
    dict
        ``{"loss": mean task loss, "batches": number of batches, "frames": frames fed}``.
    """
    model.train()
    rng = np.random.default_rng([seed, epoch])
    lengths = [len(u.features) for u in utts]
    if chunks is not None:
        if model.config.head != "framewise":
            raise ValueError("chunked training needs a framewise model (CTC: whole utterances)")
        pieces = chunk_pieces(lengths, chunks, np.random.default_rng([seed, epoch, 1]))
    else:
        pieces = utterance_pieces(lengths)
    batches = group_pieces(pieces, max_frames, rng)
    total, frames = 0.0, 0
    bar = tqdm(batches, desc=desc, leave=False, disable=not progress, unit="batch")
    for group in bar:
        batch = collate_pieces(utts, group)
        frames += int(batch.lengths.sum())
        with autocast(bf16):
            loss = batch_loss(model, batch) if loss_fn is None else loss_fn(model, batch)
        full = loss + extra_loss_fn() if extra_loss_fn is not None else loss
        optimizer.zero_grad()
        full.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        if after_step is not None:
            after_step()
        value = loss.item()
        total += value
        bar.set_postfix(loss=f"{value:.3f}")
    return {
        "loss": total / max(1, len(batches)),
        "batches": float(len(batches)),
        "frames": float(frames),
    }


def cosine_lr(lr: float, epoch: int, epochs: int, floor: float = 0.05) -> float:
    """Cosine decay from ``lr`` (epoch 0) to ``lr * floor`` (last epoch)."""
    if epochs <= 1:
        return lr
    t = min(1.0, epoch / (epochs - 1))
    return lr * (floor + 0.5 * (1 - floor) * (1 + math.cos(math.pi * t)))


def train_model(
    model: AcousticModel,
    train: Sequence[UtteranceLike],
    dev: Sequence[UtteranceLike],
    *,
    epochs: int,
    lr: float = 2e-3,
    seed: int = 0,
    max_frames: int = 12000,
    checkpoint: str | os.PathLike | None = None,
    progress: bool = True,
    log: Callable[[str], Any] = print,
    chunks: ChunkSettings | None = None,
    bf16: bool = False,
) -> list[dict[str, float]]:
    """Train a dense model with Adam (cosine learning rate), resuming from ``checkpoint``.

    The checkpoint (model, optimizer, history) is written atomically after every epoch; a call
    after the last epoch trains nothing. The learning rate of epoch ``e`` is
    :func:`cosine_lr` ``(lr, e, epochs)``, so a resumed run may change ``epochs``.
    ``chunks`` and ``bf16`` are passed to :func:`train_epoch`; the dev PER is scored in
    float32. Each epoch seeds torch from ``(seed, epoch)``, so a resumed run repeats the
    uninterrupted one. A ``checkpoint`` path ending in ``.safetensors`` is written with
    :mod:`tvm_bsp.speech.train_state` (no pickle: safe to commit and share), any other with
    :func:`tvm_bsp.prune.checkpoint.save_checkpoint`.

    Returns
    -------
    list of dict
        Per epoch: ``epoch``, ``loss``, ``dev_per``, ``train_s`` (wall time of the epoch's
        training) and ``frames_per_s``.
    """
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    history: list[dict[str, float]] = []
    start = 0
    if checkpoint is not None and Path(checkpoint).exists():
        history, start = _resume(checkpoint, model, optimizer)
        log(f"resumed dense training after epoch {start}/{epochs}")
    for epoch in range(start, epochs):
        torch.manual_seed(seed * 1_000_003 + epoch)  # dropout: a resumed run repeats it
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(lr, epoch, epochs)
        t0 = time.perf_counter()
        metrics = train_epoch(
            model,
            train,
            optimizer,
            epoch=epoch,
            seed=seed,
            max_frames=max_frames,
            progress=progress,
            desc=f"dense epoch {epoch + 1}/{epochs}",
            chunks=chunks,
            bf16=bf16,
        )
        wall = time.perf_counter() - t0
        record = {
            "epoch": epoch,
            "loss": metrics["loss"],
            "dev_per": evaluate_per(model, dev),
            "train_s": wall,
            "frames_per_s": metrics["frames"] / max(wall, 1e-9),
        }
        history.append(record)
        log(
            f"epoch {epoch + 1}/{epochs}: loss {record['loss']:.3f}, "
            f"dev PER {record['dev_per']:.2f}% ({wall:.0f} s, "
            f"{record['frames_per_s']:.0f} frames/s)"
        )
        if checkpoint is not None:
            _save(checkpoint, model, optimizer, epoch, history)
    return history


def _resume(
    path: str | os.PathLike, model: AcousticModel, optimizer: torch.optim.Optimizer
) -> tuple[list[dict[str, float]], int]:
    """Restore a dense-training checkpoint; return its history and the next epoch."""
    if Path(path).suffix == ".safetensors":
        from tvm_bsp.speech.train_state import load_train_state

        state = load_train_state(path, model, optimizer)
        return state.history, state.epoch + 1
    from tvm_bsp.prune.checkpoint import load_checkpoint

    info = load_checkpoint(path, model, optimizer)
    return list(info.extra.get("history", [])), info.epoch + 1


def _save(
    path: str | os.PathLike,
    model: AcousticModel,
    optimizer: torch.optim.Optimizer,
    epoch: int,
    history: list[dict[str, float]],
) -> None:
    """Write a checkpoint: safetensors for a ``.safetensors`` path, else torch's format."""
    if Path(path).suffix == ".safetensors":
        from tvm_bsp.speech.train_state import save_train_state

        save_train_state(
            path,
            model,
            optimizer,
            epoch=epoch,
            history=history,
            extra={"config": model.config.to_dict()},
        )
        return
    from tvm_bsp.prune.checkpoint import save_checkpoint

    save_checkpoint(path, model, optimizer, epoch=epoch, extra={"history": history})
