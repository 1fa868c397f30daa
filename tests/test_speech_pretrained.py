"""Shipped model files (tvm_bsp.speech.pretrained) and safetensors training checkpoints."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import torch
from test_speech_batching import _utts

from tvm_bsp.speech.model import AcousticModel, ModelConfig, load_model
from tvm_bsp.speech.pretrained import (
    PretrainedFormatError,
    load_pretrained,
    read_meta,
    save_pretrained,
)
from tvm_bsp.speech.train import train_model
from tvm_bsp.speech.train_state import load_train_state


def _pruned(seed=0, keep=0.1):
    torch.manual_seed(seed)
    model = AcousticModel(ModelConfig(hidden=32, layers=2))
    masks = {}
    with torch.no_grad():
        for name, p in model.rnn.named_parameters():
            if name.startswith("weight"):
                mask = torch.rand(p.shape) < keep
                p.mul_(mask)
                masks[f"rnn.{name}"] = mask
    return model.eval(), masks


def test_round_trip_is_exact_and_sparse_weights_are_small(tmp_path):
    model, masks = _pruned()
    dense_file = save_pretrained(model, tmp_path / "dense.safetensors")
    sparse_file = save_pretrained(
        model, tmp_path / "p.safetensors", masks=masks, info={"rate": 10, "command": "x"}
    )
    back, got_masks, info = load_pretrained(sparse_file)
    for key, value in model.state_dict().items():
        assert torch.equal(back.state_dict()[key], value), key
    assert set(got_masks) == set(masks)
    for key in masks:
        assert torch.equal(got_masks[key], masks[key])
    assert info == {"rate": 10, "command": "x"}
    assert sparse_file.stat().st_size < 0.4 * dense_file.stat().st_size
    x = torch.randn(9, 2, 39)
    with torch.no_grad():
        torch.testing.assert_close(back(x), model(x), rtol=0, atol=0)
    loaded, meta = load_model(sparse_file)  # the generic loader takes it too
    assert meta["rate"] == 10 and loaded.config == model.config


def test_weights_outside_the_mask_are_refused(tmp_path):
    model, masks = _pruned()
    name = next(iter(masks))
    masks[name] = ~masks[name]
    with pytest.raises(ValueError, match="outside its mask"):
        save_pretrained(model, tmp_path / "bad.safetensors", masks=masks)


def _rewrite_header(path, change):
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    change(header)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + n :])


def test_hostile_files_are_refused_by_name(tmp_path):
    model, masks = _pruned()
    good = save_pretrained(model, tmp_path / "p.safetensors", masks=masks)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(PretrainedFormatError, match="not a safetensors model file"):
        load_pretrained(junk)

    def wrong_format(h):
        meta = json.loads(h["__metadata__"]["meta"])
        meta["format"] = "something else"
        h["__metadata__"]["meta"] = json.dumps(meta)

    other = tmp_path / "other.safetensors"
    other.write_bytes(good.read_bytes())
    _rewrite_header(other, wrong_format)
    with pytest.raises(PretrainedFormatError, match="is not a"):
        read_meta(other)

    def unmask(h):  # declares a sparse weight dense: the stored arrays no longer fit
        meta = json.loads(h["__metadata__"]["meta"])
        meta["masked"].pop(next(iter(meta["masked"])))
        h["__metadata__"]["meta"] = json.dumps(meta)

    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(good.read_bytes())
    _rewrite_header(broken, unmask)
    with pytest.raises(PretrainedFormatError, match="missing or of the wrong shape"):
        load_pretrained(broken)


def test_a_count_mismatch_between_mask_and_values_is_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    model, masks = _pruned()
    good = save_pretrained(model, tmp_path / "p.safetensors", masks=masks)
    tensors = load_file(str(good))
    name = next(iter(masks))
    tensors[f"{name}::values"] = tensors[f"{name}::values"][:-1].clone()
    from safetensors import safe_open

    with safe_open(str(good), framework="pt") as fh:
        metadata = fh.metadata()
    bad = tmp_path / "bad.safetensors"
    save_file(tensors, str(bad), metadata=metadata)
    with pytest.raises(PretrainedFormatError, match=r"keeps \d+ weights but stores"):
        load_pretrained(bad)


def test_safetensors_checkpoint_resumes_bitwise(tmp_path):
    utts = _utts([40, 25, 60, 33], seed=3)
    for u in utts:
        u.labels = (u.features[:, 0] > 0).astype(np.int64)

    def fresh():
        torch.manual_seed(0)
        return AcousticModel(ModelConfig(hidden=8, layers=2, dropout=0.3))

    def train(model, ckpt, log=lambda _: None):
        return train_model(
            model,
            utts,
            utts[:2],
            epochs=3,
            max_frames=100,
            checkpoint=ckpt,
            progress=False,
            log=log,
        )

    straight = fresh()
    train(straight, tmp_path / "a.safetensors")

    class StopTrainingError(Exception):
        pass

    def stop_at_third(line):
        if line.startswith("epoch 3/"):
            raise StopTrainingError  # killed before the third epoch's checkpoint

    ckpt = tmp_path / "b.safetensors"
    with pytest.raises(StopTrainingError):
        train(fresh(), ckpt, stop_at_third)
    state = load_train_state(ckpt, fresh(), None)
    assert state.epoch == 1 and len(state.history) == 2
    resumed = fresh()
    history = train(resumed, ckpt)
    assert [h["epoch"] for h in history] == [0, 1, 2]
    for key, value in straight.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key
