"""Block-size search: Pareto marking (pure) and a tiny end-to-end run."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from tvm_bsp.experiments.block_search import (
    SearchSettings,
    block_search,
    format_table,
    pareto_flags,
    parse_grids,
    plot_records,
)


def _brute_pareto(points: list[tuple[float, float]]) -> list[bool]:
    """Independent reference: sort by x then y, sweep keeping the running minimum of y."""
    order = sorted(range(len(points)), key=lambda i: points[i])
    keep = [False] * len(points)
    best_y = np.inf
    for i in order:
        x, y = points[i]
        if y < best_y:
            keep[i] = True
            best_y = y
        elif y == best_y and any(points[j] == (x, y) and keep[j] for j in order):
            keep[i] = True  # duplicates of a kept point
    return keep


def test_pareto_known_points() -> None:
    pts = [(10.0, 5.0), (12.0, 3.0), (11.0, 6.0), (9.0, 9.0), (12.0, 4.0), (10.0, 5.0)]
    assert pareto_flags(pts) == [True, True, False, True, False, True]
    assert pareto_flags([]) == []
    assert pareto_flags([(1.0, 1.0)]) == [True]
    with pytest.raises(ValueError, match="NaN"):
        pareto_flags([(float("nan"), 1.0)])


def test_pareto_matches_sweep_reference() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        pts = [tuple(map(float, p)) for p in rng.integers(0, 6, size=(12, 2))]
        assert pareto_flags(pts) == _brute_pareto(pts)


def test_parse_grids() -> None:
    assert parse_grids("6x4, 12X8") == [(6, 4), (12, 8)]
    for bad in ("6", "6x", "0x4", "ax4"):
        with pytest.raises(ValueError, match="ROWSxCOLS"):
            parse_grids(bad)


@dataclass
class _Utt:
    features: np.ndarray
    labels: np.ndarray
    phones: list[str]


def _corpus(n: int, seed: int) -> list[_Utt]:
    """Frames whose first 39 dims are a noisy one-hot code of the frame's phone."""
    from tvm_bsp.speech.phones import PHONES_39

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        seq = rng.integers(0, 39, size=4)
        labels = np.repeat(seq, 6)
        x = np.eye(39, dtype=np.float32)[labels] + 0.1 * rng.standard_normal((24, 39))
        out.append(_Utt(x.astype(np.float32), labels.astype(np.int64), [PHONES_39[i] for i in seq]))
    return out


def test_block_search_tiny_end_to_end(tmp_path: Path) -> None:
    from tvm_bsp.speech.model import AcousticModel, ModelConfig

    torch.manual_seed(0)
    torch.set_num_threads(1)
    dense = AcousticModel(ModelConfig(hidden=16, layers=1)).eval()
    train, dev = _corpus(12, 0), _corpus(4, 1)
    settings = SearchSettings(
        admm_epochs=1, retrain_epochs=1, utts_per_epoch=12, frames=5, repeat=2
    )
    lines: list[str] = []
    records = block_search(
        dense, train, dev, [(6, 4), (12, 8)], [4.0], tmp_path / "work",
        settings=settings, log=lines.append,
    )  # fmt: skip
    assert [r["grid"] for r in records] == [[6, 4], [12, 8]]
    for r in records:
        assert r["rate"] == 4.0 and r["achieved_rate"] > 2.0
        assert r["per"] >= 0.0 and r["us_per_frame"] > 0
    flags = pareto_flags([(r["per"], r["us_per_frame"]) for r in records])
    assert [r["pareto"] for r in records] == flags and any(flags)
    assert "*" in format_table(records)
    # cached: the rerun prunes nothing and returns the same numbers
    again = block_search(
        dense, train, dev, [(6, 4), (12, 8)], [4.0], tmp_path / "work",
        settings=settings, log=lines.append,
    )  # fmt: skip
    assert [(r["per"], r["us_per_frame"]) for r in again] == [
        (r["per"], r["us_per_frame"]) for r in records
    ]
    assert sum("cached" in line for line in lines) == 2
    png = plot_records(records, tmp_path / "front.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    cached = json.loads((tmp_path / "work" / "6x4-r4" / "record.json").read_text())
    assert cached["per"] == records[0]["per"]
    # the exported BSPC weights use the candidate's grid and give the achieved rate
    from tvm_bsp.prune import load_bspc_dir

    for r in records:
        rb, cb = r["grid"]
        mats, _ = load_bspc_dir(tmp_path / "work" / f"{rb}x{cb}-r4" / "bspc")
        assert (mats["rnn.weight_hh_l0"].row_blocks, mats["rnn.weight_hh_l0"].col_blocks) == (
            rb,
            cb,
        )
        dense_sizes = sum(m.shape[0] * m.shape[1] for m in mats.values())
        kept = sum(int(np.count_nonzero(m.to_dense())) for m in mats.values())
        assert dense_sizes / kept == pytest.approx(r["achieved_rate"], rel=0.05)
