"""Folding engine phones into contiguous 39-class segments, and frame labels."""

from __future__ import annotations

import numpy as np
import pytest

from tvm_bsp.speech.align import Alignment, fold_engine_phones
from tvm_bsp.speech.phones import PHONE_TO_ID


def test_espeak_events_fold_with_marks_and_zero_length() -> None:
    events = [
        ("D", 100, 400),
        ("@", 400, 700),
        ("i", 700, 1000),
        (";", 1000, 1300),  # palatal mark: no phone, audio to "i"
        ("@L", 1300, 1900),  # two phones, split in halves
        ("l", 1900, 1900),  # zero length: takes the last third of the previous phone
        ("t", 1900, 2200),
        ("?", 2200, 2300),  # glottal stop: deleted, audio to "t"
        ("_:", 2300, 2500),
        ("_", 2500, 2500),
    ]
    align = fold_engine_phones(events, 2600, "espeak", "en-us")
    align.validate()
    assert align.segments() == [
        ("sil", 0, 100),
        ("dh", 100, 400),
        ("ah", 400, 700),
        ("iy", 700, 1300),
        ("ah", 1300, 1500),  # "@L" after giving its last third (200) to "l"
        ("l", 1500, 1700),
        ("l", 1700, 1900),
        ("t", 1900, 2300),
        ("sil", 2300, 2600),
    ]


def test_rhotic_vowel_before_r_merges_r() -> None:
    events = [("k", 0, 100), ("A@", 100, 500), ("r", 500, 600), ("i", 600, 800)]
    align = fold_engine_phones(events, 800, "espeak", "en-us")
    assert align.segments() == [("k", 0, 100), ("aa", 100, 300), ("r", 300, 600), ("iy", 600, 800)]


def test_flite_phones_fold_and_clip() -> None:
    events = [("pau", 0, 50), ("hh", 50, 90), ("ax", 90, 150), ("l", 150, 200), ("pau", 200, 400)]
    align = fold_engine_phones(events, 300, "flite")  # the last pause overruns the audio
    assert align.segments() == [
        ("sil", 0, 50),
        ("hh", 50, 90),
        ("ah", 90, 150),
        ("l", 150, 200),
        ("sil", 200, 300),
    ]
    with pytest.raises(ValueError):
        fold_engine_phones(events, 300, "festival")


def test_scaled_padded_and_frame_labels() -> None:
    align = Alignment(["sil", "s", "iy", "sil"], np.array([0, 400, 1200, 2000, 2400]))
    padded = align.padded(160, 320)
    assert padded.segments() == [
        ("sil", 0, 560),
        ("s", 560, 1360),
        ("iy", 1360, 2160),
        ("sil", 2160, 2880),
    ]
    half = align.scaled(1200)
    assert half.segments() == [
        ("sil", 0, 200),
        ("s", 200, 600),
        ("iy", 600, 1000),
        ("sil", 1000, 1200),
    ]
    # frame t covers [160 t, 160 t + 400); its label is the phone at sample 160 t + 200
    labels = align.frame_labels(13)
    centres = np.arange(13) * 160 + 200
    expected = [
        PHONE_TO_ID["sil" if c < 400 or c >= 2000 else ("s" if c < 1200 else "iy")] for c in centres
    ]
    assert labels.tolist() == expected
    assert Alignment.from_segments(align.segments()).segments() == align.segments()
    with pytest.raises(ValueError):
        Alignment.from_segments([("s", 0, 10), ("t", 11, 20)])
