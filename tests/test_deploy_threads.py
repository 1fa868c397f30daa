"""Threads on one loaded session (defect 1 of issue 13: two threads crashed with a segfault or
raised TVM-internal errors). The threads run in a child process, so a segfault fails the test
(exit code) instead of killing pytest; every result is compared with a single-threaded run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from torch import nn

import tvm_bsp

I, H = 13, 37
REPO = Path(__file__).resolve().parents[1]

_CHILD = r"""
import json, sys, threading
import numpy as np
import tvm_bsp.runtime

so, threads, rounds = sys.argv[1], 4, 15
s = tvm_bsp.runtime.load(so)
rng = np.random.default_rng(0)
xs = [rng.standard_normal((6, 1 + k % 2, 13)).astype(np.float32) for k in range(threads)]
ref_fwd = [s.forward(x) for x in xs]
ref_step = [s.step(x[0]) for x in xs]
frame = xs[0][0, :1]
s.reset()
ref_push = [s.push(frame) for _ in range(threads * rounds)]  # one stream of constant frames
ref_final = s.state.copy()
s.reset()
report = {"errors": [], "mismatch": 0, "pushed": [], "own": 0}
lock = threading.Lock()

def shared(k):
    try:
        got = []
        for _ in range(rounds):
            y, h = s.forward(xs[k])
            ok = np.array_equal(y, ref_fwd[k][0]) and np.array_equal(h, ref_fwd[k][1])
            y1, h1 = s.step(xs[k][0])
            ok = ok and np.array_equal(y1, ref_step[k][0]) and np.array_equal(h1, ref_step[k][1])
            got.append(s.push(frame))
            if not ok:
                with lock:
                    report["mismatch"] += 1
        with lock:
            report["pushed"].extend(got)
    except Exception as err:
        with lock:
            report["errors"].append(repr(err)[:300])

def own(k):  # one session per thread: parallel streams
    try:
        mine = tvm_bsp.runtime.load(so)
        y = np.stack([mine.push(f) for f in xs[k]])
        with lock:
            report["own"] += int(np.array_equal(y, np.stack(ref_own[k])))
    except Exception as err:
        with lock:
            report["errors"].append(repr(err)[:300])

workers = [threading.Thread(target=shared, args=(k,)) for k in range(threads)]
for w in workers: w.start()
for w in workers: w.join()
# the shared stream: every push is one step of the single stream, none lost or repeated
final = float(np.abs(s.state - ref_final).max())
refs = np.stack(ref_push)
used = []
for y in report["pushed"]:
    d = np.abs(refs - y[None]).reshape(len(refs), -1).max(axis=1)
    used.append(int(d.argmin()) if d.min() <= 1e-6 else -1)
ref_own = []
for x in xs:
    s.reset()
    ref_own.append([s.push(f) for f in x])
workers = [threading.Thread(target=own, args=(k,)) for k in range(threads)]
for w in workers: w.start()
for w in workers: w.join()
print(json.dumps({
    "errors": report["errors"], "mismatch": report["mismatch"], "used": sorted(used),
    "final": final,
    "own": report["own"], "pushes": threads * rounds,
}))
"""


def _slow_gru() -> nn.Module:
    """A GRU whose update gate stays near 1: the state moves a few percent per frame, so a
    lost or repeated streaming step changes the outputs measurably."""
    torch.manual_seed(0)
    rnn = nn.GRU(I, H, 2).eval()
    with torch.no_grad():
        for k in range(2):
            getattr(rnn, f"bias_ih_l{k}")[H : 2 * H] = 3.0
    return rnn


def test_threads_on_one_session_match_a_single_thread(tmp_path):
    cm = tvm_bsp.compile_model(_slow_gru(), target="host")
    so = cm.export(tmp_path / "gru.so")
    env = dict(os.environ, TVM_USE_RUNTIME_LIB="1", PYTHONPATH=str(REPO))
    res = subprocess.run(
        [sys.executable, "-c", _CHILD, str(so)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert res.returncode == 0, f"child exited {res.returncode}: {res.stderr[-3000:]}"
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["errors"] == []
    assert out["mismatch"] == 0
    assert out["used"] == list(range(out["pushes"])), "a streaming step was lost or repeated"
    assert out["final"] <= 1e-6
    assert out["own"] == 4
