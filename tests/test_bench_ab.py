"""scripts/bench_ab.py pairs the records of two trees' bench_gru runs by key (medians, ratio)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_ab.py"


@pytest.fixture(scope="module")
def bench_ab():
    spec = importlib.util.spec_from_file_location("bench_ab", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _record(mode, rate, impl, threads, us):
    return {"mode": mode, "rate": rate, "impl": impl, "threads": threads, "us_per_frame": us}


def test_pairs_medians_and_ratios_by_key(bench_ab):
    rng = np.random.default_rng(0)
    keys = [("stream", 10, "bspc", 1), ("stream", 10, "bspc", 2), ("utterance", 1, "tvm_dense", 1)]
    before = rng.uniform(10, 100, size=(5, len(keys)))
    after = rng.uniform(10, 100, size=(5, len(keys)))
    runs = {
        "before": [
            [_record(*k, float(t)) for k, t in zip(keys, row, strict=True)] for row in before
        ],
        # the after tree lists its records in another order, and one key the before tree lacks
        "after": [
            [_record("stream", 301, "bspc", 1, 1.0)]
            + [_record(*k, float(t)) for k, t in reversed(list(zip(keys, row, strict=True)))]
            for row in after
        ],
    }
    paired = bench_ab.pair_records(runs)
    assert [(r["mode"], r["rate"], r["impl"], r["threads"]) for r in paired] == keys
    for i, rec in enumerate(paired):
        assert rec["before_us"] == pytest.approx(np.median(before[:, i]))
        assert rec["after_us"] == pytest.approx(np.median(after[:, i]))
        assert rec["ratio"] == pytest.approx(np.median(after[:, i]) / np.median(before[:, i]))
        assert rec["before_runs"] == pytest.approx(list(before[:, i]))
    table = bench_ab.format_table(paired)
    assert table.count("\n") == len(keys) + 1
    assert f"{paired[0]['ratio']:.3f}" in table


def test_refuses_a_tree_without_the_benchmark(bench_ab, tmp_path):
    with pytest.raises(SystemExit, match=r"no scripts/bench_gru\.py"):
        bench_ab.run_bench(tmp_path, ["--quick"])


def test_result_document_names_both_trees_and_is_valid_json(bench_ab, tmp_path):
    import json

    trees = {"before": tmp_path / "a", "after": tmp_path / "b"}  # not checkouts: named by path
    out = tmp_path / "ab.json"
    bench_ab.write_result(out, trees, "bench_ab.py --x", rounds=3, records=[{"ratio": 1.0}])
    doc = json.loads(out.read_text())
    assert doc == {"command": "bench_ab.py --x", "before_rev": str(trees["before"]),
                   "after_rev": str(trees["after"]), "rounds": 3, "records": [{"ratio": 1.0}]}
    assert [p.name for p in tmp_path.iterdir()] == ["ab.json"]  # no temporary left behind
