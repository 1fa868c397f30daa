"""Tuning the RNN layers of a model, and applying the records at compile time."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch

from tvm_bsp.prune import bsp_mask_at_rate
from tvm_bsp.records.database import config_key
from tvm_bsp.records.layers import layer_key
from tvm_bsp.tune import TuningDatabase, TuningError, rnn_candidates, tune_model

FAST = {"number": 10, "repeat": 3, "min_repeat_ms": 5, "session_timeout": 60.0}


def _model(hidden: int = 37, layers: int = 2, seed: int = 0):
    """A small acoustic model (13 features) whose last layer is BSP-pruned (zeros in place)."""
    from tvm_bsp.speech.model import AcousticModel, ModelConfig

    torch.manual_seed(seed)
    model = AcousticModel(ModelConfig(input_dim=13, hidden=hidden, layers=layers)).eval()
    last = layers - 1
    with torch.no_grad():
        for name in (f"weight_ih_l{last}", f"weight_hh_l{last}"):
            w = getattr(model.rnn, name)
            mask = np.asarray(bsp_mask_at_rate(w.numpy(), 3, 4, 4.0, 2.0))
            w.mul_(torch.from_numpy(mask.astype(np.float32)))
    return model


def _best(db: Path, key: str) -> dict:
    recs = [r for r in TuningDatabase(db).records(key) if r["median_us"] is not None]
    return min(recs, key=lambda r: r["median_us"])


def _layer_keys(model, target: str = "host") -> dict[str, str]:
    from tvm_bsp.compiler.bspc_sources import resolve_bspc
    from tvm_bsp.frontend.torch_import import from_torch

    desc = from_torch(model)
    sparse = resolve_bspc(desc, "auto", None)
    return {
        layer.name("weight_hh", k): layer_key(layer, sparse, target)
        for k, layer in enumerate(desc.layers)
    }


def _compile_in_fresh_process(model_pt: Path, db: Path) -> dict:
    """compile_model(tuned=db) in a new interpreter; outputs compared with torch there."""
    code = textwrap.dedent(
        f"""
        import json, numpy as np, torch
        from tvm_bsp.compiler.model import compile_model
        from tvm_bsp.speech.model import load_model
        model, _ = load_model({str(model_pt)!r})
        cm = compile_model(model, "host", "auto", tuned={str(db)!r})
        x = np.random.default_rng(3).standard_normal((7, 2, 13)).astype(np.float32)
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy()
        y, _ = cm.forward(x)
        steps = []
        h = None
        for t in range(x.shape[0]):
            yt, h = cm.step(x[t], h)
            steps.append(yt)
        err = max(float(np.abs(y - ref).max()), float(np.abs(np.stack(steps) - ref).max()))
        print(json.dumps({{"tuned": cm.meta["tuned"], "sparse": cm.meta["sparse"], "err": err}}))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _tune_parser() -> argparse.ArgumentParser:
    from tvm_bsp.cli.tune import add_tune_parser

    parser = argparse.ArgumentParser(prog="tvm-bsp")
    add_tune_parser(parser.add_subparsers(dest="command", required=True))
    return parser


def test_rnn_candidates_default_first() -> None:
    from tvm_bsp.kernels.rnn_knobs import RNNKnobs, default_knobs, knob_space
    from tvm_bsp.kernels.targets import resolve_target

    tgt = resolve_target("host")
    cands = rnn_candidates("host", 6, seed=1)
    assert cands[0] == json.loads(default_knobs(tgt).to_json())
    assert len({config_key(c) for c in cands}) == len(cands) == 6
    space = knob_space(tgt)
    for c in cands:
        RNNKnobs(**c)  # valid
        assert all(c[k] in v for k, v in space.items())
    assert rnn_candidates("host", 1) == cands[:1]


@pytest.mark.slow
def test_cli_tunes_model_fresh_process_applies(tmp_path: Path) -> None:
    from tvm_bsp.speech.model import save_model

    model = _model()
    out = tmp_path / "pruned"
    save_model(model, out / "model.pt")
    db = tmp_path / "db"
    summary = tmp_path / "s.json"
    args = _tune_parser().parse_args(
        ["tune", "--trials", "3", "--db", str(db), "--json", str(summary), str(out / "model.pt")]
    )
    assert args.func(args) == 0
    data = json.loads(summary.read_text())
    keys = _layer_keys(model)
    assert set(data) == set(keys) == {"rnn.weight_hh_l0", "rnn.weight_hh_l1"}
    default = rnn_candidates("host", 1)[0]
    for name, key in keys.items():
        records = TuningDatabase(db).records(key)
        assert len(records) == 3 and all(r["median_us"] > 0 for r in records)
        by_cfg = {config_key(r["config"]): r["median_us"] for r in records}
        # the default config is one of the measured candidates, so the best cannot be slower
        assert config_key(default) in by_cfg
        best = _best(db, key)
        assert best["median_us"] <= by_cfg[config_key(default)]
        assert data[name]["best_config"] == best["config"]
        assert data[name]["default_us"] == by_cfg[config_key(default)]

    got = _compile_in_fresh_process(out / "model.pt", db)
    assert got["tuned"] == {name: _best(db, key)["config"] for name, key in keys.items()}
    assert set(got["sparse"]) == {"rnn.weight_ih_l1", "rnn.weight_hh_l1"}
    assert got["err"] < 1e-4

    # rerun resumes: nothing new is measured
    assert args.func(args) == 0
    assert all(v["measured"] == 0 for v in json.loads(summary.read_text()).values())


def test_tune_model_resume_and_workload_match(tmp_path: Path) -> None:
    from tvm_bsp.compiler.model import compile_model

    model = _model(hidden=24, layers=1, seed=1)
    db = tmp_path / "db"
    first = tune_model(model, db, trials=2, **FAST)
    (name,) = first
    assert first[name].measured == 2 and first[name].skipped == 0
    again = tune_model(model, db, trials=3, **FAST)
    assert again[name].skipped == 2 and again[name].measured == 1
    assert len(again[name].records) == 3
    assert again[name].best_us <= again[name].default_us

    cm = compile_model(model, "host", "auto", tuned=TuningDatabase(db))
    assert cm.meta["tuned"] == {name: again[name].best_config}
    # another sparsity structure is another workload: defaults apply
    dense = _model(hidden=24, layers=1, seed=1)
    with torch.no_grad():
        dense.rnn.weight_hh_l0.copy_(torch.randn_like(dense.rnn.weight_hh_l0))
        dense.rnn.weight_ih_l0.copy_(torch.randn_like(dense.rnn.weight_ih_l0))
    assert compile_model(dense, "host", "auto", tuned=db).meta["tuned"] == {}
    # a mapping is used as it is; a missing directory is a clear error
    cm = compile_model(model, "host", "auto", tuned={name: {"threads": 1}})
    assert cm.meta["tuned"] == {name: {"threads": 1}}
    with pytest.raises(FileNotFoundError, match="tuning database"):
        compile_model(model, "host", "auto", tuned=tmp_path / "missing")


def test_tune_usage_errors(tmp_path: Path) -> None:
    parser = _tune_parser()
    args = parser.parse_args(["tune", "--db", str(tmp_path / "db"), str(tmp_path / "nothing")])
    assert args.func(args) == 2
    args = parser.parse_args(["tune", str(tmp_path)])
    assert args.func(args) == 2  # no --db
    with pytest.raises(ValueError, match="device key"):
        tune_model(_model(8, 1), tmp_path, tracker="127.0.0.1:9190", trials=1)
    with pytest.raises(ValueError, match="cannot run on this machine"):
        tune_model(_model(8, 1), tmp_path, target="arm64", trials=1)


@pytest.mark.rpc
@pytest.mark.slow
def test_tune_model_over_host_rpc_and_server_killed(tmp_path: Path) -> None:
    from test_tune_rpc import _kill_server

    from tvm_bsp.devices.rpc import local_rpc

    model = _model(hidden=24, layers=2, seed=2)
    db = tmp_path / "db"
    key = f"tune-model-{uuid.uuid4().hex[:8]}"
    with local_rpc(key) as (host, port, k):
        res = tune_model(model, db, trials=2, tracker=(host, port), key=k, **FAST)
        for r in res.values():
            assert r.measured == 2 and r.best_us <= r.default_us
            assert all(rec["device_key"] == key for rec in r.records)

        seen: list[int] = []

        def kill_after_one(_record: dict, n: int) -> None:
            seen.append(n)
            if len(seen) == 1:
                _kill_server(key)

        with pytest.raises(TuningError) as info:
            tune_model(
                model, db, trials=5, tracker=(host, port), key=k, callback=kill_after_one,
                **{**FAST, "session_timeout": 20.0},
            )  # fmt: skip
    err = info.value
    assert key in str(err) and err.key == key
    assert err.records_kept == 3  # 2 earlier + 1 before the kill, none lost
    assert len(json.loads(err.db_file.read_text())["records"]) == 3


@pytest.mark.rpc
@pytest.mark.aarch64
@pytest.mark.slow
def test_tune_model_arm64_under_qemu(tmp_path: Path) -> None:
    import tvm
    from tvm import rpc
    from tvm.runtime.vm import VirtualMachine

    from tvm_bsp.compiler.model import compile_model
    from tvm_bsp.devices.aarch64 import require_arm64
    from tvm_bsp.devices.rpc import local_rpc

    require_arm64()
    model = _model(hidden=16, layers=1, seed=4)
    db = tmp_path / "db"
    key = f"tune-model-arm64-{uuid.uuid4().hex[:8]}"
    with local_rpc(key, arm64=True) as (host, port, k):
        res = tune_model(
            model, db, target="arm64", trials=2, tracker=(host, port), key=k,
            **{**FAST, "session_timeout": 180.0},
        )  # fmt: skip
        (name,) = res
        assert res[name].measured == 2 and res[name].best_us <= res[name].default_us
        cm = compile_model(model, "arm64", "auto", tuned=db)
        assert cm.meta["tuned"] == {name: res[name].best_config}
        lib = cm.export(tmp_path / "tuned.so")
        remote = rpc.connect_tracker(host, port).request(k, session_timeout=180)
        remote.upload(str(lib))
        dev = remote.cpu()
        vm = VirtualMachine(remote.load_module(lib.name), dev)
        x = np.random.default_rng(5).standard_normal((5, 1, 13)).astype(np.float32)
        state = np.zeros((1, 1, 16), np.float32)
        # a tuple result cannot cross RPC: run statefully and fetch the outputs
        vm.set_input("forward", tvm.runtime.tensor(x, dev), tvm.runtime.tensor(state, dev))
        vm.invoke_stateful("forward")
        y = vm.get_outputs("forward")[0]
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(y.numpy(), ref, atol=1e-4)


@pytest.mark.parametrize("kind", ["bidirectional_gru", "projected_lstm"])
def test_tune_model_covers_both_directions_and_projections(tmp_path: Path, kind: str) -> None:
    from torch import nn

    from tvm_bsp.compiler.model import compile_model
    from tvm_bsp.compiler.model_file import RNNStack

    torch.manual_seed(2)
    if kind == "bidirectional_gru":
        rnn, out = nn.GRU(13, 16, 1, bidirectional=True), 32
    else:
        rnn, out = nn.LSTM(13, 16, 1, proj_size=8), 8
    model = RNNStack(rnn, nn.Linear(out, 5)).eval()
    db = tmp_path / "db"
    results = tune_model(model, db, trials=2, **FAST)
    expected = {"rnn.weight_hh_l0"} | ({"rnn.weight_hh_l0_reverse"} if out == 32 else set())
    assert set(results) == expected
    # the reverse half of a dense bidirectional layer is the same workload: measured once
    assert all(r.measured + r.skipped == 2 for r in results.values())
    assert sum(r.measured for r in results.values()) == 2
    cm = compile_model(model, "host", tuned=TuningDatabase(db))
    assert set(cm.meta["tuned"]) == expected  # both halves get their records
    x = np.random.default_rng(0).standard_normal((6, 2, 13)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x))[0].numpy()  # RNNStack returns (y, state)
    y, _ = cm.forward(x)
    np.testing.assert_allclose(y, ref, atol=1e-4)
