"""Named deploy targets, export per target, the sidecar, numpy decoding and runner inputs."""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pytest
import torch
import tvm

from tvm_bsp.deploy.targets import (
    DEPLOY_TARGETS,
    NDK_ENV,
    deploy_target_of,
    export_library,
    get_deploy_target,
    ndk_compiler,
)
from tvm_bsp.kernels.targets import resolve_target
from tvm_bsp.runtime import decode, labels, runner
from tvm_bsp.speech.per import ctc_greedy_decode
from tvm_bsp.speech.train import remove_short_runs, smoothed_framewise_decode

ELF_MACHINE_AARCH64 = 0xB7


def test_target_table():
    assert list(DEPLOY_TARGETS) == [
        "host",
        "arm64",
        "android-arm64",
        "opencl-mali",
        "opencl-adreno",
    ]
    arm64 = get_deploy_target("arm64").target()
    assert str(arm64.attrs["mtriple"]) == "aarch64-linux-gnu"
    android = get_deploy_target("android-arm64").target()
    assert str(android.attrs["mtriple"]) == "aarch64-linux-android"
    mali, adreno = get_deploy_target("opencl-mali"), get_deploy_target("opencl-adreno")
    assert mali.target().kind.name == "opencl" and str(mali.target().attrs["device"]) == "mali"
    assert str(mali.target().host.attrs["mtriple"]) == "aarch64-linux-gnu"
    assert str(adreno.target().host.attrs["mtriple"]) == "aarch64-linux-android"
    assert adreno.linker == "ndk" and mali.linker == "gnu-aarch64"
    host = get_deploy_target("host")
    assert host.runs_here and host.target().kind.name == "llvm"
    assert not any(DEPLOY_TARGETS[n].runs_here for n in ("android-arm64", "opencl-adreno"))
    # the kernels' resolver agrees on the shared names
    for name in ("arm64", "opencl-mali"):
        t1, t2 = resolve_target(name), get_deploy_target(name).target()
        assert str(t1) == str(t2)


def test_deploy_target_of_a_tvm_target():
    for name, deploy in DEPLOY_TARGETS.items():
        assert deploy_target_of(deploy.target()).name == name
    assert deploy_target_of(resolve_target("opencl-mali", host="host")).name == "opencl-mali"


def test_target_dicts_are_copies():
    d = get_deploy_target("opencl-mali").target_dict()
    d["host"]["mattr"].append("+sve")
    assert get_deploy_target("opencl-mali").target_dict()["host"]["mattr"] == ["+neon"]


def test_unknown_target_and_missing_ndk(monkeypatch):
    with pytest.raises(ValueError, match=r"unknown target 'riscv'.*host, arm64, android-arm64"):
        get_deploy_target("riscv")
    monkeypatch.delenv(NDK_ENV, raising=False)
    with pytest.raises(ValueError, match=NDK_ENV):
        ndk_compiler()
    with pytest.raises(ValueError, match=NDK_ENV):
        get_deploy_target("android-arm64").check_compiler()
    monkeypatch.setenv(NDK_ENV, "/nonexistent/clang")
    with pytest.raises(FileNotFoundError, match="/nonexistent/clang"):
        ndk_compiler()


def _elf_machine(path) -> int:
    head = path.read_bytes()[:20]
    assert head[:4] == b"\x7fELF"
    return int.from_bytes(head[18:20], "little")


def _tiny_lib(target):
    from tvm import te

    a = te.placeholder((8,), name="a")
    b = te.compute((8,), lambda i: a[i] * 2.0, name="b")
    return tvm.compile(te.create_prim_func([a, b]), target=target)


@pytest.mark.skipif(shutil.which("aarch64-linux-gnu-gcc") is None, reason="no aarch64 gcc")
def test_export_per_target(tmp_path, monkeypatch):
    host = export_library(_tiny_lib(get_deploy_target("host").target()), "host", tmp_path / "h.so")
    lib = tvm.runtime.load_module(str(host))
    x = tvm.runtime.tensor(np.arange(8, dtype=np.float32))
    y = tvm.runtime.tensor(np.zeros(8, np.float32))
    lib["main"](x, y)
    np.testing.assert_allclose(y.numpy(), 2 * np.arange(8))
    arm = export_library(_tiny_lib(get_deploy_target("arm64").target()), "arm64", tmp_path / "a.so")
    assert _elf_machine(arm) == ELF_MACHINE_AARCH64
    # android: linked by whatever TVM_NDK_CC names (a GNU aarch64 gcc stands in for the NDK)
    monkeypatch.setenv(NDK_ENV, shutil.which("aarch64-linux-gnu-gcc"))
    android_lib = _tiny_lib(get_deploy_target("android-arm64").target())
    droid = export_library(android_lib, "android-arm64", tmp_path / "d.so")
    assert _elf_machine(droid) == ELF_MACHINE_AARCH64
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind
    monkeypatch.delenv(NDK_ENV)
    with pytest.raises(ValueError, match=NDK_ENV):
        export_library(android_lib, "android-arm64", tmp_path / "e.so")
    assert not (tmp_path / "e.so").exists()


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(("smooth", "min_run"), [(1, 1), (3, 2), (5, 3), (7, 4), (4, 1)])
def test_numpy_decoding_equals_the_speech_code(seed, smooth, min_run):
    rng = np.random.default_rng(seed)
    T = int(rng.integers(1, 60))
    # piecewise-constant class evidence plus noise: runs of several lengths, some flicker
    means = rng.standard_normal((T // 4 + 1, 39)) * 3
    scores = (np.repeat(means, 4, 0)[:T] + rng.standard_normal((T, 39))).astype(np.float32)
    rule = {"smooth": smooth, "min_run": min_run}
    record = labels.make_labels([f"p{i}" for i in range(39)], decode=rule)
    ours = decode.decode_scores(scores, record)
    ref = smoothed_framewise_decode(torch.from_numpy(scores), smooth, min_run)
    assert ours == [f"p{i}" for i in ref]
    assert remove_short_runs is decode.remove_short_runs  # one implementation, not a copy
    ctc = labels.make_labels(["<blank>", *(f"p{i}" for i in range(38))], head="ctc")
    assert decode.decode_scores(scores, ctc) == [
        ctc["labels"][i] for i in ctc_greedy_decode(scores, blank=0)
    ]


def test_sidecar_round_trip_and_errors(tmp_path):
    so = tmp_path / "model.so"
    record = labels.make_labels(["a", "b"], decode={"smooth": 3, "min_run": 2}, target="arm64")
    path = labels.write_labels(so, record)
    assert path == (tmp_path / "model.so.json").absolute()
    assert labels.read_labels(so, 2) == json.loads(path.read_text())
    with pytest.raises(ValueError, match="names 2 labels, the module has 3 outputs"):
        labels.read_labels(so, 3)
    assert labels.read_labels(tmp_path / "other.so", 3)["labels"] == ["0", "1", "2"]
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        labels.read_labels(so, 2)
    path.write_text('{"format": "something else"}')
    with pytest.raises(ValueError, match=r"is not a tvm_bsp\.deploy\.labels record"):
        labels.read_labels(so, 2)
    with pytest.raises(ValueError, match="head must be"):
        labels.make_labels(["a"], head="beam")


def test_runner_inputs(tmp_path):
    frames = list(runner.read_stream(io.StringIO("1 2 3\n\n4 5 6\n"), 3))
    np.testing.assert_array_equal(np.stack(frames), [[1, 2, 3], [4, 5, 6]])
    with pytest.raises(ValueError, match="stdin line 2: expected 3 finite numbers, got 2"):
        list(runner.read_stream(io.StringIO("1 2 3\n4 5\n"), 3))
    with pytest.raises(ValueError, match="stdin line 1: not a list of numbers"):
        list(runner.read_stream(io.StringIO("1 x 3\n"), 3))
    x = np.ones((4, 3), np.float64)
    np.save(tmp_path / "f.npy", x)
    np.savez(tmp_path / "f.npz", features=x, other=x[:1])
    np.savez(tmp_path / "two.npz", a=x, b=x)
    for name in ("f.npy", "f.npz"):
        got = runner.load_features(tmp_path / name, 3)
        assert got.dtype == np.float32 and got.shape == (4, 3)
    with pytest.raises(ValueError, match=r"expected \(frames, 39\) features, got shape \(4, 3\)"):
        runner.load_features(tmp_path / "f.npy", 39)
    with pytest.raises(ValueError, match="name one 'features'"):
        runner.load_features(tmp_path / "two.npz", 3)
    with pytest.raises(FileNotFoundError, match="no feature file"):
        runner.load_features(tmp_path / "missing.npy", 3)
    (tmp_path / "junk.npy").write_bytes(b"junk")
    with pytest.raises(ValueError, match=r"not a \.npy/\.npz"):
        runner.load_features(tmp_path / "junk.npy", 3)
    np.save(tmp_path / "nan.npy", np.full((2, 3), np.nan))
    with pytest.raises(ValueError, match="NaN"):
        runner.load_features(tmp_path / "nan.npy", 3)
