"""Render one :class:`~tvm_bsp.speech.plan.UtterancePlan`: synthesise, fold, augment, store.

The manifest record of an utterance (one JSON line) holds:

``id``, ``split``, ``index``
    Identity.
``audio``, ``num_samples``, ``sample_rate``, ``duration``
    The audio file (relative to the corpus folder; int16 ``.npz``) and its length.
``engine``, ``voice``, ``speaker``, ``synth``, ``augment``
    How it was made.
``words``, ``text``
    What was said.
``phones``
    The 39-class phone sequence.
``segments``
    ``[phone, start, end]`` per phone in samples of the stored audio: contiguous, covering
    ``0..num_samples``.
``engine_phones``
    The engine's own labels ``[label, start, end]`` on the clean 16 kHz synthesis, before
    the speed change and padding (for checking the phone mapping).
"""

from __future__ import annotations

from pathlib import Path

from tvm_bsp.speech.align import fold_engine_phones
from tvm_bsp.speech.augment import augment
from tvm_bsp.speech.flite import flite_synthesize
from tvm_bsp.speech.plan import UtterancePlan
from tvm_bsp.speech.storage import save_audio, to_int16
from tvm_bsp.speech.synth import EspeakEngine, Synthesis


def synthesize_plan(plan: UtterancePlan, engine: EspeakEngine | None) -> Synthesis:
    """Run the plan's speech engine.

    Parameters
    ----------
    plan : UtterancePlan
        What to say and how.
    engine : EspeakEngine, optional
        The eSpeak NG instance (required for eSpeak plans).

    Returns
    -------
    Synthesis
        Clean 16 kHz audio with the engine's phones.
    """
    if plan.engine == "espeak":
        if engine is None:
            raise ValueError("an eSpeak plan needs an EspeakEngine")
        return engine.synthesize(plan.text, plan.voice, **plan.synth)
    if plan.engine == "flite":
        return flite_synthesize(plan.text, plan.voice, **plan.synth)
    raise ValueError(f"unknown engine {plan.engine!r}")


def audio_path(plan: UtterancePlan) -> str:
    """Path of the plan's audio file relative to the corpus folder."""
    return f"audio/{plan.split}/{plan.id}.npz"


def render(plan: UtterancePlan, synthesis: Synthesis, root: str | Path) -> dict:
    """Fold the phones, augment, store the audio under ``root`` and return the record.

    Parameters
    ----------
    plan : UtterancePlan
        The plan that produced ``synthesis``.
    synthesis : Synthesis
        Output of :func:`synthesize_plan`.
    root : path
        Corpus folder.

    Returns
    -------
    dict
        The manifest record (see the module docstring).
    """
    clean = fold_engine_phones(synthesis.phones, len(synthesis.audio), plan.engine, plan.voice)
    audio, alignment = augment(synthesis.audio, clean, plan.augment, synthesis.sample_rate)
    alignment.validate()
    samples = to_int16(audio)
    rel = audio_path(plan)
    save_audio(Path(root) / rel, samples, synthesis.sample_rate)
    return {
        "id": plan.id,
        "split": plan.split,
        "index": plan.index,
        "audio": rel,
        "num_samples": len(samples),
        "sample_rate": synthesis.sample_rate,
        "duration": round(len(samples) / synthesis.sample_rate, 4),
        "engine": plan.engine,
        "voice": plan.voice,
        "speaker": plan.speaker,
        "synth": plan.synth,
        "augment": plan.augment.to_json(),
        "words": list(plan.words),
        "text": plan.text,
        "phones": alignment.phones,
        "segments": [list(s) for s in alignment.segments()],
        "engine_phones": [list(p) for p in synthesis.phones],
    }
