"""Flite, the second synthesis engine: its command-line program, 16 kHz audio and phones.

Flite prints each phone with its end time (``-psdur``); :func:`flite_synthesize` turns them into
the sample ranges of :class:`tvm_bsp.speech.synth.Synthesis`, like the eSpeak NG engine's.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np

from tvm_bsp.speech.synth import TARGET_RATE, Synthesis, resample_to


def flite_available(executable: str = "flite") -> bool:
    """Return whether the Flite command-line synthesiser is on ``PATH``."""
    return shutil.which(executable) is not None


def _read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{path}: expected 16-bit PCM")
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        if w.getnchannels() > 1:
            data = data.reshape(-1, w.getnchannels())[:, 0]
        return data.astype(np.float32) / 32768.0, w.getframerate()


def flite_synthesize(
    text: str,
    voice: str = "slt",
    duration_stretch: float = 1.0,
    f0_mean: float | None = None,
    executable: str = "flite",
) -> Synthesis:
    """Speak ``text`` with Flite and return 16 kHz audio with Flite's phones.

    Parameters
    ----------
    text : str
        Plain text.
    voice : str
        A Flite voice (see :data:`tvm_bsp.speech.synth.FLITE_VOICES`).
    duration_stretch : float
        Phone duration factor (> 1 is slower).
    f0_mean : float, optional
        Target mean F0 in Hz (voice default when ``None``).
    executable : str
        The ``flite`` program.

    Returns
    -------
    Synthesis
        Audio and phones at 16 kHz.

    Raises
    ------
    RuntimeError
        If Flite fails or prints no phones.
    """
    cmd = [executable, "-voice", voice, "--setf", f"duration_stretch={duration_stretch:.4f}"]
    if f0_mean is not None:
        cmd += ["--setf", f"int_f0_target_mean={f0_mean:.2f}"]
    with tempfile.TemporaryDirectory(prefix="flite-") as tmp:
        out = Path(tmp) / "out.wav"
        run = subprocess.run(
            [*cmd, "-psdur", "-t", text, "-o", str(out)],
            capture_output=True,
            text=True,
            check=False,
        )
        if run.returncode != 0 or not out.exists():
            raise RuntimeError(f"flite failed ({run.returncode}): {run.stderr.strip()}")
        audio, rate = _read_wav(out)
    pairs = [tok.rsplit(":", 1) for tok in run.stdout.split() if ":" in tok]
    if not pairs:
        raise RuntimeError(f"flite printed no phones for {text!r}")
    audio = resample_to(audio, rate)
    phones, start = [], 0
    for label, end_s in pairs:
        end = min(max(round(float(end_s) * TARGET_RATE), start), len(audio))
        phones.append((label, start, end))
        start = end
    return Synthesis(audio, phones, TARGET_RATE, "flite", voice, rate)
