"""Carrying a Table I run's finished rows across sessions (tvm_bsp.experiments.table1.carry)."""

from __future__ import annotations

import importlib.util
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from test_speech_ship import finished_run  # noqa: F401  (the module-scoped tiny run)
from test_speech_train import needs_synth

from tvm_bsp.experiments.table1.carry import ROWS_MANIFEST, install_rows, save_rows
from tvm_bsp.experiments.table1.ship import file_sha256
from tvm_bsp.prune import load_bspc_dir
from tvm_bsp.speech.model import load_model
from tvm_bsp.speech.pretrained import PretrainedFormatError, load_pretrained, save_pretrained
from tvm_bsp.speech.train import evaluate_per

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "table1.py"


def _run(work, config, corpus, **kw):
    from tvm_bsp.experiments.table1.run import run_experiment

    return run_experiment(work, config, corpus_dir=corpus, progress=False, echo=None, **kw)


def _session_two(work, fresh, config, corpus, rows, **kw):
    """A new session: the dense checkpoint and the saved rows are all it has of ``work``."""
    ckpt = work / "dense" / "train.safetensors"
    return _run(fresh, config, corpus, resume_from=ckpt, rows_from=rows, **kw)


@needs_synth
def test_carried_rows_count_as_finished_and_equal_the_originals(
    finished_run,  # noqa: F811
    tiny_corpus,
    tmp_path,
):
    work, config, data = finished_run
    corpus, _ = tiny_corpus
    files = save_rows(work, tmp_path / "rows")
    assert [p.name for p in files] == ["bsp-10.safetensors", ROWS_MANIFEST]
    first = {p.name: p.read_bytes() for p in files}
    assert {p.name: p.read_bytes() for p in save_rows(work, tmp_path / "rows")} == first
    original = _run(work, config, corpus)
    assert original.trained_epochs == 0

    fresh = tmp_path / "fresh"
    summary = _session_two(work, fresh, config, corpus, tmp_path / "rows")
    assert summary.trained_epochs == 0  # nothing pruned: the carried row is finished
    assert summary.carried_rows == ["bsp-10"] and summary.skipped_rows == ["bsp-10"]
    assert summary.records == original.records  # the same PER, dense and pruned

    carried, _ = load_model(fresh / "rows" / "bsp-10" / "model.pt")
    model, _ = load_model(work / "rows" / "bsp-10" / "model.pt")
    for key, value in model.state_dict().items():
        assert torch.equal(carried.state_dict()[key], value), key
    decode = json.loads((fresh / "dense" / "eval.json").read_text())["decode"]
    row = json.loads((fresh / "rows" / "bsp-10" / "result.json").read_text())
    assert row["per"]["test"] == pytest.approx(evaluate_per(carried, data["test"], **decode))
    assert row["carried_from"] == str(tmp_path / "rows" / "bsp-10.safetensors")
    assert row["bspc_dir"] == str(fresh / "rows" / "bsp-10" / "bspc")
    # the rebuilt BSPC export equals the one made from the pruner's masks
    rebuilt, _ = load_bspc_dir(row["bspc_dir"])
    exported, _ = load_bspc_dir(work / "rows" / "bsp-10" / "bspc")
    assert sorted(rebuilt) == sorted(exported)
    for name, matrix in exported.items():
        assert np.array_equal(rebuilt[name].to_dense(), matrix.to_dense()), name
        assert rebuilt[name].nnz == matrix.nnz, name

    assert install_rows(fresh, tmp_path / "rows") == []  # finished rows are left alone
    again = save_rows(fresh, tmp_path / "again")  # a carried row saves to the same bytes
    assert {p.name: p.read_bytes() for p in again} == first


@needs_synth
def test_a_gradual_chain_continues_from_the_carried_row(
    finished_run,  # noqa: F811
    tiny_corpus,
    tmp_path,
):
    work, config, _ = finished_run
    corpus, _ = tiny_corpus
    save_rows(work, tmp_path / "rows")
    longer = replace(config, rates=(10, 29), gradual=True)
    summary = _session_two(work, tmp_path / "fresh", longer, corpus, tmp_path / "rows")
    assert summary.carried_rows == ["bsp-10"]
    assert summary.trained_epochs == config.prune.admm_epochs + config.prune.retrain_epochs
    row = json.loads((tmp_path / "fresh" / "rows" / "bsp-29" / "result.json").read_text())
    assert row["start_from"] == "bsp-10"
    assert row["achieved_rate"] == pytest.approx(29, rel=0.1)


@needs_synth
def test_rows_of_other_settings_are_refused_by_name(
    finished_run,  # noqa: F811
    tiny_corpus,
    tmp_path,
):
    work, config, _ = finished_run
    corpus, _ = tiny_corpus
    save_rows(work, tmp_path / "rows")
    other = replace(config, prune=replace(config.prune, retrain_epochs=3))
    with pytest.raises(ValueError, match=r"other settings .*differing: prune\.retrain_epochs\)"):
        _session_two(work, tmp_path / "a", other, corpus, tmp_path / "rows")
    assert not (tmp_path / "a" / "rows").exists()  # refused before anything was written
    with pytest.raises(ValueError, match=r"differing: dense_epochs\)"):
        _session_two(
            work, tmp_path / "b", replace(config, dense_epochs=2), corpus, tmp_path / "rows"
        )
    grid = replace(config, prune=replace(config.prune, row_blocks=3))  # a BSP-only setting
    with pytest.raises(ValueError, match=r"other settings .*differing: prune\.row_blocks\)"):
        _session_two(work, tmp_path / "c", grid, corpus, tmp_path / "rows")
    (tmp_path / "d").mkdir()
    shutil.copy(work / "settings.json", tmp_path / "d" / "settings.json")
    no_bsp = replace(grid, methods=("magnitude",))  # the BSP row is not this run's: not installed
    assert install_rows(tmp_path / "d", tmp_path / "rows", config=no_bsp) == []
    assert install_rows(tmp_path / "d", tmp_path / "rows", config=config) == ["bsp-10"]


def _relist(rows: Path, name: str = "bsp-10.safetensors", listed_as: str | None = None) -> None:
    """Make ``rows.json`` agree with the (altered) file, so the format checks are reached."""
    manifest = json.loads((rows / ROWS_MANIFEST).read_text())
    path = rows / name
    entry = {"bytes": path.stat().st_size, "sha256": file_sha256(path)}
    manifest["files"] = {listed_as or name: entry}
    (rows / ROWS_MANIFEST).write_text(json.dumps(manifest))


@needs_synth
def test_tampered_or_hostile_files_are_refused(finished_run, tmp_path):  # noqa: F811
    work, _, _ = finished_run
    rows = tmp_path / "rows"
    save_rows(work, rows)
    target = tmp_path / "w"
    target.mkdir()
    shutil.copy(work / "settings.json", target / "settings.json")
    file = rows / "bsp-10.safetensors"
    model, masks, info = load_pretrained(file)

    raw = bytearray(file.read_bytes())
    raw[-1] ^= 0xFF
    file.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="does not match"):
        install_rows(target, rows)

    file.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
    _relist(rows)
    with pytest.raises(PretrainedFormatError):
        install_rows(target, rows)

    specs = info["row"]["specs"]
    info["row"]["specs"] = {n: {**s, "row_blocks": None} for n, s in specs.items()}
    save_pretrained(model, file, masks=masks, info=info)
    _relist(rows)
    with pytest.raises(ValueError, match="no BSP grid"):
        install_rows(target, rows)

    _relist(rows, listed_as="../bsp-10.safetensors")
    with pytest.raises(ValueError, match="not a <method>-<rate> file"):
        install_rows(target, rows)
    assert not (target / "rows").exists()
    with pytest.raises(ValueError, match=r"no settings\.json"):
        install_rows(tmp_path / "empty", rows)


@needs_synth
def test_table1_script_saves_and_installs_rows(
    finished_run,  # noqa: F811
    tiny_corpus,
    tmp_path,
    monkeypatch,
    capsys,
):
    """``--save-rows`` with ``--report-only`` and ``--rows-from`` reach run_experiment and
    print what they did (the run itself uses the tiny settings, not the script's)."""
    spec = importlib.util.spec_from_file_location("table1_script", SCRIPT)
    table1 = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table1)
    work, config, _ = finished_run
    corpus, _ = tiny_corpus

    def tiny_run(work_dir, _config, **kw):
        keep = ("report_only", "resume_from", "rows_from", "jobs")
        return _run(work_dir, config, corpus, **{k: kw[k] for k in keep})

    monkeypatch.setattr(table1, "run_experiment", tiny_run)
    rows = tmp_path / "rows"
    assert table1.main(["--work", str(work), "--report-only", "--save-rows", str(rows)]) == 0
    assert f"saved {rows / 'bsp-10.safetensors'}" in capsys.readouterr().out
    fresh = tmp_path / "fresh"
    ckpt = work / "dense" / "train.safetensors"
    argv = ["--work", str(fresh), "--rows-from", str(rows), "--resume-from", str(ckpt)]
    assert table1.main([*argv, "--from-scratch", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"carried row bsp-10 from {rows}" in out and "trained 0 epochs" in out
