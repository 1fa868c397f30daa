"""Speech synthesis with time-aligned phones: eSpeak NG (ctypes) and Flite (subprocess).

eSpeak NG
---------
``libespeak-ng`` (Debian ``libespeak-ng1``) is loaded with :mod:`ctypes` and initialised in
``AUDIO_OUTPUT_SYNCHRONOUS`` mode with ``espeakINITIALIZE_PHONEME_EVENTS``: ``espeak_Synth``
then calls our callback with blocks of 22,050 Hz int16 audio and ``espeak_EVENT`` lists
(``speak_lib.h``); each ``espeakEVENT_PHONEME`` event carries the phoneme mnemonic in
``id.string`` and its first output sample in ``sample`` (``audio_position`` is the same in
ms). A phoneme lasts until the next one starts. A voice is ``accent+variant``
(``en-gb-x-rp+m3``); rate (words per minute), base pitch and pitch range are set with
``espeak_SetParameter``.

The library keeps synthesis state between calls in C statics (pitch flutter index, wave
phase), so an utterance's samples depend on what the library synthesised before it. Output
is reproducible only for the same sequence of calls on a freshly loaded library.
``EspeakEngine(private=True)`` loads a private copy of the ``.so`` (a new object for the
dynamic loader, with its own statics) and unloads it on :meth:`EspeakEngine.close`;
:mod:`tvm_bsp.speech.corpus` renders each chunk of utterances with a new private engine.
The shared (non-private) engine is process-global: get it with :func:`espeak_engine`.
eSpeak NG 1.51 also draws breath/frication noise from the C library's ``rand()``, a state
shared with the whole process; :meth:`EspeakEngine.synthesize` can reseed it (``seed``).

Flite
-----
``flite -voice V -psdur -t TEXT -o out.wav`` prints ``phone:end_time`` pairs (seconds); a
phone starts where the previous one ends. Flite's phones are ARPAbet-like (``pau``, ``ax``,
...). Flite keeps no state between runs. For the diphone voice ``kal16`` the printed times
overrun the audio by the part of the final pause that is not rendered; phones are clipped to
the audio length.

Both engines return :class:`Synthesis`: float audio in ``[-1, 1]`` resampled to 16 kHz
(polyphase, :func:`scipy.signal.resample_poly`) and the engine's own phone labels with
start/end samples at 16 kHz.
"""

from __future__ import annotations

import _ctypes
import ctypes
import ctypes.util
import os
import tempfile
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

TARGET_RATE = 16000

ESPEAK_ACCENTS: tuple[str, ...] = (
    "en",
    "en-us",
    "en-gb-scotland",
    "en-gb-x-gbclan",
    "en-gb-x-rp",
    "en-gb-x-gbcwmd",
    "en-029",
    "en-us-nyc",
)
"""English accents of eSpeak NG 1.51 (``espeak-ng --voices=en``, MBROLA voices excluded)."""

ESPEAK_VARIANTS: tuple[str, ...] = (
    "Alex", "Alicia", "Andrea", "Andy", "Annie", "AnxiousAndy", "Demonic", "Denis", "Diogo",
    "Gene", "Gene2", "Henrique", "Hugo", "Jacky", "Lee", "Marco", "Mario", "Michael", "Mike",
    "Nguyen", "RicishayMax", "RicishayMax2", "RicishayMax3", "Storm", "Tweaky", "UniRobot",
    "adam", "anika", "anikaRobot", "announcer", "antonio", "aunty", "belinda", "benjamin",
    "boris", "caleb", "croak", "david", "ed", "edward", "edward2", "f1", "f2", "f3", "f4",
    "f5", "fast", "grandma", "grandpa", "gustave", "iven", "iven2", "iven3", "iven4", "john",
    "kaukovalta", "klatt", "klatt2", "klatt3", "klatt4", "klatt5", "klatt6", "linda", "m1",
    "m2", "m3", "m4", "m5", "m6", "m7", "m8", "marcelo", "max", "michel", "miguel", "norbert",
    "pablo", "paul", "pedro", "quincy", "rob", "robert", "robosoft", "robosoft2", "robosoft3",
    "robosoft4", "robosoft5", "robosoft6", "robosoft7", "robosoft8", "sandro", "shelby",
    "steph", "steph2", "steph3", "travis", "victor", "zac",
)  # fmt: skip
"""eSpeak NG 1.51 voice variants (``voices/!v``) used for speakers: all but the whispered
ones (``whisper``, ``whisperf``: no voicing) and ``Mr serious`` (a space in its name)."""

FLITE_VOICES: tuple[str, ...] = ("kal16", "awb", "rms", "slt")
"""Flite's 16 kHz voices (``flite -lv``; ``kal`` is the 8 kHz version of ``kal16``)."""

FLITE_DEFAULT_F0: dict[str, float] = {"kal16": 100.0, "awb": 110.0, "rms": 100.0, "slt": 170.0}
"""Typical mean F0 (Hz) of each Flite voice; ``rms`` ignores the F0 target."""

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_INITIALIZE_DONT_EXIT = 0x8000
_EVENT_LIST_TERMINATED = 0
_EVENT_PHONEME = 7
_CHARS_UTF8 = 1
_PARAM_RATE, _PARAM_PITCH, _PARAM_RANGE, _PARAM_WORDGAP = 1, 3, 4, 7


@dataclass
class Synthesis:
    """Synthesised speech with the engine's phones.

    Attributes
    ----------
    audio : numpy.ndarray
        float32 samples in ``[-1, 1]`` at ``sample_rate``.
    phones : list of (str, int, int)
        Engine phone label, start sample, end sample (contiguous, in order; a phone may be
        empty when the engine gives it no audio).
    sample_rate : int
        16000.
    engine, voice : str
        Which engine and voice spoke.
    """

    audio: np.ndarray
    phones: list[tuple[str, int, int]]
    sample_rate: int = TARGET_RATE
    engine: str = ""
    voice: str = ""
    native_rate: int = field(default=TARGET_RATE, repr=False)


def resample_to(audio: np.ndarray, rate: int, target: int = TARGET_RATE) -> np.ndarray:
    """Resample ``audio`` from ``rate`` to ``target`` Hz with a polyphase filter.

    Returns
    -------
    numpy.ndarray
        float32 samples; length ``ceil(len(audio) * target / rate)``.
    """
    if rate == target:
        return np.asarray(audio, dtype=np.float32)
    ratio = Fraction(target, rate)
    out = resample_poly(np.asarray(audio, dtype=np.float64), ratio.numerator, ratio.denominator)
    return out.astype(np.float32)


# ----------------------------------------------------------------------------- eSpeak NG


class _EventId(ctypes.Union):
    _fields_ = (("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8))


class _Event(ctypes.Structure):
    _fields_ = (
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    )


_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


def _find_espeak() -> str | None:
    return ctypes.util.find_library("espeak-ng")


def _load_private(name: str) -> ctypes.CDLL:
    """Load a private instance of a shared library by opening a temporary copy of it.

    The dynamic loader shares a library between all ``dlopen`` calls of the same file; a
    copy under another name is a new object with its own static data.
    """
    source = Path(name) if os.path.sep in name else None
    if source is None:
        probe = ctypes.CDLL(name)
        source = Path(_library_path(probe))
    fd, tmp = tempfile.mkstemp(prefix="libespeak-ng-", suffix=".so")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(source.read_bytes())
        return ctypes.CDLL(tmp)
    finally:
        os.unlink(tmp)


def _library_path(lib: ctypes.CDLL) -> str:
    """File name of a loaded library (from ``dladdr`` on one of its symbols)."""

    class _DlInfo(ctypes.Structure):
        _fields_ = (
            ("dli_fname", ctypes.c_char_p),
            ("dli_fbase", ctypes.c_void_p),
            ("dli_sname", ctypes.c_char_p),
            ("dli_saddr", ctypes.c_void_p),
        )

    libdl = ctypes.CDLL(None)
    info = _DlInfo()
    address = ctypes.cast(lib.espeak_Initialize, ctypes.c_void_p)
    if not libdl.dladdr(address, ctypes.byref(info)):
        raise RuntimeError("cannot locate the eSpeak NG library file")
    return info.dli_fname.decode()


def espeak_available() -> bool:
    """Return whether libespeak-ng can be loaded."""
    name = _find_espeak()
    if name is None:
        return False
    try:
        ctypes.CDLL(name)
    except OSError:
        return False
    return True


class EspeakEngine:
    """An initialised eSpeak NG library (synchronous synthesis with phoneme events).

    Parameters
    ----------
    private : bool
        Load a private copy of the shared library (a temporary copy of the ``.so`` file) so
        this engine starts from a fresh library state and does not share it with any other
        engine; :meth:`close` (or leaving a ``with`` block) unloads it. With ``False`` the
        system library is used; there is one such engine per process, see
        :func:`espeak_engine`.
    """

    def __init__(self, private: bool = False) -> None:
        name = _find_espeak()
        if name is None:
            raise RuntimeError("libespeak-ng not found: run scripts/setup_speech.sh")
        self.private = private
        lib = _load_private(name) if private else ctypes.CDLL(name)
        lib.espeak_Initialize.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int)
        lib.espeak_Synth.argtypes = (
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
            ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        )  # fmt: skip
        lib.espeak_SetVoiceByName.argtypes = (ctypes.c_char_p,)
        lib.espeak_SetParameter.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int)
        lib.espeak_Info.restype = ctypes.c_char_p
        lib.espeak_Info.argtypes = (ctypes.POINTER(ctypes.c_char_p),)
        options = _INITIALIZE_PHONEME_EVENTS | _INITIALIZE_DONT_EXIT
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, None, options)
        if rate <= 0:
            raise RuntimeError("espeak_Initialize failed")
        data_path = ctypes.c_char_p()
        self.version = lib.espeak_Info(ctypes.byref(data_path)).decode()
        self.data_dir = Path(data_path.value.decode()) if data_path.value else None
        self.sample_rate = int(rate)
        self._lib: ctypes.CDLL | None = lib
        self._variants = frozenset(self.variants())
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[str, int]] = []
        self._callback = _CALLBACK(self._on_audio)  # keep a reference while the lib lives
        lib.espeak_SetSynthCallback(self._callback)

    def close(self) -> None:
        """Terminate and unload a private engine (no-op for the shared one)."""
        if self.private and self._lib is not None:
            self._lib.espeak_Terminate()
            _ctypes.dlclose(self._lib._handle)
            self._lib = None

    def __enter__(self) -> EspeakEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _on_audio(self, wav: ctypes.Array, count: int, events: ctypes.Array) -> int:
        if count > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            event = events[i]
            if event.type == _EVENT_PHONEME:
                label = bytes(event.id.string).split(b"\0", 1)[0].decode("utf-8", "replace")
                self._events.append((label, int(event.sample)))
            i += 1
        return 0

    def variants(self) -> list[str]:
        """Return the voice variants installed (file names under ``voices/!v``)."""
        if self.data_dir is None:
            return []
        folder = self.data_dir / "voices" / "!v"
        return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []

    def synthesize(
        self,
        text: str,
        voice: str = "en-us",
        rate: int = 175,
        pitch: int = 50,
        pitch_range: int = 50,
        word_gap: int = 0,
        seed: int | None = None,
    ) -> Synthesis:
        """Speak ``text`` and return 16 kHz audio with eSpeak's phoneme mnemonics.

        Parameters
        ----------
        text : str
            Plain text (no SSML).
        voice : str
            ``accent`` or ``accent+variant``, e.g. ``"en-gb-x-rp+f3"``.
        rate : int
            Words per minute (80..450; 175 is normal).
        pitch, pitch_range : int
            Base pitch and pitch range, 0..100 (50 is normal).
        word_gap : int
            Extra pause between words, in units of 10 ms.
        seed : int, optional
            Seed for the C library's ``rand()``, which eSpeak NG 1.51 uses for breath and
            frication noise (e.g. variants with ``breath`` settings); set it to make the
            output independent of other ``rand()`` users in the process.

        Returns
        -------
        Synthesis
            Audio and phones at 16 kHz.

        Raises
        ------
        ValueError
            If the voice or variant does not exist.
        RuntimeError
            If synthesis fails.
        """
        variant = voice.partition("+")[2]
        if variant and variant not in self._variants:
            raise ValueError(f"eSpeak NG has no voice variant {variant!r}")
        lib = self._lib
        if lib is None:
            raise RuntimeError("this eSpeak NG engine was closed")
        if lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"eSpeak NG has no voice {voice!r}")
        for param, value in (
            (_PARAM_RATE, rate),
            (_PARAM_PITCH, pitch),
            (_PARAM_RANGE, pitch_range),
            (_PARAM_WORDGAP, word_gap),
        ):
            lib.espeak_SetParameter(param, int(value), 0)
        self._chunks, self._events = [], []
        if seed is not None:
            _libc().srand(ctypes.c_uint(seed & 0xFFFFFFFF))
        data = text.encode("utf-8")
        status = lib.espeak_Synth(data, len(data) + 1, 0, 0, 0, _CHARS_UTF8, None, None)
        lib.espeak_Synchronize()
        if status != 0:
            raise RuntimeError(f"espeak_Synth failed with status {status}")
        raw = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        audio = resample_to(raw.astype(np.float32) / 32768.0, self.sample_rate)
        scale = len(audio) / max(len(raw), 1)
        phones = []
        for k, (label, start) in enumerate(self._events):
            end = self._events[k + 1][1] if k + 1 < len(self._events) else len(raw)
            a = min(round(start * scale), len(audio))
            b = min(max(round(end * scale), a), len(audio))
            phones.append((label, a, b))
        return Synthesis(audio, phones, TARGET_RATE, "espeak", voice, self.sample_rate)


@lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL:
    """The C library (whose ``rand`` state eSpeak NG shares with the process)."""
    return ctypes.CDLL(ctypes.util.find_library("c") or None)


@lru_cache(maxsize=1)
def espeak_engine() -> EspeakEngine:
    """Return the process's :class:`EspeakEngine` (created on first use)."""
    return EspeakEngine()
