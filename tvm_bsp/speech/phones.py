"""Phone sets: TIMIT's 61 phones, the 39-class folding, and engine phones folded to 39.

The 39-class set
----------------
Phone error rates on TIMIT are reported on 39 classes (Lee & Hon, 1989, "Speaker-independent
phone recognition using hidden Markov models"): the 61 TIMIT labels are folded as

=====================  ============================================
39-class label          TIMIT labels folded into it
=====================  ============================================
``aa``                  aa, ao
``ah``                  ah, ax, ax-h
``er``                  er, axr
``hh``                  hh, hv
``ih``                  ih, ix
``l``                   l, el
``m``                   m, em
``n``                   n, en, nx
``ng``                  ng, eng
``sh``                  sh, zh
``uw``                  uw, ux
``sil``                 pcl, tcl, kcl, bcl, dcl, gcl, h#, pau, epi
(deleted)               q (the glottal stop is removed from references)
=====================  ============================================

and every other label maps to itself. :data:`PHONES_39` lists the classes in a fixed
(alphabetical) order; a phone's index in it is its class id (0..38).

eSpeak NG mnemonics
-------------------
eSpeak NG reports English phonemes by ASCII mnemonics (``'D'`` for /ð/, ``'0'`` for /ɒ/,
``'3:'`` for /ɜː/, ``'A@'`` for the START vowel, ...). :func:`espeak_to_39` folds one mnemonic
to zero, one or two 39-class phones. The table was made by asking eSpeak NG 1.51 for each
phoneme's IPA rendering per accent (``espeakINITIALIZE_PHONEME_IPA``) over thousands of words;
every mnemonic that eSpeak emits for the whole ``wamerican`` word list in the eight English
accents is covered:

* consonants map by their IPA value (``T`` -> th, ``S`` -> sh, ``Z`` -> zh -> sh, ``j`` -> y,
  ``N`` -> ng, ``tS`` -> ch, ``dZ`` -> jh); the American flap ``t#`` -> dx; the dental
  ``t[``/``d[`` (Caribbean TH-stopping), ``t2``, ``r-`` (linking r), ``w#`` (/ʍ/), ``l#``
  (/ɬ/) -> their plain consonant; the syllabic ``n-`` -> n (TIMIT en -> n);
* the glottal stop ``?`` is deleted, like TIMIT ``q``;
* pauses (``_``, ``_:``, ``_!``, ``_|``: any mnemonic starting with ``_``) -> sil; the
  palatalisation mark ``;`` carries no phone (its audio is given to the phone before it,
  see :mod:`tvm_bsp.speech.align`);
* vowels map by their IPA value in the voice's accent. Two-part IPA values become two phones:
  syllabic ``@L`` (/əl/) -> ah l, centring diphthongs in non-rhotic accents (``e@`` /eə/ ->
  eh ah, ``i@`` /iə/ -> iy ah, ``U@`` /ʊə/ -> uh ah, ``aI@`` /aɪə/ -> ay ah), r-coloured
  vowels in rhotic American (``A@`` /ɑːɹ/ -> aa r, ``O@``/``o@`` -> aa r, ``e@`` -> eh r,
  ``i@3`` -> ih r, ``U@`` -> uh r, ``aI3`` -> ay er). eSpeak writes the /ɹ/ of an
  r-coloured vowel only when no ``r`` follows; :mod:`tvm_bsp.speech.align` merges the two
  adjacent ``r`` that the table then produces.

Accent-dependent values (:data:`ESPEAK_ACCENT_OVERRIDES`) follow the IPA eSpeak reports for
that accent, e.g. ``3`` is /ɚ/ (er) in ``en-us`` but /ə/ (ah) elsewhere, ``aa`` (BATH) is
/ɑː/ (aa) in ``en-gb-x-rp`` but /a/, /æ/ (ae) elsewhere, ``V`` (STRUT) is /ʊ/ (uh) in the
northern English accents. Mnemonics missing from the tables are looked up again with their
trailing modifier characters (``#``, ``2``..``9``, ``-``, ``[``, ``~``, ``/``) stripped.

CMU / Flite phones
------------------
CMUdict (and Flite's US English voices) use ARPAbet: :func:`cmu_to_39` drops the stress
digit, lower-cases, and folds with the TIMIT table (ao -> aa, zh -> sh, ax -> ah, ...);
Flite's ``pau`` (and ``brth``) -> sil.
"""

from __future__ import annotations

import re

PHONES_39: tuple[str, ...] = (
    "aa", "ae", "ah", "aw", "ay", "b", "ch", "d", "dh", "dx", "eh", "er", "ey", "f", "g",
    "hh", "ih", "iy", "jh", "k", "l", "m", "n", "ng", "ow", "oy", "p", "r", "s", "sh",
    "sil", "t", "th", "uh", "uw", "v", "w", "y", "z",
)  # fmt: skip
"""The 39 phone classes in id order (alphabetical)."""

PHONE_TO_ID: dict[str, int] = {p: i for i, p in enumerate(PHONES_39)}
"""Class id of each 39-class phone."""

SILENCE = "sil"
"""The silence class of the 39 set."""

TIMIT_61: tuple[str, ...] = (
    # stops and their closures
    "b", "d", "g", "p", "t", "k", "dx", "q",
    "bcl", "dcl", "gcl", "pcl", "tcl", "kcl",
    # affricates and fricatives
    "jh", "ch", "s", "sh", "z", "zh", "f", "th", "v", "dh",
    # nasals
    "m", "n", "ng", "em", "en", "eng", "nx",
    # semivowels and glides
    "l", "r", "w", "y", "hh", "hv", "el",
    # vowels
    "iy", "ih", "eh", "ey", "ae", "aa", "aw", "ay", "ah", "ao", "oy", "ow", "uh", "uw",
    "ux", "er", "ax", "ix", "axr", "ax-h",
    # others
    "pau", "epi", "h#",
)  # fmt: skip
"""The 61 TIMIT phone labels (as in the ``.PHN`` files)."""

FOLD_61_TO_39: dict[str, str | None] = {p: p for p in TIMIT_61}
FOLD_61_TO_39.update(
    {
        "ao": "aa",
        "ax": "ah",
        "ax-h": "ah",
        "axr": "er",
        "hv": "hh",
        "ix": "ih",
        "el": "l",
        "em": "m",
        "en": "n",
        "nx": "n",
        "eng": "ng",
        "zh": "sh",
        "ux": "uw",
        "pcl": SILENCE,
        "tcl": SILENCE,
        "kcl": SILENCE,
        "bcl": SILENCE,
        "dcl": SILENCE,
        "gcl": SILENCE,
        "h#": SILENCE,
        "pau": SILENCE,
        "epi": SILENCE,
        "q": None,
    }
)
"""Lee & Hon folding of the 61 TIMIT labels; ``q`` maps to ``None`` (deleted)."""

ESPEAK_TO_39: dict[str, tuple[str, ...]] = {
    # pauses and marks
    "_": (SILENCE,), "_:": (SILENCE,), "_!": (SILENCE,), "_|": (SILENCE,), "_^_": (SILENCE,),
    ";": (), "?": (),
    # stops, affricates
    "p": ("p",), "b": ("b",), "t": ("t",), "d": ("d",), "k": ("k",), "g": ("g",),
    "t#": ("dx",), "d#": ("dx",), "t2": ("t",), "d2": ("d",), "t[": ("t",), "d[": ("d",),
    "tS": ("ch",), "dZ": ("jh",),
    # fricatives
    "f": ("f",), "v": ("v",), "T": ("th",), "D": ("dh",), "s": ("s",), "z": ("z",),
    "S": ("sh",), "Z": ("sh",), "h": ("hh",), "x": ("hh",),
    # nasals, liquids, glides
    "m": ("m",), "n": ("n",), "N": ("ng",), "n-": ("n",), "m-": ("m",),
    "l": ("l",), "l#": ("l",), "l/": ("l",), "r": ("r",), "r-": ("r",),
    "w": ("w",), "w#": ("w",), "j": ("y",),
    # vowels (values of the default British voice "en"; see ESPEAK_ACCENT_OVERRIDES)
    "@": ("ah",), "@-": ("ah",), "@2": ("ah",), "@5": ("ah",), "@L": ("ah", "l"),
    "3": ("ah",), "3:": ("er",), "IR": ("er",), "VR": ("er",),
    "a": ("ae",), "aa": ("ae",), "a#": ("ah",), "a2": ("ah",),
    "A:": ("aa",), "A@": ("aa",), "A~": ("aa",), "0": ("aa",),
    "O": ("aa",), "O:": ("aa",), "O2": ("aa",), "O@": ("aa",), "O~": ("aa",), "o@": ("aa",),
    "OI": ("oy",), "E": ("eh",), "e": ("ey",), "e@": ("eh", "ah"), "eI": ("ey",),
    "I": ("ih",), "I2": ("ih",), "I#": ("ih",), "i": ("iy",), "i:": ("iy",),
    "i@": ("iy", "ah"), "i@3": ("ih", "ah"),
    "U": ("uh",), "U@": ("uh", "ah"), "u:": ("uw",), "V": ("ah",),
    "aI": ("ay",), "aI2": ("ay",), "aI@": ("ay", "ah"), "aI3": ("ay", "er"),
    "aU": ("aw",), "aU@": ("aw", "ah"), "oU": ("ow",),
}  # fmt: skip
"""eSpeak NG English mnemonic -> 39-class phones (empty tuple: no phone)."""

_RHOTIC_US = {
    "3": ("er",),
    "A@": ("aa", "r"),
    "O@": ("aa", "r"),
    "o@": ("aa", "r"),
    "e@": ("eh", "r"),
    "i@3": ("ih", "r"),
    "U@": ("uh", "r"),
}

ESPEAK_ACCENT_OVERRIDES: dict[str, dict[str, tuple[str, ...]]] = {
    "en-us": dict(_RHOTIC_US),
    "en-us-nyc": {},
    "en-gb-x-rp": {"aa": ("aa",), "i": ("ih",), "U@": ("aa",)},
    "en-gb-scotland": {
        "3:": ("eh",), "e@": ("eh",), "i@3": ("ih",), "o@": ("ow",), "U": ("uw",),
        "U@": ("uw", "r"), "i": ("ey",),
    },
    "en-gb-x-gbclan": {"V": ("uh",)},
    "en-gb-x-gbcwmd": {"V": ("uh",), "aI": ("oy",), "e@": ("er",)},
    "en-029": {"a#": ("ae",), "o@": ("ow", "ah")},
    "en": {},
}  # fmt: skip
"""Per-accent exceptions to :data:`ESPEAK_TO_39` (keys are eSpeak NG voice names)."""

_MODIFIERS = re.compile(r"[#0-9\-\[~/]+$")


def fold_timit(phone: str) -> str | None:
    """Fold a TIMIT 61-set label to the 39 set.

    Parameters
    ----------
    phone : str
        A TIMIT label such as ``"ix"`` or ``"pcl"`` (case-insensitive).

    Returns
    -------
    str or None
        The 39-class phone, or ``None`` for ``q`` (deleted by the folding).

    Raises
    ------
    KeyError
        If ``phone`` is not a TIMIT label.
    """
    return FOLD_61_TO_39[phone.lower()]


def _accent_of(voice: str) -> str:
    """Return the accent (base voice name) of an eSpeak voice such as ``en-us+m3``."""
    return voice.split("+", 1)[0].lower()


def espeak_to_39(mnemonic: str, accent: str = "en") -> tuple[str, ...]:
    """Fold one eSpeak NG English phoneme mnemonic to 39-class phones.

    Parameters
    ----------
    mnemonic : str
        The mnemonic from an ``espeakEVENT_PHONEME`` event, e.g. ``"aI@"`` or ``"t#"``.
    accent : str
        The eSpeak voice it was spoken with (``"en-us"``, ``"en-gb-x-rp+m3"``, ...);
        only the part before ``+`` matters.

    Returns
    -------
    tuple of str
        Zero (deleted or no-phone marks), one, or two 39-class phones.

    Raises
    ------
    KeyError
        If the mnemonic is unknown even with its modifier characters stripped.
    """
    overrides = ESPEAK_ACCENT_OVERRIDES.get(_accent_of(accent), {})
    if mnemonic.startswith("_"):
        return (SILENCE,)
    base = _MODIFIERS.sub("", mnemonic)
    for name in (mnemonic, base):
        if name in overrides:
            return overrides[name]
        if name in ESPEAK_TO_39:
            return ESPEAK_TO_39[name]
    raise KeyError(f"unknown eSpeak NG phoneme mnemonic {mnemonic!r}")


_CMU_EXTRA = {"pau": SILENCE, "sil": SILENCE, "brth": SILENCE, "ssil": SILENCE}


def cmu_to_39(phone: str) -> str | None:
    """Fold an ARPAbet phone (CMUdict, Flite) to the 39 set.

    Parameters
    ----------
    phone : str
        ``"AH0"``, ``"ZH"``, ``"ax"``, ``"pau"``, ... (stress digits are dropped).

    Returns
    -------
    str or None
        The 39-class phone, ``None`` for a glottal stop (``q``).

    Raises
    ------
    KeyError
        If the phone is not ARPAbet.
    """
    name = phone.lower().rstrip("012")
    if name in _CMU_EXTRA:
        return _CMU_EXTRA[name]
    return FOLD_61_TO_39[name]


def phone_ids(phones: list[str] | tuple[str, ...]) -> list[int]:
    """Return the class ids of a sequence of 39-class phones.

    Parameters
    ----------
    phones : sequence of str
        39-class phones.

    Returns
    -------
    list of int
        Ids in ``0..38``.
    """
    return [PHONE_TO_ID[p] for p in phones]
