"""Training, decoding, pruning and the Table I experiment on a tiny generated corpus."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from tvm_bsp.bspc.matrix import BSPCMatrix
from tvm_bsp.speech import synth
from tvm_bsp.speech.model import AcousticModel, ModelConfig, load_model, save_model
from tvm_bsp.speech.phones import PHONES_39, phone_ids
from tvm_bsp.speech.train import (
    decode,
    evaluate_per,
    make_batches,
    remove_short_runs,
    smoothed_framewise_decode,
    train_epoch,
)

needs_synth = pytest.mark.skipif(
    not (synth.espeak_available() and Path("/usr/share/dict/american-english").exists()),
    reason="eSpeak NG / word list not installed (scripts/setup_speech.sh)",
)


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread: much faster than two on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ----------------------------------------------------------------------------- decoding


@dataclass
class Utt:
    features: np.ndarray
    labels: np.ndarray | None
    phones: list[str]


class Oracle(AcousticModel):
    """Scores = 10 * the first ``classes`` feature dims: features are one-hot class codes."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 10.0 * x[..., : self.config.classes]


def _one_hot_frames(classes: list[int], width: int) -> np.ndarray:
    out = np.zeros((len(classes), width), np.float32)
    out[np.arange(len(classes)), classes] = 1.0
    return out


def test_remove_short_runs_hand_cases():
    assert remove_short_runs([1, 1, 1, 2, 1, 1, 1], 2) == [1] * 7
    assert remove_short_runs([1, 1, 1, 2, 3, 3, 3, 3], 2) == [1, 1, 1, 3, 3, 3, 3, 3]
    assert remove_short_runs([5, 5, 6, 6, 7, 7], 2) == [5, 5, 6, 6, 7, 7]
    assert remove_short_runs([1, 2, 3], 2) == [1, 2, 3]  # only short runs: unchanged
    assert remove_short_runs([4, 4, 1], 1) == [4, 4, 1]


def test_smoothed_decode_removes_flicker():
    frames = [0] * 5 + [3] * 6 + [4] + [3] * 2 + [7] * 6 + [0] * 4
    scores = torch.from_numpy(_one_hot_frames(frames, 39))
    assert smoothed_framewise_decode(scores, smooth=1, min_run=1) == [0, 3, 4, 3, 7, 0]
    assert smoothed_framewise_decode(scores, smooth=1, min_run=2) == [0, 3, 7, 0]
    assert smoothed_framewise_decode(scores, smooth=3, min_run=2) == [0, 3, 7, 0]


def test_per_of_constructed_framewise_model_against_hand_count():
    sil, aa, b, iy = (PHONES_39.index(p) for p in ("sil", "aa", "b", "iy"))
    # utterance 1: exact but with a one-frame flicker; utterance 2: "b" is missed
    u1 = [sil] * 4 + [aa] * 5 + [iy] + [aa] * 3 + [b] * 5 + [sil] * 4
    u2 = [sil] * 4 + [iy] * 8 + [sil] * 4
    utts = [
        Utt(_one_hot_frames(u1, 39), None, ["sil", "aa", "b", "sil"]),
        Utt(_one_hot_frames(u2, 39), None, ["sil", "iy", "b", "sil"]),
    ]
    model = Oracle(ModelConfig(input_dim=39, hidden=4, layers=1, head="framewise"))
    assert decode(model, utts, smooth=1, min_run=1)[0] == [sil, aa, iy, aa, b, sil]
    # raw: u1 has 2 insertions, u2 one deletion -> 3 errors / 8 reference phones
    assert evaluate_per(model, utts, smooth=1, min_run=1) == pytest.approx(100 * 3 / 8)
    # smoothed: the flicker is gone -> only the deletion remains
    assert evaluate_per(model, utts, smooth=1, min_run=2) == pytest.approx(100 * 1 / 8)


def test_ctc_decode_of_constructed_model():
    ids = phone_ids(["sil", "aa", "aa", "sil"])
    blank = 0
    frames = [ids[0] + 1, blank, ids[1] + 1, ids[1] + 1, blank, ids[2] + 1, ids[3] + 1]
    utt = Utt(_one_hot_frames(frames, 40), None, ["sil", "aa", "aa", "sil"])
    model = Oracle(ModelConfig(input_dim=40, hidden=4, layers=1, head="ctc"))
    assert decode(model, [utt]) == [list(ids)]
    assert evaluate_per(model, [utt]) == 0.0


def test_make_batches_respects_frame_budget():
    utts = [Utt(np.zeros((n, 3), np.float32), None, ["sil"]) for n in (5, 9, 3, 7, 20, 8)]
    batches = make_batches(utts, 20, np.random.default_rng(0))
    assert sorted(i for b in batches for i in b) == list(range(6))
    for b in batches:
        lengths = [len(utts[i].features) for i in b]
        assert len(b) == 1 or max(lengths) * len(b) <= 20


def test_save_and_load_model(tmp_path):
    model = AcousticModel(ModelConfig(hidden=8, layers=2))
    path, cfg = save_model(model, tmp_path / "m.pt", extra={"per": {"test": 1.5}})
    again, extra = load_model(path)
    assert extra == {"per": {"test": 1.5}}
    assert again.config == model.config
    for (n, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items(), strict=True):
        assert torch.equal(a, b), n
    cfg.write_text("{}")
    with pytest.raises(ValueError, match="does not describe"):
        load_model(path)


# ----------------------------------------------------------------------------- tiny corpus
# (the ``tiny_corpus`` fixture lives in conftest.py)


@needs_synth
def test_training_decreases_loss(tiny_corpus):
    _, data = tiny_corpus
    torch.manual_seed(0)
    model = AcousticModel(ModelConfig(hidden=16, layers=1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = [
        train_epoch(model, data["train"], opt, epoch=e, progress=False, max_frames=4000)["loss"]
        for e in range(4)
    ]
    assert losses[-1] < losses[0] - 0.3, losses
    per = evaluate_per(model, data["dev"])
    assert 0 < per < 200


@needs_synth
@pytest.mark.parametrize(("method", "rate"), [("bsp", 10), ("bsp", 29), ("balanced", 19)])
def test_prune_structure_and_rate(tiny_corpus, method, rate):
    from tvm_bsp.speech.prune_run import PruneSettings, prune_model

    _, data = tiny_corpus
    torch.manual_seed(0)
    dense = AcousticModel(ModelConfig(hidden=16, layers=2))
    before = {k: v.clone() for k, v in dense.state_dict().items()}
    settings = PruneSettings(
        row_blocks=6,
        col_blocks=4,
        input_col_blocks=4,
        balanced_groups=4,
        admm_epochs=1,
        retrain_epochs=1,
        utts_per_epoch=10,
        max_frames=4000,
    )
    out = prune_model(dense, data["train"], method, rate, settings, progress=False)
    for k, v in dense.state_dict().items():  # the dense model is untouched
        assert torch.equal(v, before[k])
    assert abs(out.achieved_rate - rate) / rate < 0.05
    params = dict(out.model.named_parameters())
    assert set(out.masks) == {f"rnn.weight_{g}_l{k}" for k in (0, 1) for g in ("hh", "ih")}
    for name, mask in out.masks.items():
        w = params[name].detach()
        assert not w[~mask].any()  # pruned weights are exact zeros
        if method == "bsp":
            spec = out.config[name]
            m = BSPCMatrix.from_dense(w.numpy(), mask.numpy(), spec.row_blocks, spec.col_blocks)
            np.testing.assert_array_equal(m.to_dense(), np.where(mask, w, 0))
        else:  # ESE: every group keeps the same count
            counts = [int(mask[g::4].sum()) for g in range(4)]
            assert max(counts) - min(counts) <= 0, counts
    kept = sum(int(m.sum()) for m in out.masks.values())
    assert out.kept == kept and math.isclose(out.achieved_rate, out.total / kept)


# ----------------------------------------------------------------------------- experiment


def _tiny_experiment(rates=(10,), methods=("bsp", "magnitude")):
    from tvm_bsp.experiments.table1.run import ExperimentConfig
    from tvm_bsp.speech.prune_run import PruneSettings

    return ExperimentConfig(
        n_train=40,
        n_dev=10,
        n_test=10,
        corpus_seed=3,
        model=ModelConfig(hidden=16, layers=2),
        dense_epochs=1,
        max_frames=4000,
        rates=rates,
        methods=methods,
        splits=("test", "dev"),
        prune=PruneSettings(
            row_blocks=6,
            col_blocks=4,
            input_col_blocks=4,
            balanced_groups=4,
            admm_epochs=1,
            retrain_epochs=1,
            utts_per_epoch=10,
            max_frames=4000,
        ),
        decode_grid=((3, 2), (5, 3)),
    )


def _events(work: Path) -> list[dict]:
    path = work / "events.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


@needs_synth
def test_experiment_records_and_resume(tiny_corpus, tmp_path):
    from tvm_bsp.experiments.table1.report import markdown_table, plot
    from tvm_bsp.experiments.table1.run import run_experiment

    corpus, _ = tiny_corpus
    work = tmp_path / "work"
    config = _tiny_experiment()
    first = run_experiment(work, config, corpus_dir=corpus, progress=False, echo=None)
    assert first.trained_epochs == 1 + 2 * 2  # dense epoch + 2 rows x (1 ADMM + 1 retrain)
    n_events = len(_events(work))
    assert n_events == first.trained_epochs
    assert len(first.records) == 2 * 2  # rows x splits
    for rec in first.records:
        assert rec["method"] in ("bsp", "magnitude") and rec["split"] in ("test", "dev")
        assert rec["rate"] == 10
        for key in ("per", "per_dense", "achieved_rate"):
            assert isinstance(rec[key], float) and math.isfinite(rec[key])
        assert abs(rec["achieved_rate"] - 10) / 10 < 0.05
        assert rec["per_dense"] == first.dense["per"][rec["split"]]
    doc = first.to_json(config)
    json.loads(json.dumps(doc))  # JSON-able
    assert "| 10 (achieved" in markdown_table(doc)
    plot(doc, tmp_path / "t.png")
    assert (tmp_path / "t.png").stat().st_size > 1000

    # rerun: nothing is trained, same records
    second = run_experiment(work, config, corpus_dir=corpus, progress=False, echo=None)
    assert second.trained_epochs == 0
    assert len(_events(work)) == n_events
    assert sorted(second.skipped_rows) == ["bsp-10", "magnitude-10"]
    assert [r["per"] for r in second.records] == [r["per"] for r in first.records]

    # a half-done row (checkpoint complete, result missing) resumes without training
    (work / "rows" / "bsp-10" / "result.json").unlink()
    third = run_experiment(work, config, corpus_dir=corpus, progress=False, echo=None)
    assert third.trained_epochs == 0
    assert third.records == second.records or [r["per"] for r in third.records] == [
        r["per"] for r in second.records
    ]

    # other settings in the same work directory are refused
    other = _tiny_experiment()
    other = type(other)(**{**other.__dict__, "dense_epochs": 2})
    with pytest.raises(ValueError, match="other settings"):
        run_experiment(work, other, corpus_dir=corpus, progress=False, echo=None)

    # another BSP grid: the finished bsp row is refused by name, the magnitude row is not;
    # once the bsp rows are deleted only they are trained again
    from dataclasses import replace

    regrid = replace(config, prune=replace(config.prune, row_blocks=2 * config.prune.row_blocks))
    with pytest.raises(ValueError, match=r"bsp-10 was pruned with other settings \(row_blocks"):
        run_experiment(work, regrid, corpus_dir=corpus, progress=False, echo=None)
    import shutil

    shutil.rmtree(work / "rows" / "bsp-10")
    fourth = run_experiment(work, regrid, corpus_dir=corpus, progress=False, echo=None)
    assert fourth.trained_epochs == 2  # the bsp row's ADMM + retrain units only
    assert fourth.skipped_rows == ["magnitude-10"]
    bsp_rows = [r for r in fourth.records if r["method"] == "bsp"]
    assert {g[0] for r in bsp_rows for g in r["grid"].values()} == {2 * config.prune.row_blocks}
    magnitude = [r["per"] for r in fourth.records if r["method"] == "magnitude"]
    assert magnitude == [r["per"] for r in second.records if r["method"] == "magnitude"]


@needs_synth
def test_gradual_rows_chain_in_ascending_order_and_resume(tiny_corpus, tmp_path, monkeypatch):
    from dataclasses import replace

    from tvm_bsp.experiments.table1 import rows as experiment_rows
    from tvm_bsp.experiments.table1 import run as experiment

    corpus, _ = tiny_corpus
    starts: dict[float, dict] = {}
    real = experiment_rows.prune_model

    def spy(start, train, method, rate, *args, **kw):
        starts[rate] = {k: v.clone() for k, v in start.state_dict().items()}
        return real(start, train, method, rate, *args, **kw)

    monkeypatch.setattr(experiment_rows, "prune_model", spy)
    config = replace(_tiny_experiment(rates=(29, 10), methods=("bsp",)), gradual=True)
    work = tmp_path / "work"
    experiment.run_experiment(work, config, corpus_dir=corpus, progress=False, echo=None)
    rows = work / "rows"
    assert json.loads((rows / "bsp-10" / "result.json").read_text())["start_from"] == "dense"
    assert json.loads((rows / "bsp-29" / "result.json").read_text())["start_from"] == "bsp-10"
    rates = [e["rate"] for e in _events(work) if e["kind"] == "prune_epoch"]
    assert rates == [10, 10, 29, 29]  # ascending, whatever the order given
    dense, _ = load_model(work / "dense" / "model.pt")
    ten, _ = load_model(rows / "bsp-10" / "model.pt")
    for key, value in dense.state_dict().items():
        assert torch.equal(starts[10][key], value)
        assert torch.equal(starts[29][key], ten.state_dict()[key])

    # a half-done row resumes from its checkpoint, still chained
    (rows / "bsp-29" / "result.json").unlink()
    again = experiment.run_experiment(work, config, corpus_dir=corpus, progress=False, echo=None)
    assert again.trained_epochs == 0
    assert json.loads((rows / "bsp-29" / "result.json").read_text())["start_from"] == "bsp-10"

    # another rate list would give bsp-29 another predecessor: refused
    other = replace(config, rates=(29,))
    with pytest.raises(ValueError, match="started from 'bsp-10'"):
        experiment.run_experiment(work, other, corpus_dir=corpus, progress=False, echo=None)


def test_first_row_of_a_chain_retrains_longer():
    from tvm_bsp.speech.prune_run import PruneSettings

    settings = PruneSettings(retrain_epochs=4, first_retrain_epochs=9)
    assert settings.for_row(first=True).retrain_epochs == 9
    assert settings.for_row(first=False) is settings
    assert PruneSettings(retrain_epochs=4).for_row(first=True).retrain_epochs == 4


@needs_synth
def test_a_chain_trains_its_first_row_for_first_retrain_epochs(tiny_corpus, tmp_path):
    from dataclasses import replace

    from tvm_bsp.experiments.table1 import run as experiment

    corpus, _ = tiny_corpus
    config = _tiny_experiment(rates=(10, 29), methods=("bsp",))
    config = replace(config, gradual=True, prune=replace(config.prune, first_retrain_epochs=3))
    work = tmp_path / "work"
    summary = experiment.run_experiment(work, config, corpus_dir=corpus, progress=False, echo=None)
    rates = [e["rate"] for e in _events(work) if e["kind"] == "prune_epoch"]
    assert rates == [10] * 4 + [29] * 2  # 1 ADMM + 3, then 1 ADMM + 1
    first = json.loads((work / "rows" / "bsp-10" / "result.json").read_text())
    later = json.loads((work / "rows" / "bsp-29" / "result.json").read_text())
    assert first["prune"]["retrain_epochs"] == 3 and later["prune"]["retrain_epochs"] == 1
    assert {r["retrain_epochs"] for r in summary.records if r["rate"] == 10} == {3}


@needs_synth
def test_parallel_chains_give_the_records_of_one_process(tiny_corpus, tmp_path):
    """jobs=2 runs the bsp and magnitude chains in worker processes: the same rows, bit for
    bit, as one process; a rerun then trains nothing and reports every row as found."""
    from tvm_bsp.experiments.table1.run import run_experiment

    corpus, _ = tiny_corpus
    config = _tiny_experiment(rates=(10, 29))
    serial = run_experiment(tmp_path / "one", config, corpus_dir=corpus, progress=False, echo=None)
    parallel = run_experiment(
        tmp_path / "two", config, corpus_dir=corpus, progress=False, echo=None, jobs=2
    )
    assert parallel.trained_epochs == serial.trained_epochs == 1 + 4 * 2
    assert parallel.skipped_rows == []
    keys = ("rate", "method", "split", "per", "achieved_rate", "kept")
    assert [{k: r[k] for k in keys} for r in parallel.records] == [
        {k: r[k] for k in keys} for r in serial.records
    ]
    log = (tmp_path / "two" / "log.txt").read_text()
    assert "running the chains of bsp, magnitude in 2 processes" in log
    assert log.count("achieved") == 4  # every row trained once, by a worker
    again = run_experiment(
        tmp_path / "two", config, corpus_dir=corpus, progress=False, echo=None, jobs=2
    )
    assert again.trained_epochs == 0
    assert sorted(again.skipped_rows) == ["bsp-10", "bsp-29", "magnitude-10", "magnitude-29"]
    with pytest.raises(ValueError, match="jobs must be an integer >= 1"):
        run_experiment(tmp_path / "two", config, corpus_dir=corpus, echo=None, jobs=0)


_LONG_CHAINS = """
import sys
from dataclasses import replace
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_speech_train import _tiny_experiment
from tvm_bsp.experiments.table1.run import run_experiment
config = _tiny_experiment(rates=(10, 29))
config = replace(config, prune=replace(config.prune, retrain_epochs=400))
run_experiment({work!r}, config, corpus_dir={corpus!r}, progress=False, echo=None, jobs=2)
"""


def _wait_for(path: Path, text: str, timeout: float) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text():
            return
        time.sleep(0.2)
    raise AssertionError(f"{text!r} did not appear in {path} within {timeout} s")


@needs_synth
def test_parallel_workers_die_with_their_parent(tiny_corpus, tmp_path):
    """Chains of 400 units each (minutes): killing the parent with SIGKILL takes the workers
    with it instead of leaving them training in the work directory."""
    import signal
    import subprocess
    import sys

    import psutil

    corpus, _ = tiny_corpus
    work = tmp_path / "work"
    code = _LONG_CHAINS.format(tests=str(Path(__file__).parent), work=str(work), corpus=str(corpus))
    parent = subprocess.Popen([sys.executable, "-c", code])
    try:
        _wait_for(work / "log.txt", "admm 1:", timeout=240)  # a worker is training
        workers = psutil.Process(parent.pid).children(recursive=True)
        assert workers
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=30)
        _, alive = psutil.wait_procs(workers, timeout=20)
        assert not alive, f"workers outlived their parent: {alive}"
    finally:
        if parent.poll() is None:
            parent.kill()
    assert not (work / "rows" / "bsp-29" / "result.json").exists()


@needs_synth
def test_a_failing_chain_stops_the_others(tiny_corpus, tmp_path):
    """The balanced chain fails at once (its finished 10x row was pruned with other groups);
    the bsp chain (400 units, minutes) is stopped and the error reaches the caller."""
    import time
    from dataclasses import replace

    from tvm_bsp.experiments.table1.run import run_experiment

    corpus, _ = tiny_corpus
    work = tmp_path / "work"
    config = _tiny_experiment(rates=(10, 29), methods=("bsp", "balanced"))
    config = replace(config, prune=replace(config.prune, retrain_epochs=400))
    row = work / "rows" / "balanced-10" / "result.json"
    row.parent.mkdir(parents=True)
    other = {"method": "balanced", "rate": 10, "start_from": "dense", "per": {}}
    row.write_text(json.dumps({**other, "prune": {"balanced_groups": 99}}))
    t0 = time.monotonic()
    with pytest.raises(ValueError, match=r"balanced-10 was pruned with other settings"):
        run_experiment(work, config, corpus_dir=corpus, progress=False, echo=None, jobs=2)
    assert time.monotonic() - t0 < 120  # the bsp chain alone needs several minutes
    assert not (work / "rows" / "bsp-10" / "result.json").exists()


# ----------------------------------------------------------------------------- CLI


def _cli(argv: list[str]) -> int:
    import argparse

    from tvm_bsp.cli.speech import add_prune_parser, add_train_parser

    parser = argparse.ArgumentParser(prog="tvm-bsp")
    sub = parser.add_subparsers(dest="command", required=True)
    add_train_parser(sub)
    add_prune_parser(sub)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code)
    return args.handler(args)


@needs_synth
def test_cli_train_then_prune(tiny_corpus, tmp_path, capsys):
    corpus, _ = tiny_corpus
    model = tmp_path / "dense.pt"
    common = ["--corpus", str(corpus), "--sizes", "40,10,10", "--corpus-seed", "3"]
    code = _cli(
        ["train", "--out", str(model), "--hidden", "16", "--epochs", "1", "--no-progress", *common]
    )
    assert code == 0
    assert "test PER" in capsys.readouterr().out
    _, extra = load_model(model)
    assert extra["corpus"] == str(corpus)

    out = tmp_path / "pruned"
    prune = ["prune", str(model), "--rate", "19", "--method", "bsp", "--grid", "6x4"]
    tiny = ["--admm-epochs", "1", "--retrain-epochs", "1", "--utts-per-epoch", "10"]
    assert _cli([*prune, *tiny, "--out", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "achieved" in text and "BSPC files" in text
    result = json.loads((out / "result.json").read_text())
    assert abs(result["achieved_rate"] - 19) / 19 < 0.05
    index = json.loads((out / "bspc" / "index.json").read_text())
    assert set(index["tensors"]) == {f"rnn.weight_{g}_l{k}" for k in (0, 1) for g in ("ih", "hh")}
    pruned, _ = load_model(out / "model.pt")
    assert pruned.config.hidden == 16

    # gradual step with distillation: prune the 19x model further, the dense one teaches
    out29 = tmp_path / "pruned29"
    step = ["prune", str(out / "model.pt"), "--rate", "29", "--grid", "6x4", "--distill", "0.5"]
    assert _cli([*step, "--teacher", str(model), *tiny, "--out", str(out29), "--no-progress"]) == 0
    capsys.readouterr()
    result29 = json.loads((out29 / "result.json").read_text())
    assert result29["settings"]["distill_weight"] == 0.5
    assert abs(result29["achieved_rate"] - 29) / 29 < 0.05

    # errors: missing model -> 1, bad rate / unknown method -> 2, grid too fine -> 2
    out = tmp_path / "other"
    assert _cli(["prune", str(tmp_path / "nope.pt"), "--rate", "10", "--out", str(out)]) == 1
    assert _cli(["prune", str(model), "--rate", "0.5", "--out", str(out)]) == 2
    assert _cli(["prune", str(model), "--rate", "10", "--method", "x", "--out", str(out)]) == 2
    assert _cli(["prune", str(model), "--rate", "10", "--grid", "999x4", "--out", str(out)]) == 2
    assert _cli(["prune", str(model), "--rate", "10", "--distill", "2", "--out", str(out)]) == 2
    missing = str(tmp_path / "none.pt")
    assert _cli(["prune", str(model), "--rate", "10", "--teacher", missing, "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "not found" in err and "999" in err and "--distill" in err and "teacher" in err


@pytest.mark.parametrize("cell", ["gru", "lstm", "kaldi_gru"])
def test_cells_train_and_prune_config(cell):
    from tvm_bsp.speech.prune_run import PruneSettings, gru_weight_names, prune_config

    model = AcousticModel(ModelConfig(cell=cell, hidden=8, layers=2, head="ctc", dropout=0.1))
    frames = [0] * 3 + [5] * 4 + [0] * 3
    utts = [
        Utt(
            np.random.default_rng(i).normal(size=(10, 39)).astype(np.float32),
            np.array(frames),
            ["sil", "aa", "sil"],
        )
        for i in range(3)
    ]
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss = train_epoch(model, utts, opt, epoch=0, progress=False)["loss"]
    assert math.isfinite(loss)
    assert model(torch.zeros(4, 2, 39)).shape == (4, 2, 40)
    names = gru_weight_names(model)
    assert names == [f"rnn.weight_{g}_l{k}" for k in (0, 1) for g in ("ih", "hh")]
    config = prune_config(model, "bsp", 10, PruneSettings(row_blocks=3, col_blocks=2))
    assert set(config) == set(names)


def test_cosine_lr_endpoints():
    from tvm_bsp.speech.train import cosine_lr

    assert cosine_lr(1.0, 0, 5) == 1.0
    assert cosine_lr(1.0, 4, 5) == pytest.approx(0.05)
    assert cosine_lr(1.0, 2, 5) == pytest.approx(0.525)
    assert cosine_lr(1.0, 0, 1) == 1.0


@pytest.mark.slow
@needs_synth
def test_table1_script_quick(tmp_path):
    import importlib.util

    script = Path(__file__).resolve().parents[1] / "scripts" / "table1.py"
    spec = importlib.util.spec_from_file_location("table1_quick", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "t.json"
    argv = ["--quick", "--work", str(tmp_path / "w"), "--json", str(out), "--no-progress"]
    assert module.main([*argv, "--splits", "test"]) == 0
    records = json.loads(out.read_text())
    assert isinstance(records, list)
    assert {(r["method"], r["rate"]) for r in records} == {
        (m, r) for m in ("bsp", "magnitude", "balanced") for r in (10, 29)
    }
    for rec in records:
        assert set(rec) == {"rate", "method", "per", "per_dense", "achieved_rate", "split"}
    details = json.loads((tmp_path / "t.details.json").read_text())
    assert details["records"][0]["per"] == records[0]["per"]


@pytest.mark.parametrize("rate", [10, 19, 29, 43, 80, 103])
def test_matrix_rates_reach_the_overall_rate(rate):
    from dataclasses import replace

    from tvm_bsp.speech.prune_run import PruneSettings, matrix_rates

    shapes = {
        "rnn.weight_ih_l0": (768, 39),
        "rnn.weight_hh_l0": (768, 256),
        "rnn.weight_ih_l1": (768, 256),
        "rnn.weight_hh_l1": (768, 256),
    }
    total = sum(r * c for r, c in shapes.values())
    rates = matrix_rates(shapes, rate, PruneSettings())
    kept = sum(r * c / rates[n] for n, (r, c) in shapes.items())
    assert total / kept == pytest.approx(rate)
    assert 1 <= rates["rnn.weight_ih_l0"] < rate < rates["rnn.weight_hh_l0"]
    uniform = matrix_rates(shapes, rate, replace(PruneSettings(), input_rate_power=None))
    assert set(uniform.values()) == {float(rate)}
