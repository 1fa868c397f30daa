"""Phone decoding of framewise / CTC scores in numpy (no torch), for the device runner.

The same rules as :func:`tvm_bsp.speech.train.smoothed_framewise_decode` (log-softmax, a
centred moving average of ``smooth`` frames with edge replication, per-frame argmax, runs
shorter than ``min_run`` frames absorbed by the longer neighbour, repeats merged) and
:func:`tvm_bsp.speech.per.ctc_greedy_decode` (argmax, merge repeats, drop blanks).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def collapse_repeats(seq: Sequence[int]) -> list[int]:
    """Merge runs of equal consecutive values: ``[a, a, b, a] -> [a, b, a]``."""
    out: list[int] = []
    for x in seq:
        if not out or out[-1] != x:
            out.append(int(x))
    return out


def remove_short_runs(labels: Sequence[int], min_run: int) -> list[int]:
    """Relabel runs shorter than ``min_run`` frames with their longer neighbour's label.

    The one implementation: :mod:`tvm_bsp.speech.scoring` decodes with it too.

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
    labels = [int(v) for v in labels]
    if min_run <= 1 or not labels:
        return labels
    runs: list[list[int]] = []
    for v in labels:
        if runs and runs[-1][0] == v:
            runs[-1][1] += 1
        else:
            runs.append([v, 1])
    if all(n < min_run for _, n in runs):
        return labels
    while True:
        short = next((i for i, (_, n) in enumerate(runs) if n < min_run), None)
        if short is None:
            break
        left = runs[short - 1][1] if short > 0 else -1
        right = runs[short + 1][1] if short + 1 < len(runs) else -1
        runs[short - 1 if left >= right else short + 1][1] += runs[short][1]
        del runs[short]
        merged: list[list[int]] = []
        for r in runs:
            if merged and merged[-1][0] == r[0]:
                merged[-1][1] += r[1]
            else:
                merged.append(r)
        runs = merged
    return [v for v, n in runs for _ in range(n)]


def _log_softmax(scores: np.ndarray) -> np.ndarray:
    shifted = scores - scores.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def smooth_log_posteriors(scores: np.ndarray, smooth: int) -> np.ndarray:
    """Log-softmax of ``(T, C)`` scores averaged over a centred window of ``smooth`` frames."""
    logp = _log_softmax(np.asarray(scores, np.float32))
    k = int(smooth)
    if k <= 1 or len(logp) <= 1:
        return logp
    padded = np.concatenate(
        [np.repeat(logp[:1], k // 2, 0), logp, np.repeat(logp[-1:], (k - 1) // 2, 0)]
    )
    csum = np.concatenate([np.zeros((1, logp.shape[1]), np.float64), np.cumsum(padded, 0)])
    return ((csum[k:] - csum[:-k]) / k).astype(np.float32)


def decode_scores(scores: np.ndarray, labels: dict[str, Any]) -> list[str]:
    """Decode ``(T, C)`` scores to label names with the rule of a sidecar record.

    Parameters
    ----------
    scores : numpy.ndarray
        One row of class scores per frame.
    labels : dict
        A record of :mod:`tvm_bsp.runtime.labels` (``labels``, ``head``, ``blank``, ``decode``).

    Returns
    -------
    list of str
        The phone (label) sequence.
    """
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"expected scores of shape (T, C), got {scores.shape}")
    names = labels["labels"]
    if labels.get("head") == "ctc":
        blank = int(labels.get("blank") or 0)
        ids = [i for i in collapse_repeats(scores.argmax(-1).tolist()) if i != blank]
    else:
        rule = labels.get("decode") or {}
        frames = smooth_log_posteriors(scores, int(rule.get("smooth", 1))).argmax(-1).tolist()
        ids = collapse_repeats(remove_short_runs(frames, int(rule.get("min_run", 1))))
    return [names[i] for i in ids]
