"""Training and scoring of acoustic models on utterances with features and frame labels.

An utterance here is anything with ``features`` (``(T, 39)`` float32), ``labels`` (``(T,)``
frame labels in ``0..38``, or ``None`` for recordings without an alignment) and ``phones``
(the phone sequence as 39-set symbols), as :func:`tvm_bsp.speech.corpus.load_split` and
:func:`tvm_bsp.speech.real.load_real_utterances` return.

Batches group utterances of similar length (at most ``max_frames`` padded frames each); the
loss ignores padding. The models are unidirectional, so padding at the end of a sequence does
not change the scores of the real frames.

Decoding
--------
``"ctc"`` models decode greedily (best path, :func:`~tvm_bsp.speech.per.ctc_greedy_decode`).
``"framewise"`` models decode by :func:`smoothed_framewise_decode`: the per-frame argmax of
log-posteriors averaged over a short centred window, runs shorter than ``min_run`` frames
dropped, repeats merged. Plain per-frame argmax (``smooth=0, min_run=1``) flickers between
classes at phone boundaries and inserts many spurious phones.
"""

from __future__ import annotations

import math
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
from tvm_bsp.speech.per import collapse_repeats, ctc_greedy_decode, phone_error_rate
from tvm_bsp.speech.phones import phone_ids

IGNORE = -100


class UtteranceLike(Protocol):
    """The fields training needs."""

    features: np.ndarray
    labels: np.ndarray | None
    phones: Sequence[str]


@dataclass(frozen=True)
class Batch:
    """Padded, time-major batch."""

    x: torch.Tensor  # (T, B, F)
    frame_labels: torch.Tensor  # (T, B), IGNORE on padding (and for unlabelled utterances)
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
    if max_frames < 1:
        raise ValueError(f"max_frames must be positive, got {max_frames}")
    lengths = np.array([len(u.features) for u in utts], dtype=np.int64)
    noise = rng.random(len(utts)) if rng is not None else np.zeros(len(utts))
    order = np.lexsort((noise, lengths))
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        new_longest = max(longest, int(lengths[i]))
        if current and new_longest * (len(current) + 1) > max_frames:
            batches.append(current)
            current, new_longest = [], int(lengths[i])
        current.append(int(i))
        longest = new_longest
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
        if u.labels is not None:
            y[: lengths[b], b] = u.labels
    return Batch(
        torch.from_numpy(x),
        torch.from_numpy(y),
        torch.tensor(lengths),
        [phone_ids(list(u.phones)) for u in chosen],
    )


def batch_loss(model: AcousticModel, batch: Batch) -> torch.Tensor:
    """Mean loss of a batch: frame cross-entropy, or CTC (phone ``k`` is class ``k + 1``)."""
    return _task_loss(model, model(batch.x), batch)


def _task_loss(model: AcousticModel, scores: torch.Tensor, batch: Batch) -> torch.Tensor:
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
    s = (student.reshape(-1, student.shape[-1])[valid] / temperature).log_softmax(-1)
    t = (teacher.detach().reshape(-1, teacher.shape[-1])[valid] / temperature).log_softmax(-1)
    if s.shape[0] == 0:
        return student.sum() * 0.0
    kl = (t.exp() * (t - s)).sum(-1).mean()
    return kl * temperature**2


def distilled_loss_fn(
    teacher: AcousticModel, weight: float, temperature: float = 2.0
) -> Callable[[AcousticModel, Batch], torch.Tensor]:
    """A ``loss_fn`` for :func:`train_epoch`: ``(1 - weight) * task loss + weight * KD``.

    Parameters
    ----------
    teacher : AcousticModel
        The (dense) teacher, evaluated without gradients in eval mode; a framewise model with
        the student's classes.
    weight : float
        Share of the distillation term, in ``[0, 1]``.
    temperature : float
        :func:`distillation_loss` temperature.

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

    def loss_fn(model: AcousticModel, batch: Batch) -> torch.Tensor:
        scores = model(batch.x)
        task = _task_loss(model, scores, batch)
        if weight == 0:
            return task
        with torch.no_grad():
            target = teacher(batch.x)
        kd = distillation_loss(scores, target, batch.frame_labels, temperature)
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

    Returns
    -------
    dict
        ``{"loss": mean task loss, "batches": number of batches}``.
    """
    model.train()
    batches = make_batches(utts, max_frames, np.random.default_rng([seed, epoch]))
    total = 0.0
    bar = tqdm(batches, desc=desc, leave=False, disable=not progress, unit="batch")
    for idx in bar:
        batch = collate(utts, idx)
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
    return {"loss": total / max(1, len(batches)), "batches": float(len(batches))}


def remove_short_runs(labels: Sequence[int], min_run: int) -> list[int]:
    """Relabel runs shorter than ``min_run`` frames with their longer neighbour's label.

    Parameters
    ----------
    labels : sequence of int
        One class per frame.
    min_run : int
        Shortest run kept (``<= 1`` keeps everything).

    Returns
    -------
    list of int
        Same length as ``labels``. A short run takes the label of the longer of its two
        neighbouring runs (the left one on ties); a sequence made only of short runs is
        returned unchanged.
    """
    from tvm_bsp.deploy.decode import remove_short_runs as runtime_remove_short_runs

    # one implementation: the runtime-only runner on a device decodes with the same code
    return runtime_remove_short_runs(labels, min_run)


def smoothed_framewise_decode(scores: Any, smooth: int = 5, min_run: int = 3) -> list[int]:
    """Decode framewise scores into a class sequence, robust to boundary flicker.

    Parameters
    ----------
    scores : array-like or torch.Tensor, shape (T, C)
        Logits or log-probabilities.
    smooth : int
        Width of the centred moving average of the log-posteriors (``<= 1``: none).
    min_run : int
        Runs of the argmax shorter than this are absorbed by a neighbour
        (:func:`remove_short_runs`).

    Returns
    -------
    list of int
        The class sequence (repeats merged).
    """
    s = torch.as_tensor(scores, dtype=torch.float32).detach()
    if s.ndim != 2:
        raise ValueError(f"expected scores of shape (T, C), got {tuple(s.shape)}")
    logp = s.log_softmax(-1)
    if smooth > 1 and len(logp) > 1:
        k = int(smooth)
        padded = F.pad(logp.T[None], (k // 2, (k - 1) // 2), mode="replicate")
        logp = F.avg_pool1d(padded, k, stride=1)[0].T
    frames = logp.argmax(-1).tolist()
    return [int(x) for x in collapse_repeats(remove_short_runs(frames, min_run))]


@torch.no_grad()
def decode(
    model: AcousticModel,
    utts: Sequence[UtteranceLike],
    max_frames: int = 40000,
    *,
    smooth: int = 5,
    min_run: int = 3,
) -> list[list[int]]:
    """Decode every utterance to a phone-id sequence (greedy), in the order given.

    ``smooth`` and ``min_run`` apply to framewise models only
    (:func:`smoothed_framewise_decode`).
    """
    model.eval()
    hyps: list[list[int]] = [[] for _ in utts]
    for idx in make_batches(utts, max_frames):
        batch = collate(utts, idx)
        scores = model(batch.x)
        for b, i in enumerate(idx):
            s = scores[: int(batch.lengths[b]), b]
            if model.config.head == "framewise":
                hyps[i] = smoothed_framewise_decode(s, smooth, min_run)
            else:
                hyps[i] = [k - 1 for k in ctc_greedy_decode(s, blank=0)]
    return hyps


def evaluate_per(model: AcousticModel, utts: Sequence[UtteranceLike], **decode_kw: Any) -> float:
    """Phone error rate in percent over ``utts`` (references: the utterances' phones)."""
    refs = [phone_ids(list(u.phones)) for u in utts]
    return 100.0 * phone_error_rate(refs, decode(model, utts, **decode_kw))


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
) -> list[dict[str, float]]:
    """Train a dense model with Adam (cosine learning rate), resuming from ``checkpoint``.

    The checkpoint (model, optimizer, history) is written atomically after every epoch; a call
    after the last epoch trains nothing. The learning rate of epoch ``e`` is
    :func:`cosine_lr` ``(lr, e, epochs)``, so a resumed run may change ``epochs``.

    Returns
    -------
    list of dict
        Per epoch: ``epoch``, ``loss``, ``dev_per``.
    """
    from tvm_bsp.prune.checkpoint import load_checkpoint, save_checkpoint

    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    history: list[dict[str, float]] = []
    start = 0
    if checkpoint is not None and Path(checkpoint).exists():
        info = load_checkpoint(checkpoint, model, optimizer)
        history = list(info.extra.get("history", []))
        start = info.epoch + 1
        log(f"resumed dense training after epoch {start}/{epochs}")
    torch.manual_seed(seed + start)
    for epoch in range(start, epochs):
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(lr, epoch, epochs)
        metrics = train_epoch(
            model,
            train,
            optimizer,
            epoch=epoch,
            seed=seed,
            max_frames=max_frames,
            progress=progress,
            desc=f"dense epoch {epoch + 1}/{epochs}",
        )
        record = {"epoch": epoch, "loss": metrics["loss"], "dev_per": evaluate_per(model, dev)}
        history.append(record)
        log(
            f"epoch {epoch + 1}/{epochs}: loss {record['loss']:.3f}, "
            f"dev PER {record['dev_per']:.2f}%"
        )
        if checkpoint is not None:
            save_checkpoint(checkpoint, model, optimizer, epoch=epoch, extra={"history": history})
    return history
