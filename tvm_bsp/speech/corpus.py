"""Offline synthetic speech corpus: generate (resumable, deterministic) and load.

Layout of a corpus folder::

    .lock                     held (flock) while a generator runs in the folder
    corpus.json               settings, voice/word splits, completion flag and summary
    audio/{split}/{id}.npz    int16 16 kHz audio of each utterance
    {split}.jsonl             manifest: one record per finished utterance (render.py)
    features/{split}.{kind}.npz   cached features + frame labels (cache.py)

Generation renders the plans (:mod:`tvm_bsp.speech.plan`) split by split in chunks of
``chunk_size`` utterances. An utterance is finished when its record is appended to the
split's manifest, which happens after its audio file has been atomically written. A second
call with the same arguments resumes: finished utterances are skipped, the rest rendered.

eSpeak NG's output depends on the library's state, i.e. on the utterances it synthesised
before (see :mod:`tvm_bsp.speech.synth`). Each chunk is therefore rendered by a freshly
loaded private library instance, and on resume the chunk's finished eSpeak utterances are
synthesised again (about 2 ms each) without being stored, to bring the instance to the same
state. The result is identical, byte for byte, for the same seed and sizes, whether the
generation ran in one go or was interrupted any number of times.

When all splits are rendered, each manifest is rewritten in index order, the MFCC caches are
built, and ``corpus.json`` is marked complete.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from tqdm.auto import tqdm

from tvm_bsp.speech.cache import build_cache, load_cache
from tvm_bsp.speech.flite import flite_available
from tvm_bsp.speech.plan import (
    SPLITS,
    CorpusConfig,
    UtterancePlan,
    load_words,
    plan_utterance,
    split_voices,
    split_words,
)
from tvm_bsp.speech.render import render, synthesize_plan
from tvm_bsp.speech.storage import append_jsonl, atomic_write_text, dumps, read_jsonl, write_jsonl
from tvm_bsp.speech.synth import EspeakEngine, espeak_available
from tvm_bsp.speech.utterance import Utterance

FORMAT = "tvm-bsp-synthetic-speech"
VERSION = 1
_SETTINGS_KEYS = (
    "format",
    "version",
    "config",
    "sizes",
    "word_list_sha256",
    "voices",
    "vocabulary",
)


@dataclass(frozen=True)
class CorpusInfo:
    """Summary of a corpus folder.

    Attributes
    ----------
    root : pathlib.Path
        The folder.
    seed : int
        Master seed.
    sizes : dict
        Planned utterances per split.
    complete : bool
        Whether every utterance is rendered and the MFCC caches are built.
    finished : dict
        Rendered utterances per split.
    hours : dict
        Audio hours rendered per split.
    speakers : dict
        Sorted distinct voices (``engine:voice``) used per split.
    vocabulary : dict
        Size of each split's word pool.
    config : dict
        The :class:`~tvm_bsp.speech.plan.CorpusConfig` used, as a dict.
    """

    root: Path
    seed: int
    sizes: dict[str, int]
    complete: bool
    finished: dict[str, int]
    hours: dict[str, float]
    speakers: dict[str, list[str]]
    vocabulary: dict[str, int]
    config: dict


def _header(config: CorpusConfig, sizes: dict[str, int]) -> tuple[dict, dict[str, list[str]]]:
    words = load_words(config.word_list)
    pools = split_words(words, config.seed, config.heldout_word_fraction)
    digest = hashlib.sha256("\n".join(words).encode()).hexdigest()
    header = {
        "format": FORMAT,
        "version": VERSION,
        "config": config.to_json(),
        "sizes": dict(sizes),
        "word_list_sha256": digest,
        "voices": split_voices(config.seed, config.heldout_variants),
        "vocabulary": {s: len(pools[s]) for s in SPLITS},
    }
    return header, pools


def _plans(
    header: dict, config: CorpusConfig, pools: dict[str, list[str]]
) -> dict[str, list[UtterancePlan]]:
    return {
        split: [
            plan_utterance(config, split, i, pools[split], header["voices"][split])
            for i in range(header["sizes"][split])
        ]
        for split in SPLITS
    }


def _finished(root: Path, split: str, plans: list[UtterancePlan]) -> dict[str, dict]:
    """Valid records of a split's manifest (planned id, audio present); rewrites the file clean."""
    planned = {p.id for p in plans}
    records = {}
    for r in read_jsonl(root / f"{split}.jsonl"):
        if r.get("id") in planned and (root / r.get("audio", "")).exists():
            records[r["id"]] = r
    write_jsonl(root / f"{split}.jsonl", sorted(records.values(), key=lambda r: r["index"]))
    return records


def _remove_temporaries(root: Path) -> None:
    for tmp in root.rglob(".*.tmp"):
        tmp.unlink(missing_ok=True)


def generate_corpus(
    out_dir: str | os.PathLike,
    n_train: int,
    n_dev: int,
    n_test: int,
    seed: int = 0,
    progress: bool = True,
    *,
    config: CorpusConfig | None = None,
    max_new: int | None = None,
) -> CorpusInfo:
    """Generate (or resume) a synthetic corpus with held-out voices and words.

    Parameters
    ----------
    out_dir : path
        Corpus folder (created if needed).
    n_train, n_dev, n_test : int
        Utterances per split.
    seed : int
        Master seed (overrides ``config.seed``).
    progress : bool
        Show progress bars.
    config : CorpusConfig, optional
        Other settings (defaults of :class:`~tvm_bsp.speech.plan.CorpusConfig`).
    max_new : int, optional
        Stop after rendering this many utterances; the corpus stays incomplete and a later
        call continues it.

    Returns
    -------
    CorpusInfo
        What the folder holds.

    Raises
    ------
    ValueError
        If the folder holds a corpus made with other settings or sizes.
    RuntimeError
        If eSpeak NG is not installed.
    """
    if not espeak_available():
        raise RuntimeError("libespeak-ng is not installed: run scripts/setup_speech.sh")
    config = replace(config or CorpusConfig(), seed=int(seed))
    if config.flite_fraction > 0 and not flite_available():
        warnings.warn("flite is not installed: generating with eSpeak NG only", stacklevel=2)
        config = replace(config, flite_fraction=0.0)
    sizes = {"train": int(n_train), "dev": int(n_dev), "test": int(n_test)}
    if min(sizes.values()) < 0:
        raise ValueError(f"negative split size in {sizes}")
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    with _exclusive(root):
        return _generate(root, config, sizes, progress, max_new)


@contextmanager
def _exclusive(root: Path) -> Iterator[None]:
    """Hold an exclusive lock on the corpus folder (one generator at a time)."""
    with open(root / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            raise RuntimeError(f"another process is generating into {root}") from err
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _generate(
    root: Path, config: CorpusConfig, sizes: dict[str, int], progress: bool, max_new: int | None
) -> CorpusInfo:
    header, pools = _header(config, sizes)
    meta_path = root / "corpus.json"
    if meta_path.exists():
        old = _read_meta(root)
        if {k: old.get(k) for k in _SETTINGS_KEYS} != header:
            raise ValueError(
                f"{root} holds a corpus with other settings or sizes; use a new folder"
            )
        if old.get("complete"):
            return corpus_info(root)
    else:
        atomic_write_text(meta_path, dumps({**header, "complete": False}) + "\n")
    _remove_temporaries(root)

    plans = _plans(header, config, pools)
    done = {split: _finished(root, split, plans[split]) for split in SPLITS}
    total = sum(sizes.values())
    rendered = 0
    with tqdm(
        total=total,
        initial=sum(len(d) for d in done.values()),
        desc="synthesising",
        unit="utt",
        disable=not progress,
    ) as bar:
        for split in SPLITS:
            manifest = root / f"{split}.jsonl"
            for start in range(0, sizes[split], config.chunk_size):
                chunk = plans[split][start : start + config.chunk_size]
                if all(p.id in done[split] for p in chunk):
                    continue
                if max_new is not None and rendered >= max_new:
                    return corpus_info(root)
                with EspeakEngine(private=True) as engine:
                    for plan in chunk:
                        finished = plan.id in done[split]
                        if finished and plan.engine != "espeak":
                            continue
                        synthesis = synthesize_plan(plan, engine)  # replays finished eSpeak ones
                        if finished:
                            continue
                        if max_new is not None and rendered >= max_new:
                            return corpus_info(root)
                        record = render(plan, synthesis, root)
                        append_jsonl(manifest, record)
                        done[split][plan.id] = record
                        rendered += 1
                        bar.update(1)

    for split in SPLITS:
        records = sorted(done[split].values(), key=lambda r: r["index"])
        write_jsonl(root / f"{split}.jsonl", records)
        build_cache(root, split, records, "mfcc", progress)
    meta = {**header, "complete": True, "summary": _summary(done)}
    atomic_write_text(meta_path, dumps(meta) + "\n")
    return corpus_info(root)


def _summary(done: dict[str, dict[str, dict]]) -> dict:
    return {
        split: {
            "utterances": len(records),
            "hours": round(sum(r["duration"] for r in records.values()) / 3600, 4),
            "speakers": len({r["speaker"] for r in records.values()}),
        }
        for split, records in done.items()
    }


def _read_meta(root: Path) -> dict:
    path = Path(root) / "corpus.json"
    if not path.exists():
        raise FileNotFoundError(f"{root} is not a corpus folder (no corpus.json)")
    meta = json.loads(path.read_text(encoding="utf-8"))
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not a {FORMAT} corpus")
    return meta


def read_manifest(corpus_dir: str | os.PathLike, split: str) -> list[dict]:
    """Return a split's manifest records in index order."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    records = read_jsonl(Path(corpus_dir) / f"{split}.jsonl")
    return sorted(records, key=lambda r: r["index"])


def corpus_info(corpus_dir: str | os.PathLike) -> CorpusInfo:
    """Describe a corpus folder (complete or not)."""
    root = Path(corpus_dir)
    meta = _read_meta(root)
    records = {split: read_manifest(root, split) for split in SPLITS}
    return CorpusInfo(
        root=root,
        seed=int(meta["config"]["seed"]),
        sizes={s: int(meta["sizes"][s]) for s in SPLITS},
        complete=bool(meta.get("complete")),
        finished={s: len(r) for s, r in records.items()},
        hours={s: round(sum(x["duration"] for x in r) / 3600, 4) for s, r in records.items()},
        speakers={s: sorted({x["speaker"] for x in r}) for s, r in records.items()},
        vocabulary={s: int(meta["vocabulary"][s]) for s in SPLITS},
        config=dict(meta["config"]),
    )


def load_split(corpus_dir: str | os.PathLike, split: str, feature: str = "mfcc") -> list[Utterance]:
    """Load a split's utterances with features and framewise labels.

    Parameters
    ----------
    corpus_dir : path
        A complete corpus folder.
    split : {"train", "dev", "test"}
        Which split.
    feature : {"mfcc", "fbank"}
        ``"mfcc"``: 39-dim MFCC + deltas + delta-deltas; ``"fbank"``: 40 log-mel bins; both
        with per-utterance CMVN. The split's cache is built on first use.

    Returns
    -------
    list of Utterance
        In index order; ``features`` float32 ``(T, D)``, ``labels`` int64 ``(T,)`` in
        ``0..38``, ``phones`` the 39-class sequence.

    Raises
    ------
    RuntimeError
        If the corpus is incomplete.
    """
    root = Path(corpus_dir)
    if not _read_meta(root).get("complete"):
        raise RuntimeError(f"{root} is incomplete: call generate_corpus again to finish it")
    records = read_manifest(root, split)
    cached = load_cache(root, split, records, feature)
    if cached is None:
        build_cache(root, split, records, feature)
        cached = load_cache(root, split, records, feature)
        assert cached is not None
    feats, labels, offsets = cached
    return [
        Utterance(
            id=r["id"],
            features=feats[offsets[i] : offsets[i + 1]],
            labels=labels[offsets[i] : offsets[i + 1]],
            phones=list(r["phones"]),
            speaker=r["speaker"],
            text=r["text"],
        )
        for i, r in enumerate(records)
    ]
