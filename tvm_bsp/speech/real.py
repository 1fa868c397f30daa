"""Real recorded speech shipped by Debian, for scoring a model trained on synthetic speech.

Debian ``pocketsphinx-testdata`` installs PocketSphinx's test recordings under
``/usr/share/pocketsphinx/test/data`` (16 kHz, 16-bit mono); those with a known word
transcript are used here, 12 utterances of 4 speakers, about 37 s:

* ``cards/001..005.wav``: playing-card names (``cards/cards.transcription``);
* ``librivox/*.wav``: five sentences read from *Sense and Sensibility*
  (``librivox/transcription``);
* ``goforward.raw``: "go forward ten meters" (the sentence of ``goforward.gram`` that
  PocketSphinx's own tests expect for it);
* ``tidigits/dhd.2934z.raw``: "two nine three four zero" (TIDIGITS names a file by its
  digits; ``z`` is zero, ``o`` is oh).

``numbers.raw`` and ``something.raw`` are left out: the package gives no transcript.

Reference phones come from CMUdict (Debian ``pocketsphinx-en-us``,
``model/en-us/cmudict-en-us.dict``; the first pronunciation of each word), folded to the 39
set with :func:`tvm_bsp.speech.phones.cmu_to_39`, with ``sil`` at both ends like TIMIT
references. There is no time alignment: the utterances are for sequence-level PER only
(``labels`` is ``None``).
"""

from __future__ import annotations

import re
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tvm_bsp.speech.features import compute_features
from tvm_bsp.speech.phones import SILENCE, cmu_to_39
from tvm_bsp.speech.utterance import Utterance

REAL_DATA_DIR = Path("/usr/share/pocketsphinx/test/data")
"""Where ``pocketsphinx-testdata`` puts its recordings."""

CMUDICT_PATH = Path("/usr/share/pocketsphinx/model/en-us/cmudict-en-us.dict")
"""CMUdict as shipped by ``pocketsphinx-en-us``."""

_DIGITS = {
    "0": "zero", "1": "one", "2": "two", "3": "three", "4": "four", "5": "five",
    "6": "six", "7": "seven", "8": "eight", "9": "nine", "z": "zero", "o": "oh",
}  # fmt: skip
_TRANSCRIPT_LINE = re.compile(r"^\s*(?:<s>)?(.*?)(?:</s>)?\s*\(([^()]+)\)\s*$")


class RealSpeechUnavailableError(FileNotFoundError):
    """The Debian packages with the recordings or the dictionary are not installed."""


@dataclass(frozen=True)
class Recording:
    """One real recording.

    Attributes
    ----------
    id : str
        ``"cards-001"``, ``"librivox-...-0870"``, ``"goforward"``, ``"tidigits-dhd.2934z"``.
    audio : numpy.ndarray
        int16 samples at 16 kHz.
    words : tuple of str
        The transcript.
    speaker : str
        Source collection.
    """

    id: str
    audio: np.ndarray
    words: tuple[str, ...]
    speaker: str


def real_speech_available(data_dir: Path = REAL_DATA_DIR, dict_path: Path = CMUDICT_PATH) -> bool:
    """Return whether the recordings and CMUdict are installed."""
    return (Path(data_dir) / "cards" / "cards.transcription").exists() and Path(dict_path).exists()


def load_cmudict(path: Path = CMUDICT_PATH) -> dict[str, tuple[str, ...]]:
    """Read a CMUdict file: word -> its first pronunciation (ARPAbet with stress digits)."""
    lexicon: dict[str, tuple[str, ...]] = {}
    for line in Path(path).read_text(encoding="utf-8", errors="ignore").splitlines():
        parts = line.split()
        if len(parts) < 2 or line.startswith(";;;"):
            continue
        word = parts[0].lower()
        if word.endswith(")") and "(" in word:  # "word(2)": an alternative pronunciation
            continue
        lexicon.setdefault(word, tuple(parts[1:]))
    return lexicon


def words_to_phones(
    words: tuple[str, ...] | list[str], lexicon: dict[str, tuple[str, ...]]
) -> list[str]:
    """Return the 39-class phones of a word sequence, with ``sil`` at both ends.

    Raises
    ------
    KeyError
        If a word is not in the lexicon.
    """
    phones = [SILENCE]
    for word in words:
        if word not in lexicon:
            raise KeyError(f"{word!r} is not in the pronunciation dictionary")
        phones.extend(p for p in (cmu_to_39(x) for x in lexicon[word]) if p is not None)
    phones.append(SILENCE)
    return phones


def _read_transcripts(path: Path) -> dict[str, tuple[str, ...]]:
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = _TRANSCRIPT_LINE.match(line)
        if match:
            out[match.group(2).strip()] = tuple(match.group(1).lower().split())
    return out


def _read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2 or w.getnchannels() != 1 or w.getframerate() != 16000:
            raise ValueError(f"{path}: expected 16 kHz 16-bit mono")
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").copy()


def real_recordings(data_dir: Path = REAL_DATA_DIR) -> list[Recording]:
    """Load the transcribed recordings of ``pocketsphinx-testdata``.

    Raises
    ------
    RealSpeechUnavailableError
        If the package is not installed.
    """
    root = Path(data_dir)
    if not (root / "cards" / "cards.transcription").exists():
        raise RealSpeechUnavailableError(
            f"{root} has no PocketSphinx test data: apt-get install pocketsphinx-testdata"
        )
    recordings = []
    for folder, transcript in (("cards", "cards.transcription"), ("librivox", "transcription")):
        for key, words in sorted(_read_transcripts(root / folder / transcript).items()):
            wav = root / folder / f"{key}.wav"
            if wav.exists():
                recordings.append(Recording(f"{folder}-{key}", _read_wav(wav), words, folder))
    goforward = root / "goforward.raw"
    if goforward.exists():
        words = ("go", "forward", "ten", "meters")
        recordings.append(
            Recording("goforward", np.fromfile(goforward, dtype="<i2"), words, "goforward")
        )
    for raw in sorted((root / "tidigits").glob("*.raw")):
        digits = raw.stem.split(".")[-1]
        if digits and all(c in _DIGITS for c in digits):
            words = tuple(_DIGITS[c] for c in digits)
            recordings.append(
                Recording(f"tidigits-{raw.stem}", np.fromfile(raw, dtype="<i2"), words, "tidigits")
            )
    return recordings


def load_real_utterances(
    data_dir: Path = REAL_DATA_DIR, dict_path: Path = CMUDICT_PATH, feature: str = "mfcc"
) -> list[Utterance]:
    """Return the real recordings as utterances with reference phones (no frame labels).

    Parameters
    ----------
    data_dir : path
        PocketSphinx test data folder.
    dict_path : path
        CMUdict file.
    feature : {"mfcc", "fbank"}
        Feature kind (as :func:`tvm_bsp.speech.corpus.load_split`).

    Returns
    -------
    list of Utterance
        ``labels`` is ``None``; ``phones`` is the CMUdict reference with ``sil`` at both ends.

    Raises
    ------
    RealSpeechUnavailableError
        If ``pocketsphinx-testdata`` or ``pocketsphinx-en-us`` is not installed.
    """
    if not Path(dict_path).exists():
        raise RealSpeechUnavailableError(
            f"{dict_path} not found: apt-get install pocketsphinx-en-us"
        )
    lexicon = load_cmudict(dict_path)
    return [
        Utterance(
            id=rec.id,
            features=compute_features(rec.audio.astype(np.float32), feature),
            labels=None,
            phones=words_to_phones(rec.words, lexicon),
            speaker=f"pocketsphinx:{rec.speaker}",
            text=" ".join(rec.words),
        )
        for rec in real_recordings(data_dir)
    ]
