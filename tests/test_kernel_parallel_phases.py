"""Parallel time-loop kernels whose phases have a single work item (one tile of units).

A ``T.parallel`` loop of extent 1 inside the parallel region is simplified away, so its body
ran on every thread with no barrier after it: the 8-unit ONNX GRU differed from onnxruntime by
up to 0.96 from the second frame on with 4 runtime threads, and a dense 8-unit layer did not
compile ("Cannot find parallel loop within parallel launch"). The kernels run in a subprocess
with ``TVM_NUM_THREADS=4`` (more threads than work items, which exposes the race) and are
compared with onnxruntime and torch over many calls.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

TESTS = Path(__file__).parent
CALLS = 60

_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np, torch
    from torch import nn
    sys.path.insert(0, {tests!r})
    import tvm_bsp
    knobs = {{"min_parallel_macs": 0, "threads": 2, "lanes": 8, "frames": 4}}
    calls = {calls}
    worst = {{}}

    def check(name, cm, x, want, state=None):
        diffs = []
        for _ in range(calls):
            y, _s = cm.forward(x) if state is None else cm.forward(x, state)
            diffs.append(float(np.abs(y.reshape(want.shape) - want).max()))
        worst[name] = max(diffs)

    if {onnx}:
        from onnx_graphs import feeds_for, rnn_graph, run_ort
        from tvm_bsp.frontend import import_onnx
        model = rnn_graph("GRU", layers=2, lbr=0, sparse=True, sizes=(6, 8, 5), seed=31)
        cm = tvm_bsp.compile_model(model, target="host", bspc="auto", knobs=knobs)
        _d, sig = import_onnx(model)
        feeds = feeds_for(model, 6, 2, seed=3)
        check("onnx_gru_bspc", cm, feeds["x"], run_ort(model, feeds)["y"], sig.state(feeds))
    for cell in ("gru", "lstm"):
        torch.manual_seed(0)
        rnn = (nn.GRU if cell == "gru" else nn.LSTM)(6, 8, num_layers=2)

        class Stack(nn.Module):
            def __init__(self):
                super().__init__()
                self.rnn, self.head = rnn, nn.Linear(8, 5)

            def forward(self, x):
                return self.head(self.rnn(x)[0])

        model = Stack().eval()
        x = np.random.RandomState(1).randn(6, 2, 6).astype(np.float32)
        want = model(torch.from_numpy(x)).detach().numpy()
        cm = tvm_bsp.compile_model(model, target="host", knobs=knobs)
        check(cell + "_dense", cm, x, want)
    print(json.dumps(worst))
    """
)


def _run(calls: int, onnx: bool) -> dict[str, float]:
    script = _SCRIPT.format(tests=str(TESTS), calls=calls, onnx=onnx)
    env = {**os.environ, "TVM_NUM_THREADS": "4"}
    res = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_one_tile_layers_with_more_threads_than_work_equal_the_references():
    try:
        import onnxruntime  # noqa: F401

        onnx = True
    except ImportError:
        onnx = False
    worst = _run(calls=CALLS, onnx=onnx)
    assert set(worst) >= {"gru_dense", "lstm_dense"}
    for name, diff in worst.items():
        assert diff <= 1e-4, f"{name}: max |tvm - reference| = {diff} over {CALLS} calls"
