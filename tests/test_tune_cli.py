"""The ``tune`` and ``rpc-server`` subcommands (parsers built here, not through tvm_bsp.cli)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tvm_bsp.cli.tune import add_rpc_server_parser, add_tune_parser, rpc_server_command
from tvm_bsp.prune import bsp_mask_at_rate, export_bspc, load_bspc_dir
from tvm_bsp.tune import apply_best


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tvm-bsp")
    sub = parser.add_subparsers(dest="command", required=True)
    add_tune_parser(sub)
    add_rpc_server_parser(sub)
    return parser


def _export(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Linear(64, 32))
    masks = {}
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("weight"):
                mask = np.asarray(bsp_mask_at_rate(p.detach().numpy(), 4, 4, 4.0, 2.0))
                p.mul_(torch.from_numpy(mask.astype(np.float32)))
                masks[name] = mask
    out = tmp_path / "bspc"
    export_bspc(model, masks, out, grid=(4, 4))
    return out


def test_tune_cli_host(tmp_path: Path) -> None:
    bdir = _export(tmp_path)
    db = tmp_path / "db"
    summary = tmp_path / "s.json"
    args = _parser().parse_args(
        ["tune", "--trials", "2", "--db", str(db), "--json", str(summary), str(bdir)]
    )
    assert args.func(args) == 0
    data = json.loads(summary.read_text())
    matrices, _ = load_bspc_dir(bdir)
    assert set(data) == set(matrices)
    for name, m in matrices.items():
        assert data[name]["best_us"] <= data[name]["default_us"]
        assert apply_best(db, m, 1, "host") == data[name]["best_config"]
    # rerun resumes: nothing new is measured
    assert args.func(args) == 0
    assert all(v["measured"] == 0 for v in json.loads(summary.read_text()).values())


def test_tune_cli_usage_errors(tmp_path: Path) -> None:
    args = _parser().parse_args(["tune", "--db", str(tmp_path), "--key", "k", str(tmp_path)])
    assert args.func(args) == 2
    with pytest.raises(SystemExit):
        _parser().parse_args(["tune", "--db", "d", "--tracker", "nohostport", "x"])


def test_rpc_server_command() -> None:
    args = _parser().parse_args(["rpc-server", "--tracker", "10.0.0.2:9190", "--key", "rk3399"])
    cmd = rpc_server_command(args)
    assert cmd[:3] == [sys.executable, "-m", "tvm.exec.rpc_server"]
    assert cmd[cmd.index("--tracker") + 1] == "10.0.0.2:9190"
    assert cmd[cmd.index("--key") + 1] == "rk3399"
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1"
