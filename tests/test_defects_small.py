"""Smaller defects of issue 13: strict JSON booleans, label counts, decode bounds, pickle
payloads given to ``prune``, stale temporaries of killed exports, file modes."""

from __future__ import annotations

import json
import os
import pickle
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from tvm_bsp.bspc import BSPCMatrix, save_bspc
from tvm_bsp.compiler.model_file import RNNStack, load_model_file, save_rnn_module
from tvm_bsp.runtime.files import atomic_output
from tvm_bsp.runtime.labels import check_labels, make_labels, read_labels, write_labels

ROOT = Path(__file__).resolve().parents[1]


def _rnn_module(tmp_path: Path, **edits) -> Path:
    torch.manual_seed(0)
    pt, cfg = save_rnn_module(RNNStack(nn.GRU(5, 6), nn.Linear(6, 3)), tmp_path / "m.pt")
    meta = json.loads(cfg.read_text())
    meta.update(edits)
    cfg.write_text(json.dumps(meta))
    return pt


# ---------------------------------------------------------------------- model .json booleans
@pytest.mark.parametrize("key", ["batch_first", "bias"])
@pytest.mark.parametrize("value", ["false", "true", 0, 1, None])
def test_json_booleans_are_strict(tmp_path, key, value):
    pt = _rnn_module(tmp_path, **{key: value})
    with pytest.raises(ValueError, match=rf"{key} must be true or false.*{value!r}"):
        load_model_file(pt)


def test_json_booleans_are_read(tmp_path):
    loaded = load_model_file(_rnn_module(tmp_path, batch_first=True))
    assert loaded.module.rnn.batch_first is True
    loaded = load_model_file(_rnn_module(tmp_path, batch_first=False))
    assert loaded.module.rnn.batch_first is False


# ---------------------------------------------------------------------- label counts
def test_model_file_label_count_must_match_outputs(tmp_path):
    pt = _rnn_module(tmp_path, labels=["a", "b"])
    with pytest.raises(ValueError, match=r"2 labels.*3 outputs"):
        load_model_file(pt)


@pytest.mark.parametrize("labels", [["a", "b"], {"format": "x", "labels": ["a"] * 5}])
def test_compile_model_refuses_a_wrong_label_count(labels):
    import tvm_bsp

    model = RNNStack(nn.GRU(5, 6), nn.Linear(6, 3)).eval()
    count = len(labels["labels"] if isinstance(labels, dict) else labels)
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=rf"{count} labels.*3 outputs"):
        tvm_bsp.compile_model(model, extra_meta={"labels": labels})
    assert time.perf_counter() - t0 < 5  # refused before compiling


# ---------------------------------------------------------------------- decode settings
@pytest.mark.parametrize(
    ("decode", "message"),
    [
        ({"smooth": 10**12, "min_run": 4}, r"decode\.smooth .*1000000000000"),
        ({"smooth": 7, "min_run": -3}, r"decode\.min_run .*-3"),
        ({"smooth": 7.5, "min_run": 4}, r"decode\.smooth .*7\.5"),
        ({"smooth": True, "min_run": 4}, r"decode\.smooth .*True"),
        ({"smooth": "7", "min_run": 4}, r"decode\.smooth .*'7'"),
        ([7, 4], "decode must be an object"),
    ],
)
def test_sidecar_decode_values_are_bounded(tmp_path, decode, message):
    so = tmp_path / "model.so"
    record = make_labels(["a", "b", "c"])
    record["decode"] = decode
    write_labels(so, record)
    with pytest.raises(ValueError, match=message):
        read_labels(so, 3)
    with pytest.raises(ValueError, match=message):
        check_labels(record, 3, "meta()")


def test_make_labels_refuses_a_huge_window():
    with pytest.raises(ValueError, match=r"decode\.smooth"):
        make_labels(["a"], decode={"smooth": 10**12, "min_run": 1})
    assert make_labels(["a"], decode={"smooth": 7, "min_run": 4})["decode"]["smooth"] == 7


# ---------------------------------------------------------------------- prune on a pickle
class _Payload:
    def __reduce__(self):
        return (print, ("pwned",))


def test_prune_on_a_pickle_payload_is_one_line(tmp_path):
    from tvm_bsp.speech.model import AcousticModel, ModelConfig, save_model

    pt, _ = save_model(AcousticModel(ModelConfig(hidden=8, layers=1)), tmp_path / "model.pt")
    pt.write_bytes(pickle.dumps(_Payload()))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tvm_bsp",
            "prune",
            str(pt),
            "--rate",
            "4",
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "pwned" not in proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "model.pt" in lines[0], proc.stderr


# ---------------------------------------------------------------------- temporaries, modes
def _matrix() -> BSPCMatrix:
    w = np.arange(12, dtype=np.float32).reshape(3, 4) + 1
    return BSPCMatrix.from_dense(w)


def _age(path: Path, seconds: float = 3600) -> Path:
    past = time.time() - seconds
    os.utime(path, (past, past))
    return path


def test_save_bspc_removes_stale_temporaries(tmp_path):
    stale = tmp_path / ".w.npz.k3j_9xq2.tmp"
    stale.write_bytes(b"half")
    _age(stale)
    fresh = tmp_path / ".w.npz.abcdefgh.tmp"  # a concurrent writer's, newer than this process
    fresh.write_bytes(b"busy")
    other = tmp_path / ".v.npz.k3j_9xq2.tmp"
    other.write_bytes(b"not ours")
    _age(other)
    save_bspc(_matrix(), tmp_path / "w.npz")
    assert not stale.exists()
    assert fresh.exists() and other.exists()


def test_atomic_output_removes_stale_temporaries(tmp_path):
    stale = tmp_path / ".model.so.a1b2c3d4.so"
    stale.write_bytes(b"half a library")
    _age(stale)
    keep = tmp_path / ".model.so.a1b2c3d4.tmp"  # another suffix: another kind of output
    keep.write_bytes(b"x")
    _age(keep)
    with atomic_output(tmp_path / "model.so", suffix=".so") as tmp:
        tmp.write_bytes(b"lib")
    assert not stale.exists() and keep.exists()
    assert (tmp_path / "model.so").read_bytes() == b"lib"


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o644)])
def test_save_bspc_mode_follows_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        path = save_bspc(_matrix(), tmp_path / "w.npz")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == mode
