"""Training and scoring of acoustic models on utterances with features and frame labels.

An utterance here is anything with ``features`` (``(T, 39)`` float32), ``labels`` (``(T,)``
frame labels in ``0..38``) and ``phones`` (the phone sequence as 39-set symbols), as
:func:`tvm_bsp.speech.corpus.load_split` returns.

Batches group utterances of similar length (at most ``max_frames`` padded frames each); the
loss ignores padding. The models are unidirectional, so padding at the end of a sequence does
not change the scores of the real frames.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from tvm_bsp.speech.model import AcousticModel
from tvm_bsp.speech.per import ctc_greedy_decode, framewise_decode, phone_error_rate
from tvm_bsp.speech.phones import phone_ids

IGNORE = -100


class UtteranceLike(Protocol):
    """The fields training needs."""

    features: np.ndarray
    labels: np.ndarray
    phones: Sequence[str]


@dataclass(frozen=True)
class Batch:
    """Padded, time-major batch."""

    x: torch.Tensor  # (T, B, F)
    frame_labels: torch.Tensor  # (T, B), IGNORE on padding
    lengths: torch.Tensor  # (B,)
    phone_targets: list[list[int]]


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
    lengths = np.array([len(u.features) for u in utts])
    noise = rng.random(len(utts)) if rng is not None else np.zeros(len(utts))
    order = np.lexsort((noise, lengths))
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        longest = max(lengths[current].max(initial=0), lengths[i])
        if current and longest * (len(current) + 1) > max_frames:
            batches.append(current)
            current = []
        current.append(int(i))
    if current:
        batches.append(current)
    if rng is not None:
        rng.shuffle(batches)
    return batches


def collate(utts: Sequence[UtteranceLike], indices: Sequence[int]) -> Batch:
    """Pad the selected utterances into one time-major :class:`Batch`."""
    chosen = [utts[i] for i in indices]
    lengths = [len(u.features) for u in chosen]
    T, B = max(lengths), len(chosen)
    dim = chosen[0].features.shape[1]
    x = np.zeros((T, B, dim), np.float32)
    y = np.full((T, B), IGNORE, np.int64)
    for b, u in enumerate(chosen):
        x[: lengths[b], b] = u.features
        y[: lengths[b], b] = u.labels
    return Batch(
        torch.from_numpy(x),
        torch.from_numpy(y),
        torch.tensor(lengths),
        [phone_ids(list(u.phones)) for u in chosen],
    )


def batch_loss(model: AcousticModel, batch: Batch) -> torch.Tensor:
    """Mean loss of a batch: frame cross-entropy, or CTC (phone ``k`` is class ``k + 1``)."""
    scores = model(batch.x)
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
    progress: bool = True,
    desc: str = "train",
) -> dict[str, float]:
    """Train one epoch; batch order is drawn from ``(seed, epoch)`` so reruns are identical.

    Returns
    -------
    dict
        ``{"loss": mean task loss}``.
    """
    model.train()
    batches = make_batches(utts, max_frames, np.random.default_rng([seed, epoch]))
    total = 0.0
    bar = tqdm(batches, desc=desc, leave=False, disable=not progress, unit="batch")
    for idx in bar:
        batch = collate(utts, idx)
        loss = batch_loss(model, batch)
        full = loss + extra_loss_fn() if extra_loss_fn is not None else loss
        optimizer.zero_grad()
        full.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        total += float(loss)
        bar.set_postfix(loss=f"{float(loss):.3f}")
    return {"loss": total / max(1, len(batches))}


@torch.no_grad()
def decode(
    model: AcousticModel, utts: Sequence[UtteranceLike], max_frames: int = 40000
) -> list[list[int]]:
    """Decode every utterance to a phone-id sequence (greedy), in the order given."""
    model.eval()
    hyps: list[list[int]] = [[] for _ in utts]
    for idx in make_batches(utts, max_frames):
        batch = collate(utts, idx)
        scores = model(batch.x)
        for b, i in enumerate(idx):
            s = scores[: int(batch.lengths[b]), b]
            if model.config.head == "framewise":
                hyps[i] = framewise_decode(s)
            else:
                hyps[i] = [k - 1 for k in ctc_greedy_decode(s, blank=0)]
    return hyps


def evaluate_per(model: AcousticModel, utts: Sequence[UtteranceLike]) -> float:
    """Phone error rate in percent over ``utts`` (references: the utterances' phones)."""
    refs = [phone_ids(list(u.phones)) for u in utts]
    return 100.0 * phone_error_rate(refs, decode(model, utts))


def train_model(
    model: AcousticModel,
    train: Sequence[UtteranceLike],
    dev: Sequence[UtteranceLike],
    *,
    epochs: int,
    lr: float = 2e-3,
    seed: int = 0,
    checkpoint: str | os.PathLike | None = None,
    progress: bool = True,
    log: Callable[[str], Any] = print,
) -> list[dict[str, float]]:
    """Train a dense model with Adam, resuming from ``checkpoint`` if it exists.

    The checkpoint (model, optimizer, history) is written atomically after every epoch.

    Returns
    -------
    list of dict
        Per epoch: ``epoch``, ``loss``, ``dev_per``.
    """
    from tvm_bsp.prune.checkpoint import load_checkpoint, save_checkpoint

    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(1, epochs))
    history: list[dict[str, float]] = []
    start = 0
    if checkpoint is not None and Path(checkpoint).exists():
        info = load_checkpoint(checkpoint, model, optimizer, lr_scheduler=scheduler)
        history = list(info.extra.get("history", []))
        start = info.epoch + 1
        log(f"resumed dense training after epoch {info.epoch + 1}/{epochs}")
    for epoch in range(start, epochs):
        metrics = train_epoch(
            model,
            train,
            optimizer,
            epoch=epoch,
            seed=seed,
            progress=progress,
            desc=f"dense epoch {epoch + 1}/{epochs}",
        )
        scheduler.step()
        record = {"epoch": epoch, "loss": metrics["loss"], "dev_per": evaluate_per(model, dev)}
        history.append(record)
        log(
            f"epoch {epoch + 1}/{epochs}: loss {record['loss']:.3f}, "
            f"dev PER {record['dev_per']:.2f}%"
        )
        if checkpoint is not None:
            save_checkpoint(
                checkpoint,
                model,
                optimizer,
                epoch=epoch,
                extra={"history": history},
                lr_scheduler=scheduler,
            )
    return history
