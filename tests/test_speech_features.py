"""Kaldi-compatible features against an independent numpy/scipy implementation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.fft
import torch

from tvm_bsp.speech import features as F


def _reference_fbank_mfcc(x: np.ndarray, num_bins: int, num_ceps: int = 13):
    """Kaldi's recipe frame by frame in float64 (feature-window.cc, mel-computations.cc)."""
    sr, length, shift, nfft = 16000, 400, 160, 512
    count = 1 + (len(x) - length) // shift
    # mel filters from the formulas, bin by bin
    mel = lambda f: 1127.0 * math.log(1.0 + f / 700.0)  # noqa: E731
    lo, hi = mel(20.0), mel(8000.0)
    delta = (hi - lo) / (num_bins + 1)
    banks = np.zeros((num_bins, nfft // 2))
    for b in range(num_bins):
        left, center, right = lo + b * delta, lo + (b + 1) * delta, lo + (b + 2) * delta
        for i in range(nfft // 2):
            m = mel(i * sr / nfft)
            if left < m <= center:
                banks[b, i] = (m - left) / (center - left)
            elif center < m < right:
                banks[b, i] = (right - m) / (right - center)
    window = np.array(
        [(0.5 - 0.5 * math.cos(2 * math.pi * n / (length - 1))) ** 0.85 for n in range(length)]
    )
    eps = np.finfo(np.float32).eps
    log_mel, log_energy = [], []
    for t in range(count):
        frame = x[t * shift : t * shift + length].astype(np.float64)
        frame = frame - frame.mean()
        log_energy.append(math.log(max(float(np.dot(frame, frame)), eps)))
        emph = frame.copy()
        for i in range(length - 1, 0, -1):
            emph[i] -= 0.97 * emph[i - 1]
        emph[0] -= 0.97 * emph[0]
        spec = np.abs(np.fft.rfft(emph * window, n=nfft)) ** 2
        log_mel.append(np.log(np.maximum(banks @ spec[: nfft // 2], eps)))
    log_mel = np.array(log_mel)
    ceps = scipy.fft.dct(log_mel, type=2, norm="ortho", axis=1)[:, :num_ceps]
    lifter = 1 + 11.0 * np.sin(np.pi * np.arange(num_ceps) / 22.0)
    ceps = ceps * lifter
    ceps[:, 0] = log_energy
    return log_mel, ceps


def _reference_deltas(x: np.ndarray) -> np.ndarray:
    """Kaldi's add-deltas: order 1 is the 5-tap regression window, order 2 that window
    convolved with itself (9 taps), both applied once to edge-clamped static frames."""
    T = len(x)
    w = np.arange(-2, 3) / 10.0
    ww = np.convolve(w, w)
    d1 = np.array(
        [sum(w[k + 2] * x[min(max(t + k, 0), T - 1)] for k in range(-2, 3)) for t in range(T)]
    )
    d2 = np.array(
        [sum(ww[k + 4] * x[min(max(t + k, 0), T - 1)] for k in range(-4, 5)) for t in range(T)]
    )
    return np.concatenate([x, d1, d2], axis=1)


@pytest.fixture(scope="module")
def signal() -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(8000) / 16000
    chirp = 3000 * np.sin(2 * np.pi * (200 + 1500 * t) * t)
    return (chirp + 300 * rng.standard_normal(t.shape)).astype(np.float32).round()


@pytest.mark.parametrize("num_bins", [23, 40])
def test_fbank_matches_reference(signal: np.ndarray, num_bins: int) -> None:
    ref, _ = _reference_fbank_mfcc(signal, num_bins)
    got = F.fbank(signal, num_mel_bins=num_bins).numpy()
    assert got.shape == ref.shape == (F.num_frames(len(signal)), num_bins)
    np.testing.assert_allclose(got, ref, rtol=0, atol=2e-3)


def test_mfcc_matches_reference(signal: np.ndarray) -> None:
    _, ref = _reference_fbank_mfcc(signal, 23)
    got = F.mfcc(signal).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=3e-3)


def test_deltas_and_cmvn_match_reference(signal: np.ndarray) -> None:
    _, ceps = _reference_fbank_mfcc(signal, 23)
    ref = _reference_deltas(ceps)
    ref = (ref - ref.mean(0)) / ref.std(0)
    got = F.mfcc_39(signal).numpy()
    assert got.shape == (len(ceps), 39)
    np.testing.assert_allclose(got, ref, atol=2e-3)
    np.testing.assert_allclose(got.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(got.std(0), 1, atol=1e-4)


@pytest.mark.parametrize("freq", [300.0, 1000.0, 3000.0])
def test_pure_tone_peaks_in_its_mel_bin(freq: float) -> None:
    t = np.arange(16000) / 16000
    tone = (10000 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    feats = F.fbank(tone, num_mel_bins=40).numpy()
    # centre of filter b is lo + (b + 1) * delta on the mel scale
    lo, hi = F.mel_scale(20.0), F.mel_scale(8000.0)
    centers = lo + (np.arange(40) + 1) * (hi - lo) / 41
    expected = int(np.argmin(np.abs(centers - F.mel_scale(freq))))
    assert set(feats.argmax(axis=1).tolist()) == {expected}


def test_frame_count_and_short_input() -> None:
    assert F.num_frames(399) == 0
    assert F.num_frames(400) == 1
    assert F.num_frames(16000) == 98
    assert F.mfcc_39(np.zeros(100, np.float32)).shape == (0, 39)
    assert F.compute_features(np.ones(16000, np.float32), "fbank").shape == (98, 40)
    with pytest.raises(ValueError):
        F.compute_features(np.ones(16000, np.float32), "plp")


def test_dither_is_seeded() -> None:
    x = np.zeros(4000, np.float32)
    a = F.fbank(x, dither=1.0, generator=torch.Generator().manual_seed(1))
    b = F.fbank(x, dither=1.0, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert torch.isfinite(F.fbank(x)).all()
