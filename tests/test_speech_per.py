"""Edit distance, PER and decoding on hand-checked examples."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tvm_bsp.speech.per import (
    EditCounts,
    collapse_repeats,
    ctc_greedy_decode,
    edit_counts,
    edit_distance,
    framewise_decode,
    phone_error_rate,
)


@pytest.mark.parametrize(
    ("ref", "hyp", "dist"),
    [
        ("kitten", "sitting", 3),  # k->s, e->i, +g
        ("flaw", "lawn", 2),  # -f, +n
        ("", "abc", 3),
        ("abc", "", 3),
        ("abc", "abc", 0),
        (["sil", "k", "ae", "t", "sil"], ["sil", "k", "ah", "t", "sil"], 1),
        (["dh", "ah", "k", "ae", "t"], ["ah", "k", "ae", "t", "s"], 2),  # -dh, +s
        (["a", "b", "c", "d"], ["d", "c", "b", "a"], 4),
    ],
)
def test_edit_distance_examples(ref, hyp, dist) -> None:
    assert edit_distance(ref, hyp) == dist
    assert edit_counts(ref, hyp).errors == dist


def test_edit_counts_kinds() -> None:
    assert edit_counts("kitten", "sitting") == EditCounts(2, 0, 1, 6)
    assert edit_counts(["a", "b", "c"], ["a", "c"]) == EditCounts(0, 1, 0, 3)
    assert edit_counts(["a", "c"], ["a", "b", "c"]) == EditCounts(0, 0, 1, 2)


def _dp(a, b) -> int:
    d = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            d[i][j] = min(
                d[i - 1][j - 1] + (a[i - 1] != b[j - 1]), d[i - 1][j] + 1, d[i][j - 1] + 1
            )
    return d[-1][-1]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 4), max_size=12), st.lists(st.integers(0, 4), max_size=12))
def test_edit_distance_matches_plain_dp(a, b) -> None:
    assert edit_distance(a, b) == _dp(a, b) == edit_distance(b, a)
    assert edit_counts(a, b).errors == _dp(a, b)


def test_phone_error_rate_is_corpus_level() -> None:
    refs = [["a", "b", "c", "d"], ["a", "b"]]
    hyps = [["a", "x", "c", "d"], ["b"]]
    # 1 substitution + 1 deletion over 6 reference phones (not the mean of 1/4 and 1/2)
    assert phone_error_rate(refs, hyps) == pytest.approx(2 / 6)
    assert phone_error_rate([["sil", "a", "sil"]], [["a"]], ignore=("sil",)) == 0.0
    assert phone_error_rate([["a"]], [["b", "c", "d"]]) == 3.0
    with pytest.raises(ValueError):
        phone_error_rate([["a"]], [])
    with pytest.raises(ValueError):
        phone_error_rate([[]], [["a"]])


def test_collapse_and_decoders() -> None:
    assert collapse_repeats([3, 3, 1, 1, 1, 3, 2, 2]) == [3, 1, 3, 2]
    assert collapse_repeats([]) == []
    frames = np.eye(4)[[1, 1, 2, 2, 2, 1, 3]]
    assert framewise_decode(frames) == [1, 2, 1, 3]
    # CTC: blank 0 separates a repeated label; repeats without blank merge
    ctc = np.eye(4)[[0, 1, 1, 0, 1, 2, 2, 0, 0, 3]]
    assert ctc_greedy_decode(ctc, blank=0) == [1, 1, 2, 3]
    assert ctc_greedy_decode(torch.tensor(ctc, requires_grad=True), blank=0) == [1, 1, 2, 3]
    assert ctc_greedy_decode(np.eye(4)[[3, 3, 3]], blank=3) == []
    with pytest.raises(ValueError):
        ctc_greedy_decode(np.zeros(5))
