"""WAV input of ``tvm-bsp deploy --wav``: read 16-bit PCM, resample to 16 kHz, MFCC-39.

Files at another rate (espeak-ng writes 22050 Hz) are resampled to the models' 16 kHz with a
note on stderr, using ``soxr`` when it is installed and ``scipy.signal.resample_poly``
otherwise. All checks happen before anything is compiled.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

__all__ = ["read_wav", "resample", "wav_features", "wav_samples"]


def read_wav(path: Path) -> tuple[Any, int]:
    """Read a 16-bit PCM WAV as an int16-range float array (channels averaged) and its rate."""
    import wave

    import numpy as np

    if not path.is_file():
        raise FileNotFoundError(f"no WAV file at {path}")
    try:
        with wave.open(str(path), "rb") as w:
            width, channels, rate = w.getsampwidth(), w.getnchannels(), w.getframerate()
            data = w.readframes(w.getnframes())
    except (wave.Error, EOFError) as err:
        raise ValueError(f"{path} is not a PCM WAV file: {err}") from None
    if width != 2:
        raise ValueError(f"{path}: expected 16-bit samples, got {8 * width}-bit")
    frame = 2 * channels
    whole = len(data) - len(data) % frame  # a truncated last frame is dropped
    samples = np.frombuffer(data[:whole], "<i2").astype(np.float32).reshape(-1, channels).mean(1)
    return samples, rate


def resample(samples: Any, rate: int, target: int) -> Any:
    """Resample a 1-D signal from ``rate`` to ``target`` Hz (soxr if installed, else scipy).

    Parameters
    ----------
    samples : numpy.ndarray
        The signal (any scale).
    rate, target : int
        Sample rates in Hz.

    Returns
    -------
    numpy.ndarray
        float32, about ``len(samples) * target / rate`` samples.
    """
    import math

    import numpy as np

    if rate <= 0 or target <= 0:
        raise ValueError(f"sample rates must be positive, got {rate} -> {target}")
    x = np.asarray(samples, np.float32)
    if rate == target:
        return x
    try:
        import soxr
    except ImportError:
        from scipy.signal import resample_poly

        g = math.gcd(int(rate), int(target))
        return resample_poly(x, target // g, rate // g).astype(np.float32)
    return np.asarray(soxr.resample(x, rate, target), np.float32)


def wav_samples(wav: Path) -> Any:
    """A WAV's samples at the models' rate (16 kHz), resampled with a note on stderr if needed.

    Raises
    ------
    FileNotFoundError, ValueError
        No such file, not 16-bit PCM, or shorter than one 25 ms frame.
    """
    from tvm_bsp.speech.features import SAMPLE_RATE

    samples, rate = read_wav(wav)
    if len(samples) < max(1, rate // 40):
        raise ValueError(
            f"{wav}: {len(samples)} samples at {rate} Hz is too short for one 25 ms frame"
        )
    if rate != SAMPLE_RATE:
        print(
            f"note: {wav} is sampled at {rate} Hz; resampled to the models' {SAMPLE_RATE} Hz",
            file=sys.stderr,
        )
        samples = resample(samples, rate, SAMPLE_RATE)
    return samples


def wav_features(wav: Path, out_dir: Path) -> Path:
    """MFCC-39 features of a WAV at 16 kHz (as in training), saved as ``out_dir/<name>.npy``.

    Other sample rates are resampled to 16 kHz first (a note on stderr).
    """
    import numpy as np

    from tvm_bsp.bspc import atomic_write
    from tvm_bsp.speech.features import SAMPLE_RATE, compute_features

    samples = wav_samples(wav)
    rate = SAMPLE_RATE
    out_dir.mkdir(parents=True, exist_ok=True)
    feats = compute_features(samples, "mfcc", rate)
    dest = out_dir / f"{wav.stem}.npy"

    def write(f: Any) -> None:
        np.save(f, np.ascontiguousarray(feats, np.float32), allow_pickle=False)

    atomic_write(dest, write)
    return dest
