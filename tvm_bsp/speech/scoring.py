"""Decoding and scoring: model outputs to phone sequences, and phone error rates.

``"ctc"`` models decode greedily (best path, :func:`~tvm_bsp.speech.per.ctc_greedy_decode`).
``"framewise"`` models decode by :func:`smoothed_framewise_decode`: the per-frame argmax of
log-posteriors averaged over a short centred window, runs shorter than ``min_run`` frames
dropped, repeats merged. Plain per-frame argmax (``smooth=0, min_run=1``) flickers between
classes at phone boundaries and inserts many spurious phones. Scoring always runs in float32.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

# one implementation: the runtime-only runner on a device decodes with the same code
from tvm_bsp.runtime.decode import remove_short_runs
from tvm_bsp.speech.batching import collate_pieces, group_pieces, utterance_pieces
from tvm_bsp.speech.model import AcousticModel
from tvm_bsp.speech.per import collapse_repeats, ctc_greedy_decode, phone_error_rate
from tvm_bsp.speech.phones import phone_ids


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
    utts: Sequence[Any],
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
    for group in group_pieces(utterance_pieces([len(u.features) for u in utts]), max_frames):
        batch = collate_pieces(utts, group)
        scores = model(batch.x)
        for b, p in enumerate(group):
            i = p.utt
            s = scores[: int(batch.lengths[b]), b]
            if model.config.head == "framewise":
                hyps[i] = smoothed_framewise_decode(s, smooth, min_run)
            else:
                hyps[i] = [k - 1 for k in ctc_greedy_decode(s, blank=0)]
    return hyps


def evaluate_per(model: AcousticModel, utts: Sequence[Any], **decode_kw: Any) -> float:
    """Phone error rate in percent over ``utts`` (references: the utterances' phones)."""
    refs = [phone_ids(list(u.phones)) for u in utts]
    return 100.0 * phone_error_rate(refs, decode(model, utts, **decode_kw))
