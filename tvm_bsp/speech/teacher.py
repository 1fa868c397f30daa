"""The distillation teacher's frame scores, computed once per utterance and reused.

Distillation (:func:`tvm_bsp.speech.train.distilled_loss_fn`) needs the dense teacher's scores
for every training batch. The teacher is fixed, and the models are unidirectional, so its
scores of an utterance's frames do not depend on the batch the utterance lands in: computing
them once per utterance saves the teacher's forward pass in every later unit (about a fifth of
a pruning unit's time). A chunk of an utterance (:mod:`tvm_bsp.speech.batching`) takes the
slice of the whole utterance's scores, i.e. the teacher's view with the full left context.

:class:`TeacherScores` is keyed by utterance ``id``; :meth:`TeacherScores.save` writes one
``.npy`` array of all frames plus a JSON index, which worker processes open memory-mapped
(:meth:`TeacherScores.load`), so three pruning chains share one copy.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tvm_bsp.speech.batching import Batch, Piece, collate_pieces, group_pieces, utterance_pieces

SCORES_FORMAT = "tvm_bsp.speech.teacher_scores"


class TeacherScores:
    """Per-utterance teacher scores ``(T_u, C)`` (float32) keyed by utterance id.

    Parameters
    ----------
    scores : numpy.ndarray, shape (frames, C)
        All utterances' scores, concatenated.
    index : dict
        ``{utterance id: (offset, frames)}`` into ``scores``.
    """

    def __init__(self, scores: np.ndarray, index: dict[str, tuple[int, int]]) -> None:
        self.scores = scores
        self.index = index

    @classmethod
    @torch.no_grad()
    def compute(
        cls, teacher: torch.nn.Module, utts: Sequence[Any], max_frames: int = 40000
    ) -> TeacherScores:
        """Run ``teacher`` (eval mode, float32) once over ``utts`` (objects with ``id``)."""
        ids = [str(u.id) for u in utts]
        if len(set(ids)) != len(ids):
            raise ValueError("utterance ids must be unique to cache teacher scores")
        lengths = [len(u.features) for u in utts]
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        was_training = teacher.training
        teacher.eval()
        out: np.ndarray | None = None
        for group in group_pieces(utterance_pieces(lengths), max_frames):
            batch = collate_pieces(utts, group)
            scores = teacher(batch.x).float().numpy()
            if out is None:
                out = np.empty((int(offsets[-1]), scores.shape[-1]), np.float32)
            for b, p in enumerate(group):
                out[offsets[p.utt] : offsets[p.utt + 1]] = scores[: p.length, b]
        teacher.train(was_training)
        if out is None:
            out = np.zeros((0, 0), np.float32)
        index = {i: (int(offsets[k]), lengths[k]) for k, i in enumerate(ids)}
        return cls(out, index)

    def covers(self, utts: Sequence[Any]) -> bool:
        """True when every utterance has scores of its length."""
        for u in utts:
            entry = self.index.get(str(getattr(u, "id", "")))
            if entry is None or entry[1] != len(u.features):
                return False
        return True

    def for_batch(self, batch: Batch) -> torch.Tensor:
        """The teacher's scores ``(T, B, C)`` of a batch (zeros on padding).

        Raises
        ------
        KeyError
            If an utterance of the batch has no cached scores.
        """
        if not batch.pieces or len(batch.ids) != len(batch.pieces):
            raise ValueError("the batch does not record its pieces (use collate_pieces)")
        T, B = batch.frame_labels.shape
        out = np.zeros((T, B, self.scores.shape[1]), np.float32)
        for b, (uid, p) in enumerate(zip(batch.ids, batch.pieces, strict=True)):
            out[: p.length, b] = self._slice(uid, p)
        return torch.from_numpy(out)

    def _slice(self, uid: str | None, p: Piece) -> np.ndarray:
        if uid is None or uid not in self.index:
            raise KeyError(f"no cached teacher scores for utterance {uid!r}")
        offset, frames = self.index[uid]
        if p.stop > frames:
            raise ValueError(f"utterance {uid!r} has {frames} cached frames, asked for {p.stop}")
        return self.scores[offset + p.start : offset + p.stop]

    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``scores.npy`` and ``index.json`` into ``directory`` (atomically each)."""
        from tvm_bsp.speech.storage import atomic_write_text

        root = Path(directory)
        root.mkdir(parents=True, exist_ok=True)
        tmp = root / "scores.tmp.npy"
        np.save(tmp, self.scores)
        os.replace(tmp, root / "scores.npy")
        meta = {"format": SCORES_FORMAT, "shape": list(self.scores.shape), "index": self.index}
        atomic_write_text(root / "index.json", json.dumps(meta))
        return root

    @classmethod
    def load(cls, directory: str | os.PathLike) -> TeacherScores:
        """Open what :meth:`save` wrote (memory-mapped, read-only; no pickle).

        Raises
        ------
        ValueError
            If the files are missing, of another format, or disagree with each other.
        """
        root = Path(directory)
        try:
            meta = json.loads((root / "index.json").read_text())
            scores = np.load(root / "scores.npy", mmap_mode="r", allow_pickle=False)
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"{root} holds no readable teacher scores: {err}") from None
        if not isinstance(meta, dict) or meta.get("format") != SCORES_FORMAT:
            raise ValueError(f"{root / 'index.json'} is not a {SCORES_FORMAT} index")
        if list(scores.shape) != meta.get("shape") or scores.dtype != np.float32:
            raise ValueError(f"{root / 'scores.npy'} does not match its index")
        index = {str(k): (int(v[0]), int(v[1])) for k, v in meta["index"].items()}
        if any(o < 0 or n < 0 or o + n > scores.shape[0] for o, n in index.values()):
            raise ValueError(f"{root / 'index.json'} points outside scores.npy")
        return cls(scores, index)
