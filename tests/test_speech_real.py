"""Real recordings from Debian's pocketsphinx-testdata with CMUdict references."""

from __future__ import annotations

import numpy as np
import pytest

from tvm_bsp.speech.phones import PHONES_39
from tvm_bsp.speech.real import (
    RealSpeechUnavailableError,
    load_real_utterances,
    real_recordings,
    real_speech_available,
    words_to_phones,
)


def test_missing_package_is_reported(tmp_path) -> None:
    assert not real_speech_available(tmp_path, tmp_path / "none.dict")
    with pytest.raises(RealSpeechUnavailableError):
        real_recordings(tmp_path)
    with pytest.raises(RealSpeechUnavailableError):
        load_real_utterances(tmp_path, tmp_path / "none.dict")


def test_words_to_phones() -> None:
    lexicon = {"ten": ("T", "EH1", "N"), "of": ("AH1", "V")}
    assert words_to_phones(["ten", "of"], lexicon) == ["sil", "t", "eh", "n", "ah", "v", "sil"]
    with pytest.raises(KeyError):
        words_to_phones(["eleven"], lexicon)


@pytest.mark.skipif(
    not real_speech_available(),
    reason="pocketsphinx-testdata / pocketsphinx-en-us missing: scripts/setup_speech.sh",
)
def test_real_utterances() -> None:
    utterances = load_real_utterances()
    assert len(utterances) == 12
    by_id = {u.id: u for u in utterances}
    assert by_id["cards-001"].phones == [
        "sil",
        "t",
        "eh",
        "n",
        "ah",
        "v",
        "k",
        "l",
        "ah",
        "b",
        "z",
        "sil",
    ]
    assert by_id["goforward"].text == "go forward ten meters"
    assert by_id["tidigits-dhd.2934z"].text == "two nine three four zero"
    for u in utterances:
        assert u.labels is None
        assert u.features.ndim == 2 and u.features.shape[1] == 39 and u.num_frames > 100
        assert np.isfinite(u.features).all()
        assert set(u.phones) <= set(PHONES_39)
    total = sum(u.num_frames for u in utterances) / 100
    assert 30 < total < 50  # seconds of real speech
