"""Phone alignments: engine phones folded to contiguous 39-class segments, and frame labels.

An :class:`Alignment` is a list of 39-class phones with ``len(phones) + 1`` sample
boundaries: phone ``i`` covers samples ``bounds[i]:bounds[i + 1]``, segments are contiguous,
non-empty and cover the whole signal, and no two neighbouring segments are both ``sil``.

Folding an engine's phones (:func:`fold_engine_phones`):

* every phone maps to 0, 1 or 2 classes (:func:`tvm_bsp.speech.phones.espeak_to_39`,
  :func:`tvm_bsp.speech.phones.cmu_to_39`); a phone that maps to two classes has its span
  split in two equal halves;
* a phone that maps to none (eSpeak's ``;`` mark, the glottal stop) gives its audio to the
  phone before it (to the next one at the start);
* a non-pause phone that the engine left without audio (eSpeak merges some post-vocalic
  ``l``/``r`` into the vowel) takes the last third of the preceding phone, so it stays in
  the sequence; zero-length pauses are dropped;
* audio before the first and after the last phone is ``sil``; neighbouring ``sil`` segments
  merge, and so do two neighbouring ``r`` (an r-coloured vowel followed by ``r``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from tvm_bsp.speech.phones import PHONE_TO_ID, SILENCE, cmu_to_39, espeak_to_39

_MERGE = frozenset({SILENCE, "r"})


@dataclass
class Alignment:
    """Contiguous 39-class phone segments of one signal.

    Attributes
    ----------
    phones : list of str
        39-class phones in order.
    bounds : numpy.ndarray
        int64 ``(len(phones) + 1,)`` sample boundaries, ``bounds[0] == 0`` and
        ``bounds[-1]`` the signal length.
    """

    phones: list[str]
    bounds: np.ndarray

    def __post_init__(self) -> None:
        self.bounds = np.asarray(self.bounds, dtype=np.int64)
        if len(self.bounds) != len(self.phones) + 1:
            raise ValueError(f"{len(self.phones)} phones need {len(self.phones) + 1} bounds")

    @property
    def num_samples(self) -> int:
        """Length of the aligned signal."""
        return int(self.bounds[-1])

    def segments(self) -> list[tuple[str, int, int]]:
        """Return ``(phone, start, end)`` triples."""
        b = self.bounds.tolist()
        return [(p, b[i], b[i + 1]) for i, p in enumerate(self.phones)]

    @classmethod
    def from_segments(cls, segments: Sequence[Sequence]) -> Alignment:
        """Build from contiguous ``(phone, start, end)`` triples (as stored in manifests)."""
        if not segments:
            raise ValueError("an alignment needs at least one segment")
        for prev, cur in itertools.pairwise(segments):
            if int(prev[2]) != int(cur[1]):
                raise ValueError(f"segments are not contiguous: {prev} then {cur}")
        bounds = [int(segments[0][1])] + [int(s[2]) for s in segments]
        return cls([str(s[0]) for s in segments], np.asarray(bounds))

    def validate(self) -> None:
        """Raise ``ValueError`` unless the alignment satisfies the invariants above."""
        if self.bounds[0] != 0 or np.any(np.diff(self.bounds) <= 0):
            raise ValueError("alignment must start at 0 with non-empty segments")
        unknown = set(self.phones) - set(PHONE_TO_ID)
        if unknown:
            raise ValueError(f"not 39-class phones: {sorted(unknown)}")

    def scaled(self, num_samples: int) -> Alignment:
        """Return the alignment stretched to a signal of ``num_samples`` (speed change).

        Segments that would become empty are dropped (their neighbours absorb them).
        """
        ratio = num_samples / max(self.num_samples, 1)
        bounds = np.round(self.bounds * ratio).astype(np.int64)
        bounds[-1] = num_samples
        return _build(self.phones, bounds)

    def padded(self, before: int, after: int) -> Alignment:
        """Return the alignment of the signal with ``before``/``after`` samples of silence."""
        phones = [SILENCE, *self.phones, SILENCE]
        inner = self.bounds + before
        bounds = np.concatenate([[0], inner, [inner[-1] + after]])
        return _build(phones, bounds)

    def frame_labels(
        self, num_frames: int, frame_length: int = 400, frame_shift: int = 160
    ) -> np.ndarray:
        """Return the class id of each analysis frame (the phone at the frame's centre).

        Parameters
        ----------
        num_frames : int
            Number of feature frames (:func:`tvm_bsp.speech.features.num_frames`).
        frame_length, frame_shift : int
            Framing in samples.

        Returns
        -------
        numpy.ndarray
            int64 ``(num_frames,)`` in ``0..38``.
        """
        centres = np.arange(num_frames, dtype=np.int64) * frame_shift + frame_length // 2
        idx = np.searchsorted(self.bounds, centres, side="right") - 1
        idx = np.clip(idx, 0, len(self.phones) - 1)
        ids = np.asarray([PHONE_TO_ID[p] for p in self.phones], dtype=np.int64)
        return ids[idx]


def _build(phones: Sequence[str], bounds: np.ndarray) -> Alignment:
    """Drop empty segments and merge neighbouring ``sil``/``r`` segments."""
    out_phones: list[str] = []
    out_bounds: list[int] = [int(bounds[0])]
    for i, phone in enumerate(phones):
        start, end = int(bounds[i]), int(bounds[i + 1])
        if end <= start:
            continue
        if out_phones and out_phones[-1] == phone and phone in _MERGE:
            out_bounds[-1] = end
            continue
        out_phones.append(phone)
        out_bounds.append(end)
    return Alignment(out_phones, np.asarray(out_bounds, dtype=np.int64))


def fold_engine_phones(
    phones: Sequence[tuple[str, int, int]], num_samples: int, engine: str, voice: str = ""
) -> Alignment:
    """Fold an engine's phones into a contiguous 39-class :class:`Alignment`.

    Parameters
    ----------
    phones : sequence of (str, int, int)
        Engine label, start and end sample, contiguous and in order.
    num_samples : int
        Signal length; the alignment covers ``0..num_samples``.
    engine : {"espeak", "flite", "cmu"}
        Whose labels they are (``"flite"`` and ``"cmu"`` are ARPAbet).
    voice : str
        eSpeak voice (its accent selects the vowel table).

    Returns
    -------
    Alignment
        The folded alignment.
    """
    fold: Callable[[str], tuple[str, ...]]
    if engine == "espeak":

        def fold(label: str) -> tuple[str, ...]:
            return espeak_to_39(label, voice)

    elif engine in ("flite", "cmu"):

        def fold(label: str) -> tuple[str, ...]:
            phone = cmu_to_39(label)
            return () if phone is None else (phone,)

    else:
        raise ValueError(f"unknown engine {engine!r}")

    # items: [classes, start, end]; then resolve empties and zero-length phones
    items: list[list] = []
    pending_start: int | None = None
    for label, start, end in phones:
        start, end = min(int(start), num_samples), min(int(end), num_samples)
        classes = fold(label)
        if not classes:  # no phone: audio goes to the previous phone (or the next one)
            if items:
                items[-1][2] = max(items[-1][2], end)
            elif pending_start is None:
                pending_start = start
            continue
        if pending_start is not None:
            start, pending_start = pending_start, None
        if end <= start:
            if classes == (SILENCE,):
                continue
            prev = items[-1] if items else None
            if prev is not None and prev[2] - prev[1] >= 3 and prev[2] == start:
                cut = prev[2] - (prev[2] - prev[1]) // 3
                prev[2], start = cut, cut
            else:
                continue
        items.append([classes, start, end])

    seg_phones: list[str] = [SILENCE]
    bounds: list[int] = [0]
    for classes, start, end in items:
        bounds.append(start)  # closes the previous segment (gaps become part of it)
        for k in range(1, len(classes)):
            seg_phones.append(classes[k - 1])
            bounds.append(start + (end - start) * k // len(classes))
        seg_phones.append(classes[-1])
    seg_phones.append(SILENCE)
    bounds.append(items[-1][2] if items else 0)
    bounds.append(num_samples)
    # bounds are monotone by construction except where a gap precedes; enforce it
    arr = np.maximum.accumulate(np.asarray(bounds, dtype=np.int64))
    return _build(seg_phones, arr)
