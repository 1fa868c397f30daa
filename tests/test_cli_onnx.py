"""``tvm-bsp compile`` / ``deploy`` of a ``.onnx`` file, against onnxruntime."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import pytest

pytest.importorskip("onnxruntime")

from onnx_graphs import feeds_for, rnn_graph, run_ort

from tvm_bsp.cli import main
from tvm_bsp.deploy import load
from tvm_bsp.deploy.labels import read_labels
from tvm_bsp.deploy.model_file import load_model_file
from tvm_bsp.frontend.model import RNNModel

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
