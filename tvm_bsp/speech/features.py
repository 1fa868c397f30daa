"""Kaldi-compatible log-mel filterbank and MFCC features in plain torch.

The computation follows Kaldi's ``compute-fbank-feats`` / ``compute-mfcc-feats`` with their
default options, except that dither defaults to 0 (deterministic features):

1. frames of 25 ms every 10 ms, only whole frames (``snip_edges``): ``1 + (N - 400) // 160``
   frames at 16 kHz;
2. per frame: remove the DC offset (subtract the frame mean); the raw log energy
   ``log(max(sum(x^2), eps))`` is taken here (MFCC's c0 replacement);
3. pre-emphasis ``x[i] -= 0.97 x[i-1]`` (``x[0] -= 0.97 x[0]``);
4. the "povey" window ``(0.5 - 0.5 cos(2 pi n / (L - 1))) ** 0.85``;
5. zero padding to the next power of two (512), power spectrum ``|FFT|^2``;
6. triangular mel filters, equally spaced on ``mel(f) = 1127 ln(1 + f / 700)`` between
   20 Hz and Nyquist, applied to the first 256 FFT bins; ``log(max(energy, eps))`` with
   ``eps`` the float32 machine epsilon;
7. MFCC only: orthonormal DCT-II of the log-mel energies, first 13 coefficients, cepstral
   liftering ``c_i *= 1 + 11 sin(pi i / 22)``, and c0 replaced by the raw log energy.

Kaldi reads 16-bit audio as floats in the int16 range; pass waveforms in that scale
(``int16_samples.astype(float32)``) to get Kaldi's numbers. Per-utterance CMVN (:func:`cmvn`)
removes the difference for everything but the floors.

``add_deltas`` matches Kaldi's ``add-deltas`` (window 2, order 2, edge frames replicated),
and :func:`mfcc_39` / :func:`compute_features` give the feature vectors used for training:
13 MFCC + deltas + delta-deltas = 39 dims, or 40 log-mel bins, each with per-utterance
mean and variance normalisation.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

SAMPLE_RATE = 16000
FRAME_LENGTH = 400  # 25 ms at 16 kHz
FRAME_SHIFT = 160  # 10 ms at 16 kHz
_EPS = float(torch.finfo(torch.float32).eps)

FEATURE_DIMS: dict[str, int] = {"mfcc": 39, "fbank": 40}
"""Feature kinds of :func:`compute_features` and their dimensions."""


def num_frames(
    num_samples: int, frame_length: int = FRAME_LENGTH, frame_shift: int = FRAME_SHIFT
) -> int:
    """Return the number of whole frames Kaldi cuts from ``num_samples`` (``snip_edges``).

    Parameters
    ----------
    num_samples : int
        Signal length.
    frame_length, frame_shift : int
        Window and hop in samples.

    Returns
    -------
    int
        ``1 + (num_samples - frame_length) // frame_shift``, or 0 for a shorter signal.
    """
    if num_samples < frame_length:
        return 0
    return 1 + (num_samples - frame_length) // frame_shift


def mel_scale(freq: float | np.ndarray) -> float | np.ndarray:
    """Kaldi's mel scale ``1127 ln(1 + f / 700)``."""
    return 1127.0 * np.log(1.0 + np.asarray(freq, dtype=np.float64) / 700.0)


def mel_banks(
    num_bins: int,
    padded_length: int = 512,
    sample_rate: int = SAMPLE_RATE,
    low_freq: float = 20.0,
    high_freq: float = 0.0,
) -> torch.Tensor:
    """Return Kaldi's triangular mel filters as a ``(num_bins, padded_length // 2)`` matrix.

    Parameters
    ----------
    num_bins : int
        Number of mel filters (Kaldi's default is 23; 40 is common for filterbanks).
    padded_length : int
        FFT size; the filters cover bins ``0 .. padded_length // 2 - 1`` (no Nyquist bin).
    sample_rate : int
        Sampling rate in Hz.
    low_freq : float
        Lower edge of the first filter in Hz.
    high_freq : float
        Upper edge of the last filter; ``<= 0`` means ``Nyquist + high_freq``.

    Returns
    -------
    torch.Tensor
        float32 weights.
    """
    nyquist = 0.5 * sample_rate
    if high_freq <= 0.0:
        high_freq += nyquist
    if not 0.0 <= low_freq < high_freq <= nyquist:
        raise ValueError(f"bad mel range: low_freq={low_freq}, high_freq={high_freq}")
    mel_low, mel_high = mel_scale(low_freq), mel_scale(high_freq)
    delta = (mel_high - mel_low) / (num_bins + 1)
    left = mel_low + delta * np.arange(num_bins)[:, None]
    center, right = left + delta, left + 2 * delta
    mel = mel_scale(np.arange(padded_length // 2) * sample_rate / padded_length)[None, :]
    up = (mel - left) / (center - left)
    down = (right - mel) / (right - center)
    weights = np.where((mel > left) & (mel < right), np.where(mel <= center, up, down), 0.0)
    return torch.from_numpy(weights.astype(np.float32))


def dct_matrix(num_ceps: int, num_bins: int) -> torch.Tensor:
    """Return the first ``num_ceps`` rows of the orthonormal DCT-II of size ``num_bins``.

    Returns
    -------
    torch.Tensor
        float32 ``(num_ceps, num_bins)``; row ``k`` is
        ``sqrt(2 / N) cos(pi k (n + 0.5) / N)``, row 0 scaled to ``sqrt(1 / N)``.
    """
    n = np.arange(num_bins) + 0.5
    k = np.arange(num_ceps)[:, None]
    mat = np.sqrt(2.0 / num_bins) * np.cos(np.pi * k * n / num_bins)
    mat[0] = np.sqrt(1.0 / num_bins)
    return torch.from_numpy(mat.astype(np.float32))


def _frame_sizes(sample_rate: int, length: int | None, shift: int | None) -> tuple[int, int]:
    """Default window (25 ms) and hop (10 ms) in samples at ``sample_rate``."""
    length = round(0.025 * sample_rate) if length is None else int(length)
    shift = round(0.010 * sample_rate) if shift is None else int(shift)
    if length < 2 or shift < 1:
        raise ValueError(f"bad framing: frame_length={length}, frame_shift={shift}")
    return length, shift


def _as_tensor(waveform: np.ndarray | torch.Tensor) -> torch.Tensor:
    x = torch.as_tensor(waveform)
    if x.ndim != 1:
        raise ValueError(f"expected a 1-D waveform, got shape {tuple(x.shape)}")
    return x.to(torch.float32)


def _frames(
    waveform: np.ndarray | torch.Tensor,
    frame_length: int,
    frame_shift: int,
    preemphasis: float,
    dither: float,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut, dither, de-mean, pre-emphasise and window frames; also return raw log energy."""
    x = _as_tensor(waveform)
    count = num_frames(x.shape[0], frame_length, frame_shift)
    if count == 0:
        return torch.zeros(0, frame_length), torch.zeros(0)
    frames = x.unfold(0, frame_length, frame_shift)[:count].clone()
    if dither != 0.0:
        frames += dither * torch.randn(frames.shape, generator=generator)
    frames -= frames.mean(dim=1, keepdim=True)
    log_energy = torch.log(torch.clamp(frames.pow(2).sum(dim=1), min=_EPS))
    if preemphasis != 0.0:
        shifted = torch.cat([frames[:, :1], frames[:, :-1]], dim=1)
        frames = frames - preemphasis * shifted
    n = torch.arange(frame_length, dtype=torch.float64)
    window = (0.5 - 0.5 * torch.cos(2 * math.pi * n / (frame_length - 1))).pow(0.85)
    return frames * window.to(torch.float32), log_energy


def _log_mel(
    frames: torch.Tensor, num_mel_bins: int, sample_rate: int, low_freq: float, high_freq: float
) -> torch.Tensor:
    padded = 1 << (frames.shape[1] - 1).bit_length()
    if frames.shape[0] == 0:
        return torch.zeros(0, num_mel_bins)
    power = torch.fft.rfft(frames, n=padded).abs().pow(2)[:, : padded // 2]
    banks = mel_banks(num_mel_bins, padded, sample_rate, low_freq, high_freq)
    return torch.log(torch.clamp(power @ banks.T, min=_EPS))


def fbank(
    waveform: np.ndarray | torch.Tensor,
    num_mel_bins: int = 23,
    sample_rate: int = SAMPLE_RATE,
    frame_length: int | None = None,
    frame_shift: int | None = None,
    preemphasis: float = 0.97,
    dither: float = 0.0,
    low_freq: float = 20.0,
    high_freq: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Kaldi log-mel filterbank energies.

    Parameters
    ----------
    waveform : array-like, shape (N,)
        Mono signal, ideally in the int16 range.
    num_mel_bins : int
        Number of mel filters (23 as Kaldi's default, or 40).
    sample_rate : int
        Sampling rate in Hz.
    frame_length, frame_shift : int, optional
        Window and hop in samples; by default 25 ms and 10 ms at ``sample_rate``.
    preemphasis : float
        Pre-emphasis coefficient.
    dither : float
        Standard deviation of Gaussian dither added to each frame (0: none).
    low_freq, high_freq : float
        Mel range in Hz (``high_freq <= 0``: relative to Nyquist).
    generator : torch.Generator, optional
        Random source for the dither.

    Returns
    -------
    torch.Tensor
        float32 ``(num_frames(N), num_mel_bins)``.
    """
    frame_length, frame_shift = _frame_sizes(sample_rate, frame_length, frame_shift)
    frames, _ = _frames(waveform, frame_length, frame_shift, preemphasis, dither, generator)
    return _log_mel(frames, num_mel_bins, sample_rate, low_freq, high_freq)


def mfcc(
    waveform: np.ndarray | torch.Tensor,
    num_ceps: int = 13,
    num_mel_bins: int = 23,
    cepstral_lifter: float = 22.0,
    use_energy: bool = True,
    sample_rate: int = SAMPLE_RATE,
    frame_length: int | None = None,
    frame_shift: int | None = None,
    preemphasis: float = 0.97,
    dither: float = 0.0,
    low_freq: float = 20.0,
    high_freq: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Kaldi MFCCs.

    Parameters
    ----------
    waveform : array-like, shape (N,)
        Mono signal, ideally in the int16 range.
    num_ceps : int
        Number of cepstral coefficients kept.
    num_mel_bins : int
        Number of mel filters.
    cepstral_lifter : float
        Lifter coefficient ``L`` (``c_i *= 1 + L / 2 sin(pi i / L)``; 0 disables).
    use_energy : bool
        Replace c0 by the raw log energy of the frame.
    sample_rate, frame_length, frame_shift, preemphasis, dither, low_freq, high_freq, generator
        As in :func:`fbank`.

    Returns
    -------
    torch.Tensor
        float32 ``(num_frames(N), num_ceps)``.
    """
    frame_length, frame_shift = _frame_sizes(sample_rate, frame_length, frame_shift)
    frames, log_energy = _frames(
        waveform, frame_length, frame_shift, preemphasis, dither, generator
    )
    log_mel = _log_mel(frames, num_mel_bins, sample_rate, low_freq, high_freq)
    ceps = log_mel @ dct_matrix(num_ceps, num_mel_bins).T
    if cepstral_lifter != 0.0:
        i = torch.arange(num_ceps, dtype=torch.float64)
        lifter = 1.0 + 0.5 * cepstral_lifter * torch.sin(math.pi * i / cepstral_lifter)
        ceps = ceps * lifter.to(torch.float32)
    if use_energy:
        ceps[:, 0] = log_energy
    return ceps


def delta_filters(order: int = 2, window: int = 2) -> list[np.ndarray]:
    """Return Kaldi's delta filters for orders ``0..order`` (order 0 is ``[1]``).

    Order ``k`` is the order ``k - 1`` filter convolved with ``[-w, ..., w] / (2 sum n^2)``.
    """
    base = np.arange(-window, window + 1, dtype=np.float64)
    base /= np.sum(base**2)
    filters = [np.ones(1)]
    for _ in range(order):
        filters.append(np.convolve(filters[-1], base))
    return filters


def add_deltas(features: torch.Tensor, order: int = 2, window: int = 2) -> torch.Tensor:
    """Append delta (and delta-delta, ...) features, as Kaldi's ``add-deltas``.

    Parameters
    ----------
    features : torch.Tensor, shape (T, D)
        Static features.
    order : int
        Highest derivative order.
    window : int
        Half-width of the regression window.

    Returns
    -------
    torch.Tensor
        ``(T, D * (order + 1))``; frames beyond the edges repeat the first/last frame.
    """
    feats = torch.as_tensor(features, dtype=torch.float32)
    frames = feats.shape[0]
    outputs = [feats]
    for filt in delta_filters(order, window)[1:]:
        half = len(filt) // 2
        idx = torch.clamp(
            torch.arange(frames)[:, None] + torch.arange(-half, half + 1), 0, max(frames - 1, 0)
        )
        weights = torch.from_numpy(filt.astype(np.float32))
        outputs.append(torch.einsum("tkd,k->td", feats[idx], weights) if frames else feats.clone())
    return torch.cat(outputs, dim=1)


def cmvn(features: torch.Tensor, norm_vars: bool = True, floor: float = 1e-10) -> torch.Tensor:
    """Per-utterance cepstral mean (and variance) normalisation.

    Parameters
    ----------
    features : torch.Tensor, shape (T, D)
        Features of one utterance.
    norm_vars : bool
        Also scale each dimension to unit variance.
    floor : float
        Lower bound of the variance.

    Returns
    -------
    torch.Tensor
        Normalised features (population statistics, as Kaldi's ``apply-cmvn``).
    """
    feats = torch.as_tensor(features, dtype=torch.float32)
    if feats.shape[0] == 0:
        return feats.clone()
    stats = feats.to(torch.float64)
    mean = stats.mean(dim=0)
    out = stats - mean
    if norm_vars:
        var = torch.clamp((stats**2).mean(dim=0) - mean**2, min=floor)
        out = out / var.sqrt()
    return out.to(torch.float32)


def mfcc_39(waveform: np.ndarray | torch.Tensor, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """13 MFCC (c0 = log energy) + deltas + delta-deltas with per-utterance CMVN.

    Parameters
    ----------
    waveform : array-like, shape (N,)
        Mono signal in the int16 range.
    sample_rate : int
        Sampling rate in Hz.

    Returns
    -------
    torch.Tensor
        float32 ``(num_frames(N), 39)``.
    """
    return cmvn(add_deltas(mfcc(waveform, sample_rate=sample_rate)))


@contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one intra-op thread inside the block (restored afterwards).

    Per-utterance feature extraction works on small tensors; on a busy machine torch's
    thread pool then spends far more time waiting than computing (30x slower seen).
    """
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def compute_features(
    waveform: np.ndarray | torch.Tensor, kind: str = "mfcc", sample_rate: int = SAMPLE_RATE
) -> np.ndarray:
    """Compute training features of one utterance.

    Parameters
    ----------
    waveform : array-like, shape (N,)
        Mono signal in the int16 range.
    kind : {"mfcc", "fbank"}
        ``"mfcc"``: :func:`mfcc_39`; ``"fbank"``: 40 log-mel bins with per-utterance CMVN.
    sample_rate : int
        Sampling rate in Hz.

    Returns
    -------
    numpy.ndarray
        float32 ``(num_frames(N), FEATURE_DIMS[kind])``.
    """
    if kind not in FEATURE_DIMS:
        raise ValueError(f"unknown feature kind {kind!r}; expected one of {sorted(FEATURE_DIMS)}")
    with single_thread():
        if kind == "mfcc":
            feats = mfcc_39(waveform, sample_rate)
        else:
            feats = cmvn(fbank(waveform, num_mel_bins=40, sample_rate=sample_rate))
    return feats.numpy()
