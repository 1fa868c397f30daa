"""``tvm-bsp demo``: PER through compiled modules, the end-to-end quick run, usage errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import tvm_bsp
from tvm_bsp.cli import main
from tvm_bsp.experiments.demo.builds import pad_batch, per_from_scores
from tvm_bsp.speech.model import AcousticModel, ModelConfig
from tvm_bsp.speech.phones import PHONES_39
from tvm_bsp.speech.train import evaluate_per
from tvm_bsp.speech.utterance import Utterance

RECORD_KEYS = {"build", "target", "per", "us_per_frame", "rate", "emulated", "threads"}


def _utterances(n: int, seed: int = 0) -> list[Utterance]:
    rng = np.random.default_rng(seed)
    utts = []
    for i in range(n):
        T = int(rng.integers(5, 40))
        phones = [PHONES_39[int(k)] for k in rng.integers(0, 39, int(rng.integers(2, 8)))]
        utts.append(
            Utterance(
                id=f"u{i}",
                features=rng.standard_normal((T, 39)).astype(np.float32),
                labels=rng.integers(0, 39, T),
                phones=phones,
            )
        )
    return utts


def test_per_through_compiled_module_equals_torch() -> None:
    torch.manual_seed(0)
    model = AcousticModel(ModelConfig(hidden=16, layers=2)).eval()
    with torch.no_grad():  # sharper scores than the init's, so decoding has structure
        model.head.weight.mul_(20)
    utts = _utterances(7)
    x, lengths = pad_batch(utts)
    assert x.shape == (max(lengths), 7, 39)
    assert all(np.array_equal(x[: lengths[b], b], u.features) for b, u in enumerate(utts))
    assert not x[lengths[0] :, 0].any()
    compiled = tvm_bsp.compile_model(model, target="host")
    scores, _ = compiled.forward(x)
    for smooth, min_run in ((1, 1), (5, 3)):
        ours = per_from_scores(scores, lengths, utts, smooth, min_run)
        ref = evaluate_per(model, utts, smooth=smooth, min_run=min_run)
        assert ours == pytest.approx(ref, abs=1e-9)
        assert ours > 0


def test_usage_errors() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tvm_bsp", "demo", "--rate", "7"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "no column/row split known for rate 7" in proc.stderr


def test_sizes_only_is_the_size_table(capsys) -> None:
    assert main(["demo", "--sizes-only", "--rates", "10"]) == 0
    out = capsys.readouterr().out
    assert "| 3072x1024 | 10 |" in out and "PER" not in out


def test_bad_work_folder_is_a_clear_failure(tmp_path: Path, capsys) -> None:
    work = tmp_path / "file"
    work.write_text("not a folder")
    assert main(["demo", "--quick", "--no-arm64", "--work", str(work)]) == 1
    assert "tvm-bsp demo: error:" in capsys.readouterr().err


def _corpus_or_skip() -> None:
    from tvm_bsp.speech.synth import espeak_available

    if not espeak_available():
        pytest.skip("eSpeak NG is not installed (scripts/setup_speech.sh)")


@pytest.mark.slow
@pytest.mark.rpc
def test_quick_demo_end_to_end(tmp_path: Path, capsys) -> None:
    from tvm_bsp.devices.aarch64 import arm64_unavailable_reason
    from tvm_bsp.experiments.demo.settings import quick_settings
    from tvm_bsp.speech.corpus import load_split
    from tvm_bsp.speech.model import load_model

    _corpus_or_skip()
    work, out = tmp_path / "work", tmp_path / "demo.json"
    argv = ["demo", "--quick", "--work", str(work), "--json", str(out), "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr()
    records = json.loads(out.read_text())
    arm64 = arm64_unavailable_reason() is None
    expected = {
        (b, t) for b in ("dense", "bspc") for t in ("host", "arm64") if arm64 or t == "host"
    }
    assert {(r["build"], r["target"]) for r in records} == expected
    for r in records:
        assert set(r) >= RECORD_KEYS
        assert 0 <= r["per"] <= 200 and r["us_per_frame"] > 0
        assert r["emulated"] == (r["target"] == "arm64")
    assert (work / "demo.png").stat().st_size > 1000
    assert "| host | dense |" in printed.out and "3072x1024" in printed.out
    if not arm64:
        assert "arm64 builds skipped" in printed.out

    # independent reference: the torch dense model's PER on the same split
    settings = quick_settings()
    dense, _ = load_model(work / f"dense-{settings.dense_key()}.pt")
    test = load_split(work / settings.corpus_name(), "test")
    for r in records:  # an emulated device scores the first utterances only
        if r["build"] == "dense":
            sub = test[: r["test_utterances"]]
            torch_per = evaluate_per(dense, sub, smooth=settings.smooth, min_run=settings.min_run)
            assert r["per"] == pytest.approx(torch_per, abs=1e-3)
    bspc_host = next(r for r in records if r["build"] == "bspc" and r["target"] == "host")
    assert 5 < bspc_host["rate"] < 20

    # a second run reuses the corpus and both models and measures the same PER
    assert main([*argv[:-1], "--no-arm64"]) == 0
    again = capsys.readouterr()
    assert "dense model: reusing" in again.err and "pruned model: reusing" in again.err
    second = {(r["build"], r["target"]): r["per"] for r in json.loads(out.read_text())}
    assert second == {(r["build"], r["target"]): r["per"] for r in records if r["target"] == "host"}
