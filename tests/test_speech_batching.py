"""Chunked batches (tvm_bsp.speech.batching) against direct frame bookkeeping."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from tvm_bsp.speech.batching import (
    IGNORE,
    ChunkSettings,
    chunk_pieces,
    collate_pieces,
    group_pieces,
    utterance_pieces,
)
from tvm_bsp.speech.model import AcousticModel, ModelConfig
from tvm_bsp.speech.train import make_batches, train_epoch


@dataclass
class Utt:
    id: str
    features: np.ndarray
    labels: np.ndarray | None
    phones: list[str]


def _utts(lengths, seed=0, dim=39):
    rng = np.random.default_rng(seed)
    return [
        Utt(
            f"u{i}",
            rng.normal(size=(n, dim)).astype(np.float32),
            rng.integers(0, 39, size=n).astype(np.int64),
            ["sil", "aa", "sil"],
        )
        for i, n in enumerate(lengths)
    ]


@pytest.mark.parametrize("size,context", [(7, 0), (7, 3), (50, 20), (1, 0)])
def test_chunks_score_every_frame_once(size, context):
    lengths = [1, 6, 7, 8, 23, 100]
    pieces = chunk_pieces(lengths, ChunkSettings(size, context), np.random.default_rng(4))
    scored = {i: np.zeros(n, int) for i, n in enumerate(lengths)}
    for p in pieces:
        assert 0 <= p.start <= p.scored_from < p.stop <= lengths[p.utt]
        assert p.stop - p.scored_from <= size
        assert p.scored_from - p.start == min(context, p.scored_from)
        scored[p.utt][p.scored_from : p.stop] += 1
    for i, n in enumerate(lengths):
        assert scored[i].tolist() == [1] * n


def test_chunk_phase_depends_on_the_generator():
    a = chunk_pieces([300], ChunkSettings(100, 0), np.random.default_rng(1))
    b = chunk_pieces([300], ChunkSettings(100, 0), np.random.default_rng(2))
    assert [p.scored_from for p in a] != [p.scored_from for p in b]


def test_group_pieces_respects_the_frame_budget_and_keeps_every_piece():
    pieces = utterance_pieces([5, 9, 3, 30, 12, 12, 7])
    groups = group_pieces(pieces, 24, np.random.default_rng(0))
    flat = sorted(p.utt for g in groups for p in g)
    assert flat == list(range(7))
    for g in groups:
        assert len(g) == 1 or max(p.length for p in g) * len(g) <= 24


def test_make_batches_matches_a_direct_length_sort():
    utts = _utts([5, 9, 3, 30, 12, 12, 7])
    got = make_batches(utts, 24)  # no rng: ties keep index order
    order = sorted(range(7), key=lambda i: (len(utts[i].features), i))
    expected, current, longest = [], [], 0
    for i in order:
        n = len(utts[i].features)
        if current and max(longest, n) * (len(current) + 1) > 24:
            expected.append(current)
            current, longest = [], 0
        current.append(i)
        longest = max(longest, n)
    expected.append(current)
    assert got == expected


def test_collate_ignores_context_and_padding():
    utts = _utts([10, 4])
    pieces = chunk_pieces([10, 4], ChunkSettings(4, 2), np.random.default_rng(0))
    batch = collate_pieces(utts, pieces)
    for b, p in enumerate(pieces):
        u = utts[p.utt]
        np.testing.assert_array_equal(batch.x[: p.length, b].numpy(), u.features[p.start : p.stop])
        labels = batch.frame_labels[:, b].numpy()
        skip = p.scored_from - p.start
        assert (labels[:skip] == IGNORE).all() and (labels[p.length :] == IGNORE).all()
        np.testing.assert_array_equal(labels[skip : p.length], u.labels[p.scored_from : p.stop])
        assert batch.ids[b] == u.id


def test_chunked_epoch_reduces_the_loss_like_whole_utterances():
    utts = _utts([80, 120, 60, 150], seed=1)
    for u in utts:  # a learnable task: the label is the sign pattern of two features
        u.labels = ((u.features[:, 0] > 0) * 2 + (u.features[:, 1] > 0)).astype(np.int64)
    torch.manual_seed(0)
    model = AcousticModel(ModelConfig(hidden=16, layers=1))
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    losses = [
        train_epoch(
            model, utts, opt, epoch=e, progress=False, max_frames=400, chunks=ChunkSettings(30, 5)
        )["loss"]
        for e in range(12)
    ]
    assert losses[-1] < 0.6 * losses[0]


def test_chunks_refuse_ctc_models():
    model = AcousticModel(ModelConfig(hidden=8, layers=1, head="ctc"))
    opt = torch.optim.Adam(model.parameters())
    with pytest.raises(ValueError, match="framewise"):
        train_epoch(model, _utts([20]), opt, epoch=0, progress=False, chunks=ChunkSettings())


@pytest.mark.parametrize("bad", [dict(chunk_frames=0), dict(left_context=-1)])
def test_chunk_settings_are_checked(bad):
    with pytest.raises(ValueError):
        ChunkSettings(**bad)


def test_bf16_autocast_trains_like_float32():
    utts = _utts([60, 90, 40, 120], seed=5)
    for u in utts:
        u.labels = ((u.features[:, 0] > 0) * 2 + (u.features[:, 1] > 0)).astype(np.int64)
    final = {}
    for bf16 in (False, True):
        torch.manual_seed(0)
        model = AcousticModel(ModelConfig(hidden=16, layers=1))
        opt = torch.optim.Adam(model.parameters(), lr=2e-2)
        first = None
        for e in range(10):
            loss = train_epoch(
                model, utts, opt, epoch=e, progress=False, max_frames=400, bf16=bf16
            )["loss"]
            first = first if first is not None else loss
        final[bf16] = loss
        assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights fp32
    assert final[True] < 0.6 * first
    assert final[True] == pytest.approx(final[False], rel=0.15)
