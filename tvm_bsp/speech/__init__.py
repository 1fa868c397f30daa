"""Speech data for the GRU acoustic model: corpora, features, phone sets and PER.

Public names are imported lazily (on first attribute access), so that light modules such as
:mod:`tvm_bsp.speech.synth` can be used without importing torch.

=========================  ==========================================================
module                     job
=========================  ==========================================================
:mod:`.phones`             TIMIT 61 / 39 phone sets, eSpeak NG and CMU folding
:mod:`.per`                edit distance, PER, framewise and CTC greedy decoding
:mod:`.features`           Kaldi-compatible fbank / MFCC (+deltas, CMVN) in torch
:mod:`.synth`              eSpeak NG (ctypes) and Flite synthesis with phone times
:mod:`.align`              engine phones -> contiguous 39-class segments, frame labels
:mod:`.augment`            speed, padding, reverb, band limit, noise
:mod:`.plan`               held-out word/voice splits, per-utterance plans
:mod:`.render`             one plan -> stored audio + manifest record
:mod:`.storage`            atomic writes, int16 ``.npz`` audio, JSON lines
:mod:`.cache`              per-split feature caches
:mod:`.corpus`             ``generate_corpus`` / ``load_split``
:mod:`.real`               real recordings shipped by Debian (pocketsphinx-testdata)
:mod:`.timit`              TIMIT reader (for owners of the LDC corpus)
=========================  ==========================================================
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "PHONES_39": "phones",
    "PHONE_TO_ID": "phones",
    "TIMIT_61": "phones",
    "FOLD_61_TO_39": "phones",
    "ESPEAK_TO_39": "phones",
    "fold_timit": "phones",
    "espeak_to_39": "phones",
    "cmu_to_39": "phones",
    "phone_ids": "phones",
    "EditCounts": "per",
    "edit_distance": "per",
    "edit_counts": "per",
    "phone_error_rate": "per",
    "collapse_repeats": "per",
    "framewise_decode": "per",
    "ctc_greedy_decode": "per",
    "fbank": "features",
    "mfcc": "features",
    "add_deltas": "features",
    "cmvn": "features",
    "mfcc_39": "features",
    "compute_features": "features",
    "num_frames": "features",
    "Alignment": "align",
    "Utterance": "utterance",
    "CorpusConfig": "plan",
    "SPLITS": "plan",
    "CorpusInfo": "corpus",
    "generate_corpus": "corpus",
    "load_split": "corpus",
    "corpus_info": "corpus",
    "read_manifest": "corpus",
    "load_real_utterances": "real",
    "real_speech_available": "real",
    "RealSpeechUnavailableError": "real",
    "load_timit": "timit",
    "read_sphere": "timit",
    "CORE_TEST_SPEAKERS": "timit",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
