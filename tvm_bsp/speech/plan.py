"""What each synthetic utterance will be: word and voice splits and per-utterance plans.

Held-out splits
---------------
The word list (Debian ``wamerican``, lower-case alphabetic entries) is shuffled with the
seed and cut into three disjoint pools: ``test`` and ``dev`` get
``heldout_word_fraction`` of the words each, ``train`` the rest. Voices are held out the
same way: the eSpeak NG variants (:data:`tvm_bsp.speech.synth.ESPEAK_VARIANTS`, the
speaker timbre) are shuffled and ``heldout_variants`` go to each of ``test`` and ``dev``;
``train`` keeps the rest plus the plain accent voices. Every split uses all eight English
accents, so a held-out speaker is an unseen variant in any accent. Flite voices are split
by name: ``kal16`` and ``rms`` train, ``awb`` dev, ``slt`` test. Every word and voice of
a dev or test utterance is therefore unseen in training.

Plans
-----
Utterance ``i`` of a split draws everything from its own generator seeded with
``(seed, split, i)``: 3-8 words from the split's pool, the engine (Flite with probability
``flite_fraction``), voice, speaking rate (eSpeak 130-230 wpm, Flite duration stretch
0.85-1.2), pitch (eSpeak base 25-75 and range 20-80, Flite F0 x0.8-1.25) and the
augmentation (:func:`tvm_bsp.speech.augment.sample_params`). Plans thus do not depend on
the order of generation or on the size of the other splits.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from tvm_bsp.speech.augment import AugmentParams, sample_params
from tvm_bsp.speech.synth import ESPEAK_ACCENTS, ESPEAK_VARIANTS, FLITE_DEFAULT_F0

SPLITS: tuple[str, ...] = ("train", "dev", "test")
"""Corpus splits, in generation order."""

WORD_LIST = Path("/usr/share/dict/american-english")
"""Debian ``wamerican`` word list."""

FLITE_SPLITS: dict[str, tuple[str, ...]] = {
    "train": ("kal16", "rms"),
    "dev": ("awb",),
    "test": ("slt",),
}
"""Flite voices of each split (disjoint)."""

_WORD = re.compile(r"[a-z]+")


@dataclass(frozen=True)
class CorpusConfig:
    """Settings of a synthetic corpus (everything but the split sizes).

    Attributes
    ----------
    seed : int
        Master seed.
    min_words, max_words : int
        Sentence length range (inclusive).
    heldout_word_fraction : float
        Share of the word list reserved for each of dev and test.
    heldout_variants : int
        Number of eSpeak variants reserved for each of dev and test.
    flite_fraction : float
        Probability that an utterance is spoken by Flite (0 when Flite is not installed).
    augment_probability : float
        Probability of each augmentation step (:func:`~tvm_bsp.speech.augment.sample_params`).
    chunk_size : int
        Utterances rendered per fresh eSpeak NG library instance (also the resume unit
        for the library state, see :mod:`tvm_bsp.speech.corpus`).
    word_list : str
        Path of the word list.
    """

    seed: int = 0
    min_words: int = 3
    max_words: int = 8
    heldout_word_fraction: float = 0.1
    heldout_variants: int = 12
    flite_fraction: float = 0.2
    augment_probability: float = 0.5
    chunk_size: int = 50
    word_list: str = str(WORD_LIST)

    def to_json(self) -> dict:
        """Return the settings as a JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class UtterancePlan:
    """Everything needed to render one utterance.

    Attributes
    ----------
    id : str
        ``"{split}-{index:06d}"``.
    split : str
        Split name.
    index : int
        Position in the split.
    words : tuple of str
        The sentence.
    engine : str
        ``"espeak"`` or ``"flite"``.
    voice : str
        eSpeak ``accent[+variant]`` or Flite voice name.
    synth : dict
        Engine settings (eSpeak: ``rate``, ``pitch``, ``pitch_range``, ``word_gap``, and the
        ``seed`` of its noise source; Flite: ``duration_stretch``, ``f0_mean``).
    augment : AugmentParams
        Signal augmentation.
    """

    id: str
    split: str
    index: int
    words: tuple[str, ...]
    engine: str
    voice: str
    synth: dict = field(hash=False)
    augment: AugmentParams = field(hash=False)

    @property
    def text(self) -> str:
        """The sentence as one string."""
        return " ".join(self.words)

    @property
    def speaker(self) -> str:
        """``engine:voice``."""
        return f"{self.engine}:{self.voice}"


def load_words(path: str | Path = WORD_LIST) -> list[str]:
    """Return the sorted, de-duplicated lower-case alphabetic words of a word list.

    Raises
    ------
    FileNotFoundError
        If the list is missing (install Debian ``wamerican``).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run scripts/setup_speech.sh (wamerican)")
    words = {
        w for w in path.read_text(encoding="utf-8", errors="ignore").split() if _WORD.fullmatch(w)
    }
    return sorted(words)


def split_words(words: list[str], seed: int, heldout_fraction: float) -> dict[str, list[str]]:
    """Cut ``words`` into disjoint train / dev / test pools (see the module docstring)."""
    if not 0 < heldout_fraction < 0.5:
        raise ValueError(f"heldout_word_fraction must be in (0, 0.5), got {heldout_fraction}")
    order = np.random.default_rng([seed, 1]).permutation(len(words))
    k = max(1, round(heldout_fraction * len(words)))
    if len(words) < 2 * k + 1:
        raise ValueError(f"a word list of {len(words)} words is too small")
    shuffled = [words[i] for i in order]
    return {
        "test": sorted(shuffled[:k]),
        "dev": sorted(shuffled[k : 2 * k]),
        "train": sorted(shuffled[2 * k :]),
    }


def split_voices(seed: int, heldout_variants: int) -> dict[str, dict[str, list[str]]]:
    """Assign eSpeak variants and Flite voices to splits (disjoint).

    Returns
    -------
    dict
        ``{split: {"accents": [...], "espeak_variants": [...], "flite_voices": [...]}}``;
        the train variants include ``""`` (the accent's own voice).
    """
    k = int(heldout_variants)
    if not 1 <= k < len(ESPEAK_VARIANTS) // 3:
        raise ValueError(f"heldout_variants must be in [1, {len(ESPEAK_VARIANTS) // 3})")
    order = np.random.default_rng([seed, 2]).permutation(len(ESPEAK_VARIANTS))
    shuffled = [ESPEAK_VARIANTS[i] for i in order]
    variants = {"test": shuffled[:k], "dev": shuffled[k : 2 * k], "train": ["", *shuffled[2 * k :]]}
    return {
        split: {
            "accents": list(ESPEAK_ACCENTS),
            "espeak_variants": sorted(variants[split]),
            "flite_voices": list(FLITE_SPLITS[split]),
        }
        for split in SPLITS
    }


def plan_utterance(
    config: CorpusConfig,
    split: str,
    index: int,
    words: list[str],
    voices: dict[str, list[str]],
) -> UtterancePlan:
    """Draw the plan of utterance ``index`` of ``split``.

    Parameters
    ----------
    config : CorpusConfig
        Corpus settings.
    split : str
        One of :data:`SPLITS`.
    index : int
        Utterance number within the split.
    words : list of str
        The split's word pool.
    voices : dict
        The split's entry of :func:`split_voices`.

    Returns
    -------
    UtterancePlan
        The plan (a pure function of the arguments).
    """
    rng = np.random.default_rng([config.seed, 3, SPLITS.index(split), index])
    count = int(rng.integers(config.min_words, config.max_words + 1))
    sentence = tuple(words[i] for i in rng.integers(0, len(words), size=count))
    use_flite = rng.random() < config.flite_fraction and bool(voices["flite_voices"])
    if use_flite:
        voice = str(rng.choice(voices["flite_voices"]))
        synth = {
            "duration_stretch": round(float(rng.uniform(0.85, 1.2)), 4),
            "f0_mean": round(FLITE_DEFAULT_F0[voice] * float(rng.uniform(0.8, 1.25)), 2),
        }
        engine = "flite"
    else:
        accent = str(rng.choice(voices["accents"]))
        variant = str(rng.choice(voices["espeak_variants"]))
        voice = f"{accent}+{variant}" if variant else accent
        synth = {
            "rate": int(rng.integers(130, 231)),
            "pitch": int(rng.integers(25, 76)),
            "pitch_range": int(rng.integers(20, 81)),
            "word_gap": int(rng.integers(1, 5)) if rng.random() < 0.2 else 0,
            "seed": int(rng.integers(0, 2**31 - 1)),
        }
        engine = "espeak"
    augment = sample_params(rng, config.augment_probability)
    return UtterancePlan(
        id=f"{split}-{index:06d}",
        split=split,
        index=index,
        words=sentence,
        engine=engine,
        voice=voice,
        synth=synth,
        augment=augment,
    )
