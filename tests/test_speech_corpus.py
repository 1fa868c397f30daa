"""The synthetic corpus: labels vs audio, determinism, resuming, held-out splits."""

from __future__ import annotations

import fcntl
import itertools
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from tvm_bsp.speech import flite, synth
from tvm_bsp.speech.align import Alignment
from tvm_bsp.speech.corpus import corpus_info, generate_corpus, load_split, read_manifest
from tvm_bsp.speech.features import num_frames
from tvm_bsp.speech.phones import PHONE_TO_ID
from tvm_bsp.speech.plan import (
    SPLITS,
    CorpusConfig,
    load_words,
    plan_utterance,
    split_voices,
    split_words,
)
from tvm_bsp.speech.storage import load_audio

pytestmark = pytest.mark.skipif(
    not (synth.espeak_available() and Path("/usr/share/dict/american-english").exists()),
    reason="eSpeak NG or wamerican missing: scripts/setup_speech.sh",
)

SIZES = (14, 5, 5)
CONFIG = CorpusConfig(chunk_size=6, flite_fraction=0.3)


def _generate(path: Path, seed: int = 3, **kwargs):
    return generate_corpus(path, *SIZES, seed=seed, progress=False, config=CONFIG, **kwargs)


def _snapshot(root: Path) -> dict[str, bytes]:
    """Every file of a corpus folder by relative path (but caches built on demand later)."""
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.endswith(".fbank.npz"))
    return {str(p.relative_to(root)): p.read_bytes() for p in files}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    info = _generate(root)
    assert info.complete
    return root


def test_info_and_engines(corpus: Path) -> None:
    info = corpus_info(corpus)
    assert info.complete and info.seed == 3
    assert info.sizes == info.finished == dict(zip(SPLITS, SIZES, strict=True))
    assert all(h > 0 for h in info.hours.values())
    engines = {s.split(":")[0] for split in SPLITS for s in info.speakers[split]}
    assert "espeak" in engines
    if flite.flite_available():
        assert "flite" in engines
    # a complete corpus is returned as is
    assert _generate(corpus).finished == info.finished


def test_labels_line_up_with_audio(corpus: Path) -> None:
    for split in SPLITS:
        records = read_manifest(corpus, split)
        utterances = load_split(corpus, split)
        assert [u.id for u in utterances] == [r["id"] for r in records]
        for r, u in zip(records, utterances, strict=True):
            audio, rate = load_audio(corpus / r["audio"])
            assert rate == 16000 and audio.dtype == np.int16
            assert len(audio) == r["num_samples"]
            segs = r["segments"]
            assert segs[0][1] == 0 and segs[-1][2] == len(audio)  # last phone ends at the audio end
            assert all(a < b for _, a, b in segs)
            assert all(prev[2] == cur[1] for prev, cur in itertools.pairwise(segs))
            assert [p for p, _, _ in segs] == r["phones"] == u.phones
            assert u.phones[0] == u.phones[-1] == "sil"
            frames = num_frames(len(audio))
            assert u.features.shape == (frames, 39) and u.features.dtype == np.float32
            assert u.labels.shape == (frames,) and u.labels.dtype == np.int64
            assert u.labels.min() >= 0 and u.labels.max() <= 38
            np.testing.assert_array_equal(
                u.labels, Alignment.from_segments(segs).frame_labels(frames)
            )
            assert set(u.labels.tolist()) <= {PHONE_TO_ID[p] for p in u.phones}
            assert np.isfinite(u.features).all()


def test_fbank_features(corpus: Path) -> None:
    utterances = load_split(corpus, "dev", feature="fbank")
    assert (corpus / "features" / "dev.fbank.npz").exists()
    assert all(u.features.shape == (u.labels.shape[0], 40) for u in utterances)


def test_same_seed_same_corpus(corpus: Path, tmp_path: Path) -> None:
    _generate(tmp_path / "again")
    assert _snapshot(tmp_path / "again") == _snapshot(corpus)
    other = generate_corpus(tmp_path / "other", 3, 1, 1, seed=4, progress=False, config=CONFIG)
    assert (
        read_manifest(other.root, "train")[0]["text"] != read_manifest(corpus, "train")[0]["text"]
    )


def test_resume_gives_the_same_corpus(corpus: Path, tmp_path: Path) -> None:
    root = tmp_path / "resumed"
    info = _generate(root, max_new=4)  # stops inside the first chunk
    assert not info.complete and info.finished["train"] == 4
    with pytest.raises(RuntimeError):
        load_split(root, "train")
    # debris of a crash: a torn manifest line, an orphan audio file, a temporary file
    with open(root / "train.jsonl", "a") as f:
        f.write('{"id": "train-000004", "aud')
    (root / "audio" / "train" / "train-000005.npz").write_bytes(b"garbage")
    (root / "audio" / "train" / ".train-000006.npz.123.tmp").write_bytes(b"partial")
    info = _generate(root, max_new=9)  # finishes chunk 1, replaying its first 4 utterances
    assert info.finished["train"] == 13
    assert _generate(root).complete
    assert _snapshot(root) == _snapshot(corpus)


def test_other_settings_are_refused(corpus: Path) -> None:
    with pytest.raises(ValueError):
        generate_corpus(corpus, 15, 5, 5, seed=3, progress=False, config=CONFIG)
    with pytest.raises(ValueError):
        generate_corpus(corpus, *SIZES, seed=3, progress=False, config=CorpusConfig(chunk_size=7))


def test_concurrent_generation_is_refused(corpus: Path) -> None:
    with open(corpus / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        with pytest.raises(RuntimeError, match="another process"):
            _generate(corpus)


def test_heldout_voices_and_words_are_disjoint(corpus: Path) -> None:
    config = CorpusConfig(seed=3)
    words = load_words()
    pools = split_words(words, 3, config.heldout_word_fraction)
    voices = split_voices(3, config.heldout_variants)
    for a, b in (("train", "dev"), ("train", "test"), ("dev", "test")):
        assert not set(pools[a]) & set(pools[b])
        assert not set(voices[a]["espeak_variants"]) & set(voices[b]["espeak_variants"])
        assert not set(voices[a]["flite_voices"]) & set(voices[b]["flite_voices"])
    assert sorted(pools["train"] + pools["dev"] + pools["test"]) == words
    # plans only draw from their split's pools
    plans = {
        s: [plan_utterance(config, s, i, pools[s], voices[s]) for i in range(300)] for s in SPLITS
    }
    used = {
        s: ({w for p in plans[s] for w in p.words}, {p.speaker for p in plans[s]}) for s in SPLITS
    }
    for held in ("dev", "test"):
        assert not used[held][0] & used["train"][0]
        assert not used[held][1] & used["train"][1]
        assert used[held][0] <= set(pools[held])
    # and so does the rendered corpus
    train_words = {w for r in read_manifest(corpus, "train") for w in r["words"]}
    train_speakers = {r["speaker"] for r in read_manifest(corpus, "train")}
    for held in ("dev", "test"):
        for r in read_manifest(corpus, held):
            assert not set(r["words"]) & train_words
            assert r["speaker"] not in train_speakers


@pytest.mark.slow
def test_killed_generation_resumes(corpus: Path, tmp_path: Path) -> None:
    root = tmp_path / "killed"
    script = textwrap.dedent(
        f"""
        from tvm_bsp.speech.corpus import generate_corpus
        from tvm_bsp.speech.plan import CorpusConfig
        generate_corpus({str(root)!r}, *{SIZES!r}, seed=3, progress=False,
                        config=CorpusConfig(chunk_size=6, flite_fraction=0.3))
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script])
    manifest = root / "train.jsonl"
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        if manifest.exists() and manifest.read_text().count("\n") >= 3:
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.01)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the generation ended before it was killed"
    assert not corpus_info(root).complete
    assert _generate(root).complete
    assert _snapshot(root) == _snapshot(corpus)
