"""Signal augmentation of synthetic speech (numpy/scipy), keeping the phone alignment valid.

One utterance goes through :func:`augment`: speed change (resampling, phone boundaries
scaled), silence padding (``sil`` at both ends), reverberation with a synthetic
exponentially decaying impulse response, a band-pass filter, additive coloured noise at a
target SNR, and peak normalisation. Each step is also a function of its own. The random
choices live in :class:`AugmentParams` (drawn by :func:`sample_params`) so that a manifest
can record them and the same parameters give the same signal.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.fft import next_fast_len
from scipy.signal import butter, fftconvolve, resample_poly, sosfiltfilt

from tvm_bsp.speech.align import Alignment
from tvm_bsp.speech.phones import SILENCE

SPEEDS: tuple[float, ...] = (0.9, 0.95, 1.0, 1.05, 1.1)
"""Speed factors used by :func:`sample_params` (Kaldi-style speed perturbation)."""

NOISE_COLORS: tuple[str, ...] = ("white", "pink", "brown")
"""Noise spectra: flat, 1/f and 1/f^2 power."""


@dataclass(frozen=True)
class AugmentParams:
    """Parameters of one augmentation.

    Attributes
    ----------
    speed : float
        Tempo and pitch factor (> 1 is faster); a multiple of 0.05.
    pad_before, pad_after : float
        Silence added at each end, in seconds.
    rt60 : float
        Reverberation time in seconds (0: no reverberation).
    drr_db : float
        Direct-to-reverberant energy ratio of the impulse response in dB.
    band : tuple of float, optional
        Pass band ``(low, high)`` in Hz of a 4th-order Butterworth band-pass filter.
    snr_db : float, optional
        Signal-to-noise ratio (speech segments vs. noise) in dB; ``None``: no noise.
    noise_color : str
        One of :data:`NOISE_COLORS`.
    peak : float
        Final peak amplitude in ``(0, 1]``.
    seed : int
        Seed of the noise and of the impulse response.
    """

    speed: float = 1.0
    pad_before: float = 0.0
    pad_after: float = 0.0
    rt60: float = 0.0
    drr_db: float = 0.0
    band: tuple[float, float] | None = None
    snr_db: float | None = None
    noise_color: str = "white"
    peak: float = 0.9
    seed: int = 0

    def to_json(self) -> dict:
        """Return a JSON-ready dict (floats rounded to 4 decimals)."""
        out = {}
        for key, value in asdict(self).items():
            if isinstance(value, float):
                value = round(value, 4)
            elif isinstance(value, tuple):
                value = [round(v, 4) for v in value]
            out[key] = value
        return out

    @classmethod
    def from_json(cls, data: dict) -> AugmentParams:
        """Inverse of :meth:`to_json`."""
        data = dict(data)
        if data.get("band") is not None:
            data["band"] = tuple(data["band"])
        return cls(**data)


def sample_params(rng: np.random.Generator, probability: float = 0.5) -> AugmentParams:
    """Draw augmentation parameters.

    Parameters
    ----------
    rng : numpy.random.Generator
        Random source.
    probability : float
        Chance of each of speed change, reverberation, band limiting; noise is added with
        probability ``min(1, 1.2 * probability)``.

    Returns
    -------
    AugmentParams
        Speed from :data:`SPEEDS`, 0.05-0.4 s padding, RT60 0.15-0.7 s with DRR 0-12 dB,
        band 50-300 Hz to 3.4-7.6 kHz, SNR 5-30 dB, peak 0.3-0.95.
    """
    speed = float(rng.choice(SPEEDS)) if rng.random() < probability else 1.0
    pad_before, pad_after = rng.uniform(0.05, 0.4, size=2)
    reverb = rng.random() < probability
    rt60, drr = (
        (float(rng.uniform(0.15, 0.7)), float(rng.uniform(0.0, 12.0))) if reverb else (0.0, 0.0)
    )
    band = (
        (float(rng.uniform(50, 300)), float(rng.uniform(3400, 7600)))
        if rng.random() < probability
        else None
    )
    noisy = rng.random() < min(1.0, 1.2 * probability)
    snr = float(rng.uniform(5.0, 30.0)) if noisy else None
    color = str(rng.choice(NOISE_COLORS))
    return AugmentParams(
        speed=speed,
        pad_before=float(pad_before),
        pad_after=float(pad_after),
        rt60=rt60,
        drr_db=drr,
        band=band,
        snr_db=snr,
        noise_color=color,
        peak=float(rng.uniform(0.3, 0.95)),
        seed=int(rng.integers(0, 2**31 - 1)),
    )


def change_speed(audio: np.ndarray, speed: float) -> np.ndarray:
    """Resample so the signal plays ``speed`` times faster (tempo and pitch change).

    ``speed`` is rounded to a multiple of 0.05; the output has about ``len / speed`` samples.
    """
    down = round(20 * speed)
    if down <= 0:
        raise ValueError(f"bad speed {speed}")
    if down == 20:
        return np.asarray(audio, dtype=np.float32)
    return resample_poly(np.asarray(audio, np.float64), 20, down).astype(np.float32)


def impulse_response(
    rt60: float, drr_db: float, rng: np.random.Generator, sample_rate: int
) -> np.ndarray:
    """Synthetic room impulse response: a unit direct path and a decaying noise tail.

    The tail is Gaussian noise with envelope ``10 ** (-3 t / rt60)`` (-60 dB at ``rt60``),
    at most 1 s long, scaled so that direct / tail energy is ``drr_db``.
    """
    length = max(2, int(min(1.2 * rt60, 1.0) * sample_rate))
    t = np.arange(length) / sample_rate
    tail = rng.standard_normal(length) * 10.0 ** (-3.0 * t / rt60)
    tail[0] = 0.0
    tail *= np.sqrt(10.0 ** (-drr_db / 10.0) / np.sum(tail**2))
    tail[0] = 1.0
    return tail


def reverberate(
    audio: np.ndarray, rt60: float, drr_db: float, rng: np.random.Generator, sample_rate: int
) -> np.ndarray:
    """Convolve with :func:`impulse_response`; the output keeps the input's length."""
    ir = impulse_response(rt60, drr_db, rng, sample_rate)
    return fftconvolve(audio, ir)[: len(audio)].astype(np.float32)


def band_limit(audio: np.ndarray, low: float, high: float, sample_rate: int) -> np.ndarray:
    """Zero-phase 4th-order Butterworth band-pass (phone boundaries do not move)."""
    high = min(high, 0.49 * sample_rate)
    sos = butter(4, [low, high], btype="bandpass", fs=sample_rate, output="sos")
    return sosfiltfilt(sos, audio).astype(np.float32)


def colored_noise(length: int, color: str, rng: np.random.Generator) -> np.ndarray:
    """Unit-power noise with a flat (white), 1/f (pink) or 1/f^2 (brown) power spectrum."""
    if color == "white":
        noise = rng.standard_normal(length)
    else:
        exponent = {"pink": 0.5, "brown": 1.0}.get(color)
        if exponent is None:
            raise ValueError(f"unknown noise color {color!r}")
        size = next_fast_len(length, real=True)
        spec = np.fft.rfft(rng.standard_normal(size))
        freqs = np.arange(len(spec), dtype=np.float64)
        freqs[0] = 1.0
        noise = np.fft.irfft(spec / freqs**exponent, n=size)[:length]
    return noise / np.sqrt(np.mean(noise**2) + 1e-20)


def add_noise(
    audio: np.ndarray,
    snr_db: float,
    color: str,
    rng: np.random.Generator,
    signal_power: float | None = None,
) -> np.ndarray:
    """Add noise at ``snr_db`` relative to ``signal_power`` (default: mean power of ``audio``)."""
    power = (
        float(np.mean(np.square(audio, dtype=np.float64))) if signal_power is None else signal_power
    )
    noise = colored_noise(len(audio), color, rng) * np.sqrt(power / 10.0 ** (snr_db / 10.0))
    return (audio + noise).astype(np.float32)


def speech_power(audio: np.ndarray, alignment: Alignment) -> float:
    """Mean power of the samples inside non-``sil`` segments (whole signal if none)."""
    mask = np.zeros(len(audio), dtype=bool)
    for phone, start, end in alignment.segments():
        if phone != SILENCE:
            mask[start:end] = True
    chosen = audio[mask] if mask.any() else audio
    return float(np.mean(np.square(chosen, dtype=np.float64))) if len(chosen) else 0.0


def augment(
    audio: np.ndarray, alignment: Alignment, params: AugmentParams, sample_rate: int = 16000
) -> tuple[np.ndarray, Alignment]:
    """Apply all steps of ``params`` to one utterance.

    Parameters
    ----------
    audio : numpy.ndarray
        float32 signal in ``[-1, 1]``.
    alignment : Alignment
        Its phone alignment (covering ``len(audio)`` samples).
    params : AugmentParams
        What to do.
    sample_rate : int
        Sampling rate in Hz.

    Returns
    -------
    (numpy.ndarray, Alignment)
        The new signal (peak ``params.peak``) and its alignment.
    """
    rng = np.random.default_rng(params.seed)
    out = change_speed(audio, params.speed)
    align = alignment.scaled(len(out)) if len(out) != len(audio) else alignment
    before = round(params.pad_before * sample_rate)
    after = round(params.pad_after * sample_rate)
    out = np.concatenate([np.zeros(before, np.float32), out, np.zeros(after, np.float32)])
    align = align.padded(before, after)
    if params.rt60 > 0:
        out = reverberate(out, params.rt60, params.drr_db, rng, sample_rate)
    if params.band is not None:
        out = band_limit(out, params.band[0], params.band[1], sample_rate)
    if params.snr_db is not None:
        power = speech_power(out, align)
        out = add_noise(out, params.snr_db, params.noise_color, rng, power if power > 0 else None)
    peak = float(np.max(np.abs(out))) if len(out) else 0.0
    if peak > 0:
        out = out * np.float32(params.peak / peak)
    return out.astype(np.float32), align
