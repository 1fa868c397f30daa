"""Shipping a Table I run's models (tvm_bsp.experiments.table1.ship), and starting
 a run from them."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from test_speech_train import _tiny_experiment, needs_synth

from tvm_bsp.experiments.table1.ship import ship_run, verify_shipped
from tvm_bsp.speech.model import load_model
from tvm_bsp.speech.pretrained import load_pretrained
from tvm_bsp.speech.train import evaluate_per


@pytest.fixture(scope="module")
def finished_run(tiny_corpus, tmp_path_factory):
    from tvm_bsp.experiments.table1.run import run_experiment

    corpus, data = tiny_corpus
    work = tmp_path_factory.mktemp("run") / "work"
    config = _tiny_experiment(rates=(10,), methods=("bsp",))
    run_experiment(work, config, corpus_dir=corpus, progress=False, echo=None)
    return work, config, data


@needs_synth
def test_shipped_files_reload_equal_and_record_their_test_slice(finished_run, tmp_path):
    work, _, data = finished_run
    files = ship_run(work, tmp_path / "ship", command="cmd", test_utts=data["test"], test_slice=6)
    assert [p.name for p in files] == ["dense.safetensors", "bsp-10.safetensors", "manifest.json"]
    verify_shipped(tmp_path / "ship")
    decode = json.loads((work / "dense" / "eval.json").read_text())["decode"]
    for name, source in (("dense", work / "dense"), ("bsp-10", work / "rows" / "bsp-10")):
        shipped, masks, info = load_pretrained(tmp_path / "ship" / f"{name}.safetensors")
        original, _ = load_model(source / "model.pt")
        for key, value in original.state_dict().items():
            assert torch.equal(shipped.state_dict()[key], value), key
        assert info["command"] == "cmd" and bool(masks) == (name != "dense")
        assert info["test_slice"]["per"] == pytest.approx(
            evaluate_per(original, data["test"][:6], **decode), abs=1e-9
        )
    row = load_pretrained(tmp_path / "ship" / "bsp-10.safetensors")[2]["row"]
    assert row["achieved_rate"] == pytest.approx(10, rel=0.05)


@needs_synth
def test_tampered_shipped_file_fails_verification(finished_run, tmp_path):
    work, _, data = finished_run
    ship_run(work, tmp_path / "s", command="cmd", test_utts=data["test"], test_slice=2)
    target = tmp_path / "s" / "bsp-10.safetensors"
    raw = bytearray(target.read_bytes())
    raw[-1] ^= 0xFF
    target.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="does not match"):
        verify_shipped(tmp_path / "s")


def _run_from_shipped(work_dir, config, corpus, shipped):
    from tvm_bsp.experiments.table1.run import run_experiment

    return run_experiment(
        work_dir, config, corpus_dir=corpus, progress=False, echo=None, dense_from=shipped
    )


@needs_synth
def test_a_run_starts_from_the_shipped_dense_model(finished_run, tiny_corpus, tmp_path):
    work, config, data = finished_run
    ship_run(work, tmp_path / "s", command="cmd", test_utts=data["test"], test_slice=2)
    corpus, _ = tiny_corpus
    fresh, shipped = tmp_path / "fresh", tmp_path / "s" / "dense.safetensors"
    summary = _run_from_shipped(fresh, replace(config, methods=()), corpus, shipped)
    assert summary.trained_epochs == 0  # nothing trained: the shipped model was adopted
    adopted, _ = load_model(fresh / "dense" / "model.pt")
    original, _ = load_model(work / "dense" / "model.pt")
    for key, value in original.state_dict().items():
        assert torch.equal(adopted.state_dict()[key], value)
    other = replace(config, dense_epochs=2, methods=())
    with pytest.raises(ValueError, match=r"other settings .*dense_epochs"):
        _run_from_shipped(tmp_path / "other", other, corpus, shipped)


@needs_synth
def test_another_pruning_schedule_still_adopts_the_shipped_dense_model(
    finished_run, tiny_corpus, tmp_path
):
    """The dense model does not depend on pruning settings: a run with another schedule (or
    no gradual chain) adopts it instead of training one."""
    work, config, data = finished_run
    ship_run(work, tmp_path / "s", command="cmd", test_utts=data["test"], test_slice=2)
    corpus, _ = tiny_corpus
    schedule = replace(config.prune, retrain_epochs=config.prune.retrain_epochs + 1)
    other = replace(config, prune=schedule, gradual=not config.gradual, methods=())
    summary = _run_from_shipped(
        tmp_path / "fresh", other, corpus, tmp_path / "s" / "dense.safetensors"
    )
    assert summary.trained_epochs == 0
