"""An ONNX GRU compiled for ``arm64``, run under qemu (TVM runtime only), against onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from onnx_graphs import feeds_for, rnn_graph, run_ort
from test_compile_model import _COPY_BACK, _GUEST, _parse

import tvm_bsp
from tvm_bsp.frontend import import_onnx

ATOL = 1e-4


@pytest.mark.aarch64
@pytest.mark.slow
@pytest.mark.parametrize("threads", [1, 2])
def test_onnx_gru_arm64_under_qemu(tmp_path, threads):
    from tvm_bsp.devices.aarch64 import require_arm64, run_in_arm64

    require_arm64()
    model = rnn_graph("GRU", layers=2, lbr=0, sparse=True, sizes=(6, 8, 5), seed=31)
    cm = tvm_bsp.compile_model(
        model, target="arm64", bspc="auto", knobs={"min_parallel_macs": 0, "threads": threads}
    )
    assert not cm.runnable and cm.sparse
    lib = cm.export(tmp_path / "model.so")
    _desc, sig = import_onnx(model)
    feeds = feeds_for(model, 6, 2, seed=3)
    np.save(tmp_path / "x.npy", feeds["x"])
    np.save(tmp_path / "state.npy", sig.state(feeds))
    from tvm_bsp.deploy.shipped import runtime_files  # what tvm-bsp deploy copies to devices

    files = {
        "model.so": lib,
        "x.npy": tmp_path / "x.npy",
        "state.npy": tmp_path / "state.npy",
        **runtime_files(),
    }
    res = run_in_arm64(_GUEST + _COPY_BACK, files, timeout=600)
    assert res.returncode == 0, res.stderr[-4000:]
    outs = {k: np.frombuffer(bytes.fromhex(v), np.float32) for k, v in _parse(res.stdout).items()}
    ref = run_ort(model, feeds)
    y = outs["y"].reshape(ref["y"].shape)
    state = outs["h"].reshape(sig.state_shape(2))
    mine = sig.onnx_outputs(y, state)
    for name, want in ref.items():
        np.testing.assert_allclose(mine[name], want, atol=ATOL, err_msg=name)
    np.testing.assert_allclose(outs["stream"].reshape(ref["y"].shape), ref["y"], atol=ATOL)
