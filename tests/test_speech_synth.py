"""eSpeak NG / Flite synthesis and augmentation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tvm_bsp.speech import flite, synth
from tvm_bsp.speech.align import Alignment, fold_engine_phones
from tvm_bsp.speech.augment import (
    AugmentParams,
    add_noise,
    augment,
    change_speed,
    colored_noise,
    sample_params,
    speech_power,
)

needs_espeak = pytest.mark.skipif(
    not synth.espeak_available(), reason="libespeak-ng missing: scripts/setup_speech.sh"
)
needs_flite = pytest.mark.skipif(
    not flite.flite_available(), reason="flite missing: scripts/setup_speech.sh"
)


def _check_phones(s: synth.Synthesis) -> None:
    assert s.sample_rate == 16000 and s.audio.dtype == np.float32
    assert 0.01 < np.abs(s.audio).max() < 1.1  # resampling may overshoot full scale a little
    starts = [a for _, a, _ in s.phones]
    ends = [b for _, _, b in s.phones]
    assert starts == sorted(starts) and all(a <= b for _, a, b in s.phones)
    assert starts[1:] == ends[:-1]  # contiguous
    assert ends[-1] <= len(s.audio)


@needs_espeak
@pytest.mark.parametrize("voice", ["en-us", "en-gb-x-rp+m3", "en-gb-scotland+f2", "en-029+klatt4"])
def test_espeak_synthesis_and_folding(voice: str) -> None:
    with synth.EspeakEngine(private=True) as engine:
        s = engine.synthesize("the quick brown fox jumps", voice, rate=190, pitch=40)
    _check_phones(s)
    align = fold_engine_phones(s.phones, len(s.audio), "espeak", voice)
    align.validate()
    assert align.num_samples == len(s.audio)
    assert align.phones[0] == align.phones[-1] == "sil"
    assert {"k", "w", "b", "r", "f", "s"} <= set(align.phones)


@needs_espeak
def test_private_engines_reproduce_and_reject_unknown_voices() -> None:
    def run() -> list[np.ndarray]:
        with synth.EspeakEngine(private=True) as engine:
            return [engine.synthesize("one two three", "en-us").audio for _ in range(3)]

    first, second = run(), run()
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    with synth.EspeakEngine(private=True) as engine:
        with pytest.raises(ValueError):
            engine.synthesize("hello", "en-us+no-such-variant")
        assert set(synth.ESPEAK_VARIANTS) <= set(engine.variants())
    with pytest.raises(RuntimeError):
        engine.synthesize("hello")  # closed


@needs_flite
@pytest.mark.parametrize("voice", synth.FLITE_VOICES)
def test_flite_synthesis(voice: str) -> None:
    s = flite.flite_synthesize("a simple test", voice, duration_stretch=1.1)
    _check_phones(s)
    align = fold_engine_phones(s.phones, len(s.audio), "flite", voice)
    assert [p for p in align.phones if p != "sil"] == [
        "ah",
        "s",
        "ih",
        "m",
        "p",
        "ah",
        "l",
        "t",
        "eh",
        "s",
        "t",
    ]


def test_speed_noise_and_augment_keep_alignment() -> None:
    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal(16000)).astype(np.float32)
    align = Alignment(["sil", "s", "sil"], np.array([0, 4000, 12000, 16000]))
    assert len(change_speed(audio, 1.1)) == math.ceil(16000 * 20 / 22)
    assert len(change_speed(audio, 0.9)) == math.ceil(16000 * 20 / 18)
    noise = colored_noise(10001, "pink", rng)
    assert noise.shape == (10001,) and np.mean(noise**2) == pytest.approx(1.0)
    clean = np.zeros(16000, np.float32)
    clean[4000:12000] = 0.5
    noisy = add_noise(clean, 10.0, "white", rng, speech_power(clean, align))
    assert 10 * np.log10(0.25 / np.mean((noisy - clean) ** 2)) == pytest.approx(10.0, abs=0.3)
    for _ in range(20):
        params = sample_params(rng, probability=0.8)
        out, new = augment(audio, align, params)
        new.validate()
        assert new.num_samples == len(out)
        assert np.abs(out).max() == pytest.approx(params.peak, rel=1e-5)
        assert AugmentParams.from_json(params.to_json()).to_json() == params.to_json()
    out, new = augment(audio, align, AugmentParams(speed=1.1, pad_before=0.1, pad_after=0.0))
    ratio = math.ceil(16000 * 20 / 22) / 16000  # boundaries scale with the signal length
    assert new.segments()[1] == ("s", 1600 + round(4000 * ratio), 1600 + round(12000 * ratio))
