"""The ``tvm-bsp`` command."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from tvm_bsp.cli import main
from tvm_bsp.experiments.demo import reference_gru_weights


def test_demo_writes_a_size_table_matching_an_independent_recount(tmp_path, capsys):
    out = tmp_path / "demo.json"
    assert main(["demo", "--sizes-only", "--rates", "10,80", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert "| 3072x1024 | 80 |" in table
    records = json.loads(out.read_text())
    assert {(r["matrix"], r["rate"]) for r in records} == {
        (m, r) for m in ("3072x39", "3072x1024") for r in (10, 80)
    }
    w = reference_gru_weights(0)["weight_hh_l0"]
    for r in records:
        assert abs(r["achieved_rate"] - r["rate"]) / r["rate"] < 0.05
        assert r["dense_bytes"] == (w.nbytes if r["matrix"] == "3072x1024" else 3072 * 39 * 4)
        # BSPC bytes: 4 per value plus the index arrays; at least the values themselves
        values = r["dense_bytes"] / 4 / r["achieved_rate"]
        assert values * 4 < r["bspc_bytes"] < r["csr_bytes"]
        # int8 BSPC: the same indices, 1 byte per value instead of 4, plus float32 scales
        assert r["int8_granularity"] in ("row", "block_row")
        scale_bytes = r["int8_bspc_bytes"] - (r["bspc_bytes"] - 3 * values)
        if r["int8_granularity"] == "row":  # one per output row
            assert abs(scale_bytes - 4 * 3072) < 3 * values * 0.01
        else:
            assert scale_bytes > 4 * 3072
        if r["matrix"] == "3072x1024":
            assert r["int8_bspc_bytes"] < r["bspc_bytes"] / 2
        assert r["imbalance_2t"] <= r["imbalance_2t_before"] + 1e-9


def test_reference_weights_are_torch_gru_shaped():
    w = reference_gru_weights(0)
    assert w["weight_ih_l0"].shape == (3072, 39)
    assert w["weight_hh_l1"].shape == (3072, 1024)
    assert np.abs(w["weight_hh_l0"]).max() <= 1 / 32 + 1e-7  # torch init: U(-1/sqrt(H), 1/sqrt(H))


def test_unknown_rate_is_a_usage_error():
    proc = subprocess.run(
        [sys.executable, "-m", "tvm_bsp", "demo", "--rates", "7"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "no column/row split known for rates [7]" in proc.stderr


def test_help_lists_the_commands():
    proc = subprocess.run(
        [sys.executable, "-m", "tvm_bsp", "--help"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0 and "demo" in proc.stdout
