"""``tvm-bsp compile`` / ``deploy`` of a ``.onnx`` file, against onnxruntime."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest

pytest.importorskip("onnxruntime")

from onnx_graphs import feeds_for, rnn_graph, run_ort

from tvm_bsp.cli import main
from tvm_bsp.compiler.model_file import load_model_file
from tvm_bsp.frontend.model import RNNModel
from tvm_bsp.runtime import load
from tvm_bsp.runtime.labels import read_labels

ATOL = 1e-4


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory):
    model = rnn_graph("GRU", layers=2, init_state=False, sizes=(6, 8, 5), seed=21)
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    onnx.save(model, path)
    return model, path


def test_load_model_file_reads_onnx(onnx_file, tmp_path):
    _model, path = onnx_file
    loaded = load_model_file(path)
    assert isinstance(loaded.module, RNNModel) and loaded.kind == "onnx"
    assert loaded.labels == [str(i) for i in range(5)]
    with pytest.raises(FileNotFoundError, match=r"nothere\.onnx"):
        load_model_file(tmp_path / "nothere.onnx")


def test_cli_compile_onnx_matches_onnxruntime(onnx_file, tmp_path):
    model, path = onnx_file
    so = tmp_path / "model.so"
    argv = [sys.executable, "-m", "tvm_bsp", "compile", str(path), "-o", str(so), "--threads", "1"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "gru 2x8" in proc.stdout, proc.stdout
    assert read_labels(so, 5)["labels"] == [str(i) for i in range(5)]
    feeds = feeds_for(model, 9, 2, seed=3)
    y = load(so).forward(feeds["x"])[0]
    np.testing.assert_allclose(y, run_ort(model, feeds)["y"], atol=ATOL)


def test_cli_deploy_onnx_prints_the_onnxruntime_argmax(onnx_file, tmp_path, capfd):
    model, path = onnx_file
    x = feeds_for(model, 12, 1, seed=5)["x"]
    np.save(tmp_path / "feats.npy", x[:, 0])
    out = tmp_path / "dep"
    argv = ["deploy", str(path), "--out", str(out), "--features", str(tmp_path / "feats.npy")]
    assert main(argv) == 0
    printed = capfd.readouterr().out
    ids = [int(i) for i in run_ort(model, {"x": x})["y"][:, 0].argmax(-1)]
    expected = [str(i) for k, i in enumerate(ids) if k == 0 or ids[k - 1] != i]
    lines = [ln for ln in printed.splitlines() if ln.startswith("phones:")]
    assert lines and lines[-1].split()[1:] == expected, printed
    assert (out / "model.so").is_file()


def test_cli_refused_onnx_exits_1_naming_the_node(tmp_path, capfd):
    model = rnn_graph("LSTM", init_state=False, head=None, final=None, extra={"input_forget": 1})
    path = tmp_path / "bad.onnx"
    onnx.save(model, path)
    assert main(["compile", str(path), "-o", str(tmp_path / "bad.so")]) == 1
    err = capfd.readouterr().err
    assert "tvm-bsp compile: error:" in err and "rnn0" in err and "input_forget" in err, err


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """A 1-layer ONNX LSTM tuned by ``tune_model`` (given the ``.onnx`` path)."""
    from tvm_bsp.tune import tune_model

    tmp = tmp_path_factory.mktemp("tune")
    model = rnn_graph("LSTM", init_state=False, sizes=(6, 8, 5), seed=22)
    path = tmp / "lstm.onnx"
    onnx.save(model, path)
    fast = {"number": 5, "repeat": 2, "min_repeat_ms": 2, "session_timeout": 60.0}
    return model, path, tmp / "db", tune_model(str(path), tmp / "db", trials=1, **fast)


def test_tune_model_takes_the_onnx_file(tuned):
    """One result per layer, named like the description's weights; compile applies them."""
    import tvm_bsp
    from tvm_bsp.frontend import from_onnx

    model, path, db, results = tuned
    desc = from_onnx(path)
    assert set(results) == {layer.name("weight_hh", k) for k, layer in enumerate(desc.layers)}
    assert all(r.measured == 1 for r in results.values())
    cm = tvm_bsp.compile_model(str(path), tuned=str(db))
    assert set(cm.meta["tuned"]) == set(results)
    feeds = feeds_for(model, 5, 1, seed=8)
    np.testing.assert_allclose(cm.forward(feeds["x"])[0], run_ort(model, feeds)["y"], atol=ATOL)


def test_cli_tune_takes_the_onnx_file(tuned, tmp_path):
    """``tvm-bsp tune model.onnx`` (the candidate is in the database already: none measured)."""
    _model, path, db, results = tuned
    summary = tmp_path / "tune.json"
    argv = ["tune", "--trials", "1", "--db", str(db), "--json", str(summary), str(path)]
    assert main(argv) == 0
    data = json.loads(summary.read_text())
    assert set(data) == set(results), data
    assert all(v["measured"] == 0 for v in data.values()), data
