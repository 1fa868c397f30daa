"""Training batches: whole utterances or fixed-length chunks of frames, grouped by length.

A :class:`Piece` is a frame range of one utterance. Whole-utterance training uses one piece per
utterance; chunked training (:func:`chunk_pieces`) cuts every utterance into chunks of
``chunk_frames`` scored frames at a random phase drawn per epoch, each preceded by up to
``left_context`` frames that run through the network (so its state is warm) but are not scored.
Pieces of similar length are grouped into batches of at most ``max_frames`` padded frames
(:func:`group_pieces`), so a batch of chunks is nearly free of padding and its matrix products
are wide: that is what makes chunked training faster per frame on a CPU (see
``scripts/bench_training.py``).

The models are unidirectional, so a piece's scored frames see only their own past; with
``left_context = 0`` the state starts from zero at every chunk, as it does at the start of an
utterance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from tvm_bsp.speech.phones import phone_ids

IGNORE = -100
"""Frame label of padding and of unscored context frames (``ignore_index`` of the loss)."""


@dataclass(frozen=True)
class Piece:
    """Frames ``[start, stop)`` of utterance ``utt``; the loss scores frames ``>= scored_from``.

    Attributes
    ----------
    utt : int
        Index into the utterance sequence the pieces were made from.
    start, stop : int
        Frame range fed to the network.
    scored_from : int
        First scored frame (``start`` for whole utterances; ``start + left context`` for
        chunks).
    """

    utt: int
    start: int
    stop: int
    scored_from: int

    @property
    def length(self) -> int:
        """Frames fed to the network."""
        return self.stop - self.start


@dataclass(frozen=True)
class ChunkSettings:
    """Chunked training: ``chunk_frames`` scored frames after ``left_context`` warm-up frames.

    Attributes
    ----------
    chunk_frames : int
        Scored frames per chunk (the last chunk of an utterance may be shorter).
    left_context : int
        Unscored frames before every chunk (fewer at the start of an utterance).
    """

    chunk_frames: int = 100
    left_context: int = 20

    def __post_init__(self) -> None:
        if self.chunk_frames < 1:
            raise ValueError(f"chunk_frames must be >= 1, got {self.chunk_frames}")
        if self.left_context < 0:
            raise ValueError(f"left_context must be >= 0, got {self.left_context}")


@dataclass(frozen=True)
class Batch:
    """Padded, time-major batch.

    Attributes
    ----------
    x : torch.Tensor, shape (T, B, F)
    frame_labels : torch.Tensor, shape (T, B)
        :data:`IGNORE` on padding, unscored context and unlabelled utterances.
    lengths : torch.Tensor, shape (B,)
    phone_targets : list of list of int
        Phone ids of each row's utterance (CTC targets; whole utterances only).
    pieces : tuple of Piece
        Where each row comes from.
    ids : tuple of str or None
        The ``id`` of each row's utterance (``None`` if it has none): the key of cached
        teacher scores (:class:`tvm_bsp.speech.teacher.TeacherScores`).
    """

    x: torch.Tensor
    frame_labels: torch.Tensor
    lengths: torch.Tensor
    phone_targets: list[list[int]]
    pieces: tuple[Piece, ...] = ()
    ids: tuple[str | None, ...] = ()


def utterance_pieces(lengths: Sequence[int]) -> list[Piece]:
    """One piece per utterance (every frame scored)."""
    return [Piece(i, 0, int(n), 0) for i, n in enumerate(lengths)]


def chunk_pieces(
    lengths: Sequence[int], settings: ChunkSettings, rng: np.random.Generator
) -> list[Piece]:
    """Cut every utterance into chunks at a random phase (see the module docstring).

    Parameters
    ----------
    lengths : sequence of int
        Frames per utterance.
    settings : ChunkSettings
    rng : numpy.random.Generator
        Draws each utterance's phase (the length of its first chunk, in ``1..chunk_frames``).

    Returns
    -------
    list of Piece
        Together they score every frame of every utterance exactly once.
    """
    size, context = settings.chunk_frames, settings.left_context
    pieces: list[Piece] = []
    for i, n in enumerate(lengths):
        n = int(n)
        begin = 0
        first = int(rng.integers(1, size + 1)) if n > size else n
        stop = min(n, first)
        while begin < n:
            pieces.append(Piece(i, max(0, begin - context), stop, begin))
            begin, stop = stop, min(n, stop + size)
    return pieces


def group_pieces(
    pieces: Sequence[Piece], max_frames: int, rng: np.random.Generator | None = None
) -> list[list[Piece]]:
    """Group pieces of similar length into batches of at most ``max_frames`` padded frames.

    Parameters
    ----------
    pieces : sequence of Piece
    max_frames : int
        Upper bound of ``B * T_max`` per batch (a longer piece is alone).
    rng : numpy.random.Generator, optional
        Breaks ties in length at random and shuffles the batch order.

    Returns
    -------
    list of list of Piece
    """
    if max_frames < 1:
        raise ValueError(f"max_frames must be positive, got {max_frames}")
    lengths = np.array([p.length for p in pieces], dtype=np.int64)
    noise = rng.random(len(pieces)) if rng is not None else np.zeros(len(pieces))
    batches: list[list[Piece]] = []
    current: list[Piece] = []
    longest = 0
    for i in np.lexsort((noise, lengths)):
        new_longest = max(longest, int(lengths[i]))
        if current and new_longest * (len(current) + 1) > max_frames:
            batches.append(current)
            current, new_longest = [], int(lengths[i])
        current.append(pieces[int(i)])
        longest = new_longest
    if current:
        batches.append(current)
    if rng is not None:
        rng.shuffle(batches)
    return batches


def collate_pieces(utts: Sequence, pieces: Sequence[Piece]) -> Batch:
    """Pad the pieces (frames of ``utts``: objects with ``features``, ``labels``, ``phones``)."""
    lengths = [p.length for p in pieces]
    T, B = max(lengths), len(pieces)
    dim = utts[pieces[0].utt].features.shape[1]
    x = np.zeros((T, B, dim), np.float32)
    y = np.full((T, B), IGNORE, np.int64)
    for b, p in enumerate(pieces):
        u = utts[p.utt]
        x[: p.length, b] = u.features[p.start : p.stop]
        if u.labels is not None:
            skip = p.scored_from - p.start
            y[skip : p.length, b] = u.labels[p.scored_from : p.stop]
    return Batch(
        torch.from_numpy(x),
        torch.from_numpy(y),
        torch.tensor(lengths),
        [phone_ids(list(utts[p.utt].phones)) for p in pieces],
        tuple(pieces),
        tuple(_utt_id(utts[p.utt]) for p in pieces),
    )


def _utt_id(utt: object) -> str | None:
    uid = getattr(utt, "id", None)
    return None if uid is None else str(uid)
