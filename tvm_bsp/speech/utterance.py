"""The :class:`Utterance` record shared by every corpus reader."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tvm_bsp.speech.phones import PHONE_TO_ID


@dataclass
class Utterance:
    """One utterance ready for training or scoring.

    Attributes
    ----------
    id : str
        Unique name within its corpus.
    features : numpy.ndarray
        float32 ``(T, D)`` feature frames (10 ms hop).
    labels : numpy.ndarray or None
        int64 ``(T,)`` framewise 39-class ids, or ``None`` when no alignment exists.
    phones : list of str
        The 39-class phone sequence (with the leading/trailing ``sil``).
    speaker : str
        Voice or speaker name (``"espeak:en-us+m3"``, ``"FCJF0"``, ...).
    text : str
        The words spoken.
    """

    id: str
    features: np.ndarray
    labels: np.ndarray | None
    phones: list[str]
    speaker: str = ""
    text: str = ""

    @property
    def num_frames(self) -> int:
        """Number of feature frames."""
        return int(self.features.shape[0])

    @property
    def phone_ids(self) -> np.ndarray:
        """int64 class ids of :attr:`phones`."""
        return np.asarray([PHONE_TO_ID[p] for p in self.phones], dtype=np.int64)
