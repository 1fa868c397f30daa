"""Phone error rate: edit distance, corpus PER, and decoding of framewise / CTC outputs.

The phone error rate of a corpus is the total Levenshtein distance (substitutions +
deletions + insertions, each costing 1) between every reference and its hypothesis, divided
by the total number of reference phones. It is a fraction (``0.188`` for the 18.80 % of
RTMobile's Table I) and can exceed 1 when hypotheses insert many phones.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class EditCounts:
    """Counts of one minimum-cost alignment of a hypothesis to a reference.

    Attributes
    ----------
    substitutions, deletions, insertions : int
        Edit operations; ``deletions`` are reference phones missing from the hypothesis.
    reference_length : int
        Number of reference phones.
    """

    substitutions: int
    deletions: int
    insertions: int
    reference_length: int

    @property
    def errors(self) -> int:
        """Total edits (the edit distance)."""
        return self.substitutions + self.deletions + self.insertions


def _as_codes(ref: Sequence[Hashable], hyp: Sequence[Hashable]) -> tuple[np.ndarray, np.ndarray]:
    """Map two sequences of hashable symbols to int arrays with a shared code book."""
    table: dict[Hashable, int] = {}
    r = np.fromiter((table.setdefault(x, len(table)) for x in ref), dtype=np.int64)
    h = np.fromiter((table.setdefault(x, len(table)) for x in hyp), dtype=np.int64)
    return r, h


def edit_distance(ref: Sequence[Hashable], hyp: Sequence[Hashable]) -> int:
    """Return the Levenshtein distance between two symbol sequences.

    Parameters
    ----------
    ref, hyp : sequence of hashable
        Reference and hypothesis (phone strings, ids, ...).

    Returns
    -------
    int
        Minimum number of substitutions, deletions and insertions turning ``ref`` into
        ``hyp``.

    Notes
    -----
    One DP row per reference symbol, vectorised over the hypothesis: with ``c[j]`` the cost
    of reaching column ``j`` by a substitution/match or a deletion, the insertions along the
    row give ``d[j] = min_k<=j (c[k] + j - k) = j + cummin(c - arange)[j]``.
    """
    r, h = _as_codes(ref, hyp)
    if len(r) == 0 or len(h) == 0:
        return int(max(len(r), len(h)))
    cols = np.arange(len(h) + 1, dtype=np.int64)
    prev = cols.copy()
    for i, symbol in enumerate(r, start=1):
        cost = np.empty_like(prev)
        cost[0] = i
        cost[1:] = np.minimum(prev[:-1] + (h != symbol), prev[1:] + 1)
        prev = cols + np.minimum.accumulate(cost - cols)
    return int(prev[-1])


def edit_counts(ref: Sequence[Hashable], hyp: Sequence[Hashable]) -> EditCounts:
    """Align two sequences and count each kind of edit.

    Parameters
    ----------
    ref, hyp : sequence of hashable
        Reference and hypothesis.

    Returns
    -------
    EditCounts
        Counts of one minimum-cost alignment (ties prefer match/substitution, then
        deletion, then insertion); ``errors`` equals :func:`edit_distance`.
    """
    r, h = _as_codes(ref, hyp)
    n, m = len(r), len(h)
    d = np.zeros((n + 1, m + 1), dtype=np.int64)
    d[:, 0] = np.arange(n + 1)
    d[0, :] = np.arange(m + 1)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            d[i, j] = min(
                d[i - 1, j - 1] + (r[i - 1] != h[j - 1]), d[i - 1, j] + 1, d[i, j - 1] + 1
            )
    subs = dels = ins = 0
    i, j = n, m
    while i > 0 or j > 0:
        if i > 0 and j > 0 and d[i, j] == d[i - 1, j - 1] + (r[i - 1] != h[j - 1]):
            subs += int(r[i - 1] != h[j - 1])
            i, j = i - 1, j - 1
        elif i > 0 and d[i, j] == d[i - 1, j] + 1:
            dels += 1
            i -= 1
        else:
            ins += 1
            j -= 1
    return EditCounts(subs, dels, ins, n)


def _strip(seq: Iterable[Hashable], ignore: frozenset) -> list[Hashable]:
    return [x for x in seq if x not in ignore]


def phone_error_rate(
    refs: Iterable[Sequence[Hashable]],
    hyps: Iterable[Sequence[Hashable]],
    ignore: Iterable[Hashable] = (),
) -> float:
    """Return the corpus phone error rate.

    Parameters
    ----------
    refs, hyps : iterable of sequences
        Reference and hypothesis phone sequences, paired in order.
    ignore : iterable of hashable
        Symbols removed from both sides before scoring (e.g. ``("sil",)``).

    Returns
    -------
    float
        ``sum(edit_distance) / sum(len(ref))`` as a fraction.

    Raises
    ------
    ValueError
        If the two lists differ in length or the references hold no phone.
    """
    drop = frozenset(ignore)
    refs, hyps = list(refs), list(hyps)
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    edits = total = 0
    for ref, hyp in zip(refs, hyps, strict=True):
        ref, hyp = _strip(ref, drop), _strip(hyp, drop)
        edits += edit_distance(ref, hyp)
        total += len(ref)
    if total == 0:
        raise ValueError("the references contain no phone to score")
    return edits / total


def collapse_repeats(seq: Sequence[Hashable]) -> list[Hashable]:
    """Merge runs of equal consecutive symbols (framewise labels -> phone sequence).

    Parameters
    ----------
    seq : sequence of hashable
        For example one predicted class per 10 ms frame.

    Returns
    -------
    list
        ``seq`` with each run replaced by one symbol: ``[a, a, b, a] -> [a, b, a]``.
    """
    out: list[Hashable] = []
    for x in seq:
        if not out or out[-1] != x:
            out.append(x)
    return out


def _argmax(scores: np.ndarray) -> list[int]:
    """Per-frame argmax of a (T, C) array or (detached or not) torch tensor."""
    if hasattr(scores, "detach"):
        scores = scores.detach().cpu().numpy()
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"expected scores of shape (T, C), got {scores.shape}")
    return scores.argmax(axis=-1).tolist()


def framewise_decode(scores: np.ndarray) -> list[int]:
    """Decode framewise class scores: per-frame argmax, then :func:`collapse_repeats`.

    Parameters
    ----------
    scores : array-like, shape (T, C)
        Logits, log-probabilities or probabilities (a torch tensor works too).

    Returns
    -------
    list of int
        The class sequence.
    """
    return [int(x) for x in collapse_repeats(_argmax(scores))]


def ctc_greedy_decode(scores: np.ndarray, blank: int = 0) -> list[int]:
    """Best-path CTC decoding: per-frame argmax, merge repeats, drop blanks.

    Parameters
    ----------
    scores : array-like, shape (T, C)
        Per-frame CTC outputs (a torch tensor works too).
    blank : int
        Index of the blank class.

    Returns
    -------
    list of int
        Non-blank labels; a label repeated across a blank is kept twice.
    """
    return [int(x) for x in collapse_repeats(_argmax(scores)) if x != blank]
