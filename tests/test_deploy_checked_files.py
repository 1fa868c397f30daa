"""Checked library files (defect 4 of issue 13): truncated, bit-flipped, foreign and
other-machine files are refused with a message before dlopen (a truncated .so used to kill the
process with a bus error, exit 135), each in a child process; no torch in the runtime."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import tvm_bsp
from tvm_bsp.compiler.model_file import RNNStack
from tvm_bsp.runtime.files import BLOB_SYMBOL, read_elf

REPO = Path(__file__).resolve().parents[1]
_CHILD = """
import sys, warnings
import numpy as np
import tvm_bsp.runtime
warnings.simplefilter("always")
s = tvm_bsp.runtime.load(sys.argv[1])
y, _ = s.forward(np.zeros((3, 1, 13), np.float32))
print("OK", y.shape, "torch" in sys.modules)
"""


def _load(path: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, TVM_USE_RUNTIME_LIB="1", PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-c", _CHILD, str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    torch.manual_seed(0)
    cm = tvm_bsp.compile_model(RNNStack(nn.GRU(13, 37, 2), nn.Linear(37, 5)).eval(), "host")
    return cm.export(tmp_path_factory.mktemp("checked") / "gru.so")


def _copy(lib: Path, dest: Path, sidecar: bool = True) -> Path:
    shutil.copyfile(lib, dest)
    if sidecar:
        shutil.copyfile(f"{lib}.json", f"{dest}.json")
    return dest


def _flip_weight_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    blob = read_elf(bytes(data), str(path))[1][BLOB_SYMBOL]
    at = bytes(data).find(blob) + len(blob) // 2  # inside the constants
    data[at] ^= 0x10
    path.write_bytes(bytes(data))


def test_intact_library_loads_without_torch(lib):
    res = _load(lib)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "OK (3, 1, 5) False" in res.stdout
    assert "cannot be verified" not in res.stderr


@pytest.mark.parametrize("sidecar", [True, False])
@pytest.mark.parametrize("damage", ["truncate", "truncate_small", "flip"])
def test_damaged_library_is_refused_with_a_message(lib, tmp_path, damage, sidecar):
    path = _copy(lib, tmp_path / "m.so", sidecar)
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "truncate_small":
        path.write_bytes(data[:100])
    else:
        _flip_weight_byte(path)
    res = _load(path)
    assert res.returncode == 1, (res.returncode, res.stderr[-2000:])
    assert "LibraryCheckError" in res.stderr
    if sidecar and damage != "flip":
        want = f"has {len(path.read_bytes())} bytes, its export wrote {len(data)}"
    elif sidecar:
        want = "is corrupted: its SHA-256 differs"
    elif damage == "flip":
        want = "weights (constants) are corrupted: their SHA-256 differs from the one compiled"
    else:
        want = "is truncated: its"
    assert want in res.stderr, res.stderr[-2000:]


def test_library_without_sidecar_loads_with_a_warning(lib, tmp_path):
    res = _load(_copy(lib, tmp_path / "old.so", sidecar=False))
    assert res.returncode == 0, res.stderr[-2000:]
    assert "cannot be verified" in res.stderr and "OK (3, 1, 5)" in res.stdout


def test_foreign_files_are_refused(tmp_path):
    src = tmp_path / "plain.c"
    src.write_text("int plain(int x) { return x + 1; }\n")
    plain = tmp_path / "plain.so"
    subprocess.run(["gcc", "-shared", "-fPIC", str(src), "-o", str(plain)], check=True)
    noise = tmp_path / "noise.so"
    noise.write_bytes(np.random.default_rng(0).bytes(4096))
    cases = {
        plain: "is a shared library but not a TVM module library",
        noise: "is not a shared library (no ELF header",
        Path(shutil.which("ls") or "/bin/ls"): "not a TVM module library",
    }
    for path, want in cases.items():
        res = _load(path)
        assert res.returncode == 1 and want in res.stderr, (path, res.stderr[-2000:])


def test_arm64_build_names_itself(tmp_path):
    from tvm_bsp.deploy.targets import export_library

    torch.manual_seed(1)
    cm = tvm_bsp.compile_model(nn.GRU(13, 37, 1), target="arm64")
    so = export_library(cm.executable, "arm64", tmp_path / "arm.so")
    res = _load(so)
    assert res.returncode == 1
    assert "is an aarch64 (arm64) build; this machine is" in res.stderr
    assert "--target arm64" in res.stderr
    feats = tmp_path / "f.npy"
    np.save(feats, np.zeros((5, 13), np.float32))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    runner = subprocess.run(
        [sys.executable, "-m", "tvm_bsp.runtime.runner", str(so), "--features", str(feats)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert runner.returncode == 1 and "runner: error:" in runner.stderr
    assert "aarch64 (arm64) build" in runner.stderr


@pytest.mark.parametrize("sidecar", [True, False])
def test_tvm_bsp_deploy_refuses_a_truncated_library_with_exit_1(lib, tmp_path, sidecar):
    # the command that used to exit 249 with no message (defect 4)
    path = _copy(lib, tmp_path / "m.so", sidecar)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    feats = tmp_path / "f.npy"
    np.save(feats, np.zeros((4, 13), np.float32))
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "tvm_bsp",
            "deploy",
            str(path),
            "--out",
            str(tmp_path / "out"),
            "--features",
            str(feats),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    assert res.returncode == 1, (res.returncode, res.stderr[-2000:])
    assert "runner: error:" in res.stderr and "truncated" in res.stderr
    assert "Traceback" not in res.stderr
