"""tvm-bsp compile / deploy / bench: outputs against torch, phones, errors and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from tvm_bsp.cli import main
from tvm_bsp.compiler.model_file import RNNStack, load_model_file, save_rnn_module
from tvm_bsp.prune import bsp_mask, export_bspc
from tvm_bsp.runtime import load
from tvm_bsp.runtime.labels import read_labels
from tvm_bsp.speech.model import AcousticModel, ModelConfig, save_model
from tvm_bsp.speech.phones import PHONES_39
from tvm_bsp.speech.train import smoothed_framewise_decode

ATOL = 1e-4
DECODE = {"smooth": 3, "min_run": 2}
GRID = (6, 4)


@pytest.fixture(scope="module")
def speech_model(tmp_path_factory):
    """A tiny pruned speech model saved like ``tvm-bsp prune`` (model.pt, model.json, bspc/)."""
    out = tmp_path_factory.mktemp("pruned")
    torch.manual_seed(0)
    model = AcousticModel(ModelConfig(hidden=24, layers=2)).eval()
    masks = {}
    with torch.no_grad():
        model.head.weight.mul_(8.0)  # peaky scores: phone sequences longer than one phone
        for name, p in model.rnn.named_parameters():
            if name.startswith("weight_hh"):
                mask = bsp_mask(p, *GRID, 2.0, 1.5)
                p.mul_(mask)
                masks[f"rnn.{name}"] = mask
    export_bspc(model, masks, out / "bspc", grid=GRID)
    save_model(model, out / "model.pt", extra={"decode": DECODE})
    return model, out / "model.pt"


@pytest.fixture(scope="module")
def dense_so(speech_model, tmp_path_factory):
    """The speech model compiled dense for the host (shared by the runner tests)."""
    so = tmp_path_factory.mktemp("dense") / "model.so"
    assert main(["compile", str(speech_model[1]), "-o", str(so), "--bspc", "none"]) == 0
    return so


def _features(seed: int, T: int = 60, width: int = 39) -> np.ndarray:
    rng = np.random.default_rng(seed)
    means = 2 * rng.standard_normal((T // 6 + 1, width))
    return (np.repeat(means, 6, 0)[:T] + 0.3 * rng.standard_normal((T, width))).astype(np.float32)


def _torch_phones(model: nn.Module, x: np.ndarray, decode: dict) -> list[str]:
    with torch.no_grad():
        scores = model(torch.from_numpy(x)[:, None])[:, 0]
    ids = smoothed_framewise_decode(scores, decode["smooth"], decode["min_run"])
    return [PHONES_39[i] for i in ids]


def _printed_phones(out: str) -> list[str]:
    lines = [ln for ln in out.splitlines() if ln.startswith("phones:")]
    assert lines, out
    return lines[-1].split()[1:]


def test_compile_speech_model_matches_torch(speech_model, tmp_path, capsys):
    model, pt = speech_model
    so = tmp_path / "model.so"
    assert main(["compile", str(pt), "--target", "host", "-o", str(so), "--threads", "1"]) == 0
    assert "2 BSPC weight(s)" in capsys.readouterr().out  # from DIR/bspc beside the model
    session = load(so)
    x = _features(1)[:, None]
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(session.forward(x)[0], ref, atol=ATOL)
    sidecar = read_labels(so, 39)
    assert sidecar["labels"] == list(PHONES_39) and sidecar["decode"] == DECODE
    assert sidecar["sparse"] == ["rnn.weight_hh_l0", "rnn.weight_hh_l1"]
    assert main(["compile", str(pt), "-o", str(tmp_path / "dense.so"), "--bspc", "none"]) == 0
    assert "0 BSPC weight(s)" in capsys.readouterr().out
    np.testing.assert_allclose(load(tmp_path / "dense.so").forward(x)[0], ref, atol=ATOL)


def test_deploy_features_prints_the_torch_decoding(speech_model, tmp_path, capfd):
    model, pt = speech_model
    x = _features(2)
    np.save(tmp_path / "feats.npy", x)
    out = tmp_path / "dep"
    code = main(["deploy", str(pt), "--target", "host", "--out", str(out),
                 "--features", str(tmp_path / "feats.npy")])  # fmt: skip
    assert code == 0
    printed = capfd.readouterr().out
    expected = _torch_phones(model, x, DECODE)
    assert len(expected) > 2
    assert _printed_phones(printed) == expected
    assert "per-frame latency: median" in printed and "real-time factor:" in printed
    assert (out / "model.so").is_file() and (out / "model.so.json").is_file()


def test_labels_travel_inside_the_so(speech_model, dense_so, tmp_path, capfd):
    """Without the sidecar, the runner reads the phone names from the module's meta()."""
    model, _ = speech_model
    lone = tmp_path / "lone.so"
    lone.write_bytes(dense_so.read_bytes())
    assert not (tmp_path / "lone.so.json").exists()
    meta = load(lone).meta["labels"]
    assert meta["labels"] == list(PHONES_39) and meta["decode"] == DECODE
    x = _features(3)
    np.save(tmp_path / "feats.npy", x)
    from tvm_bsp.runtime.runner import main as runner_main

    assert runner_main([str(lone), "--features", str(tmp_path / "feats.npy")]) == 0
    assert _printed_phones(capfd.readouterr().out) == _torch_phones(model, x, DECODE)


def test_deploy_so_utterance_and_wav(speech_model, dense_so, tmp_path, capfd):
    model, _ = speech_model
    x = _features(2)
    np.save(tmp_path / "feats.npy", x)
    expected = _torch_phones(model, x, DECODE)
    # a compiled .so as input, one forward call per utterance
    again = tmp_path / "again"
    code = main(["deploy", str(dense_so), "--out", str(again),
                 "--features", str(tmp_path / "feats.npy"), "--utterance"])  # fmt: skip
    assert code == 0
    assert _printed_phones(capfd.readouterr().out) == expected
    # a WAV goes through the speech features first
    t = np.arange(16000 // 2) / 16000
    audio = (3000 * np.sin(2 * np.pi * 440 * t) * np.sin(2 * np.pi * 3 * t)).astype("<i2")
    with wave.open(str(tmp_path / "tone.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(audio.tobytes())
    code = main(["deploy", str(dense_so), "--out", str(again),
                 "--wav", str(tmp_path / "tone.wav")])  # fmt: skip
    assert code == 0
    from tvm_bsp.speech.features import compute_features

    feats = np.load(again / "tone.npy")
    np.testing.assert_allclose(feats, compute_features(audio.astype(np.float32)), atol=1e-5)
    assert _printed_phones(capfd.readouterr().out) == _torch_phones(model, feats, DECODE)


def test_plain_rnn_module_file_and_stream_runner(tmp_path):
    torch.manual_seed(3)
    model = RNNStack(nn.LSTM(7, 11, 2, batch_first=True), nn.Linear(11, 4)).eval()
    with torch.no_grad():
        model.head.weight.mul_(10.0)
    names = ["w", "x", "y", "z"]
    save_rnn_module(model, tmp_path / "lstm.pt", labels=names)
    assert load_model_file(tmp_path / "lstm.pt").labels == names
    so = tmp_path / "lstm.so"
    assert main(["compile", str(tmp_path / "lstm.pt"), "-o", str(so)]) == 0
    x = _features(4, T=25, width=7)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)[None])[0].numpy()
    np.testing.assert_allclose(load(so).forward(x[None])[0], ref, atol=ATOL)
    lines = "\n".join(" ".join(f"{v:.9g}" for v in row) for row in x) + "\n"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tvm_bsp.runtime.runner",
            str(so),
            "--stream",
            "--json",
            str(tmp_path / "run.json"),
        ],
        input=lines,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    ids = [int(i) for i in ref[0].argmax(-1)]
    expected = [names[i] for k, i in enumerate(ids) if k == 0 or ids[k - 1] != i]
    assert len(expected) > 1
    assert _printed_phones(proc.stdout) == expected
    assert "frames: 25 (stream)" in proc.stdout
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["phones"] == expected and record["frames"] == 25 and record["mode"] == "stream"
    assert record["median_ms"] > 0 and record["rtf"] > 0


def test_errors_exit_1_with_a_message(speech_model, tmp_path, capfd, monkeypatch):
    _, pt = speech_model
    so = tmp_path / "m.so"
    cases = [
        (["compile", str(tmp_path / "missing.pt"), "-o", str(so)], "missing.pt not found"),
        (["compile", str(pt), "--target", "android-arm64", "-o", str(so)], "TVM_NDK_CC"),
        (["compile", str(pt), "--db", str(tmp_path / "nodb"), "-o", str(so)], "nodb"),
        (["compile", str(pt), "--bspc", str(tmp_path / "nobspc"), "-o", str(so)], "nobspc"),
        (["deploy", str(tmp_path / "x.so"), "--out", str(tmp_path / "d")], "no compiled module"),
    ]
    monkeypatch.delenv("TVM_NDK_CC", raising=False)
    for argv, message in cases:
        assert main(argv) == 1, argv
        err = capfd.readouterr().err
        assert f"tvm-bsp {argv[0]}: error:" in err and message in err, (argv, err)
    assert not so.exists()
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a state dict")
    bad.with_suffix(".json").write_text('{"format": "other"}')
    assert main(["compile", str(bad), "-o", str(so)]) == 1
    assert "has format 'other'" in capfd.readouterr().err
    # an unknown target is bad usage (exit 2; tests/test_cli_usability.py checks the message)
    with pytest.raises(SystemExit) as usage:
        main(["compile", str(pt), "--target", "riscv", "-o", str(so)])
    assert usage.value.code == 2 and "unknown target 'riscv'" in capfd.readouterr().err


def test_wrong_feature_width_exits_1(dense_so, tmp_path, capfd):
    so = dense_so
    np.save(tmp_path / "narrow.npy", np.zeros((5, 20), np.float32))
    code = main(["deploy", str(so), "--out", str(tmp_path / "d"),
                 "--features", str(tmp_path / "narrow.npy")])  # fmt: skip
    assert code == 1
    assert "expected (frames, 39) features, got shape (5, 20)" in capfd.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["compile", "m.pt"],  # no -o
        ["deploy", "m.pt", "--out", "d", "--wav", "a.wav", "--features", "f.npy"],
        ["bench"],
        ["bench", "lstm"],
        ["compile", "m.pt", "-o", "m.so", "--threads", "0"],
    ],
)
def test_bad_usage_exits_2(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_help_lists_every_command():
    proc = subprocess.run(
        [sys.executable, "-m", "tvm_bsp", "--help"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0
    for command in ("demo", "train", "prune", "compile", "tune", "bench", "deploy", "rpc-server"):
        assert f"\n    {command}" in proc.stdout, command
    runner = subprocess.run(
        [sys.executable, "-m", "tvm_bsp.runtime.runner", "x.so"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert runner.returncode == 2 and "--features" in runner.stderr


@pytest.mark.slow
@pytest.mark.aarch64
def test_deploy_arm64_runs_under_qemu(speech_model, tmp_path, capfd):
    from tvm_bsp.devices.aarch64 import require_arm64

    require_arm64()
    model, pt = speech_model
    x = _features(5)
    np.save(tmp_path / "feats.npy", x)
    code = main(["deploy", str(pt), "--target", "arm64", "--out", str(tmp_path / "arm"),
                 "--features", str(tmp_path / "feats.npy")])  # fmt: skip
    out = capfd.readouterr().out
    assert code == 0, out
    assert "under qemu" in out
    assert _printed_phones(out) == _torch_phones(model, x, DECODE)


def test_deploy_prints_the_device_command_when_it_cannot_run(dense_so, tmp_path, capfd):
    np.save(tmp_path / "feats.npy", _features(6))
    so = dense_so
    # a host .so handed over as an android build: nothing runs here, the command is printed
    code = main(["deploy", str(so), "--target", "android-arm64", "--out", str(tmp_path / "d"),
                 "--features", str(tmp_path / "feats.npy")])  # fmt: skip
    assert code == 0
    out = capfd.readouterr().out
    assert "does not run on this machine" in out
    assert "TVM_USE_RUNTIME_LIB=1 PYTHONPATH=. python3 -m tvm_bsp.runtime.runner model.so" in out
    assert Path(tmp_path / "d" / "model.so").is_file()


def test_bench_commands_reach_the_benchmark_modules():
    from tvm_bsp.cli import build_parser
    from tvm_bsp.experiments.bench import gru, spmv

    args = build_parser().parse_args(["bench", "gru", "--quick", "--json", "g.json"])
    assert args.handler is gru.run_args and args.quick and args.json == Path("g.json")
    assert args.frames == 200 and args.grid == "96x16"
    args = build_parser().parse_args(["bench", "spmv", "--tune", "--seconds", "0.1"])
    assert args.handler is spmv.run_args and args.tune and args.seconds == 0.1
    scripts = Path(__file__).resolve().parents[1] / "scripts"
    for name in ("bench_gru.py", "bench_spmv.py"):
        proc = subprocess.run(
            [sys.executable, str(scripts / name), "--help"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0 and "--quick" in proc.stdout and "--json" in proc.stdout
