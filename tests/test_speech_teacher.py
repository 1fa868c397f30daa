"""Cached teacher scores (tvm_bsp.speech.teacher) against running the teacher itself."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_speech_batching import _utts

from tvm_bsp.speech.batching import ChunkSettings, chunk_pieces, collate_pieces, utterance_pieces
from tvm_bsp.speech.model import AcousticModel, ModelConfig
from tvm_bsp.speech.teacher import TeacherScores
from tvm_bsp.speech.train import distilled_loss_fn


@pytest.fixture(scope="module")
def teacher_and_utts():
    torch.manual_seed(0)
    teacher = AcousticModel(ModelConfig(hidden=12, layers=2))
    return teacher.eval(), _utts([30, 17, 45, 8], seed=2)


def test_cached_scores_equal_the_teacher_on_each_whole_utterance(teacher_and_utts):
    teacher, utts = teacher_and_utts
    cache = TeacherScores.compute(teacher, utts, max_frames=50)
    for u in utts:
        offset, frames = cache.index[u.id]
        with torch.no_grad():
            ref = teacher(torch.from_numpy(u.features)[:, None])[:, 0].numpy()
        np.testing.assert_allclose(cache.scores[offset : offset + frames], ref, atol=1e-5)


def test_chunk_batches_take_the_full_context_slice(teacher_and_utts):
    teacher, utts = teacher_and_utts
    cache = TeacherScores.compute(teacher, utts)
    pieces = chunk_pieces(
        [len(u.features) for u in utts], ChunkSettings(10, 3), np.random.default_rng(0)
    )
    batch = collate_pieces(utts, pieces)
    got = cache.for_batch(batch).numpy()
    for b, p in enumerate(pieces):
        with torch.no_grad():
            full = teacher(torch.from_numpy(utts[p.utt].features)[:, None])[:, 0].numpy()
        np.testing.assert_allclose(got[: p.length, b], full[p.start : p.stop], atol=1e-5)
        assert not got[p.length :, b].any()


def test_distillation_with_cache_equals_running_the_teacher(teacher_and_utts):
    teacher, utts = teacher_and_utts
    cache = TeacherScores.compute(teacher, utts)
    torch.manual_seed(1)
    student = AcousticModel(ModelConfig(hidden=8, layers=1))
    batch = collate_pieces(
        utts,
        [
            p
            for p in chunk_pieces(
                [len(u.features) for u in utts], ChunkSettings(1000, 0), np.random.default_rng(0)
            )
        ],
    )
    live = distilled_loss_fn(teacher, 0.7)(student, batch)
    cached = distilled_loss_fn(teacher, 0.7, scores=cache)(student, batch)
    assert float(cached.detach()) == pytest.approx(float(live.detach()), rel=1e-5)


def test_save_load_round_trip_memory_mapped(teacher_and_utts, tmp_path):
    teacher, utts = teacher_and_utts
    cache = TeacherScores.compute(teacher, utts)
    loaded = TeacherScores.load(cache.save(tmp_path / "t"))
    np.testing.assert_array_equal(np.asarray(loaded.scores), cache.scores)
    assert loaded.index == cache.index and loaded.covers(utts)
    assert not loaded.covers(_utts([31]))  # u0 with another length


def test_load_refuses_inconsistent_files(teacher_and_utts, tmp_path):
    teacher, utts = teacher_and_utts
    root = TeacherScores.compute(teacher, utts).save(tmp_path / "t")
    meta = json.loads((root / "index.json").read_text())
    meta["index"]["u0"] = [10**9, 5]
    (root / "index.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="outside"):
        TeacherScores.load(root)
    (root / "index.json").write_text("not json")
    with pytest.raises(ValueError, match="no readable teacher scores"):
        TeacherScores.load(root)
    (root / "index.json").write_text(json.dumps({"format": "x"}))
    with pytest.raises(ValueError, match="not a"):
        TeacherScores.load(root)


def test_duplicate_ids_and_unknown_utterances_are_refused(teacher_and_utts):
    teacher, utts = teacher_and_utts
    with pytest.raises(ValueError, match="unique"):
        TeacherScores.compute(teacher, [utts[0], utts[0]])
    cache = TeacherScores.compute(teacher, utts[:1])
    batch = collate_pieces(utts, utterance_pieces([len(u.features) for u in utts])[1:2])
    with pytest.raises(KeyError, match="no cached teacher scores"):
        cache.for_batch(batch)
