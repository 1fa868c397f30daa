"""``tvm-bsp bench gru``: grid lists, rate lists and the side-by-side grid comparison."""

from __future__ import annotations

import pytest

from tvm_bsp.experiments.bench import gru


def test_parse_grid_list_accepts_lists_and_names_bad_items():
    assert gru.parse_grid_list("96x16") == [(96, 16)]
    assert gru.parse_grid_list("96x16, 384X16") == [(96, 16), (384, 16)]
    with pytest.raises(ValueError, match="'96by16' is not ROWSxCOLS"):
        gru.parse_grid_list("96by16")
    with pytest.raises(ValueError, match="positive integers"):
        gru.parse_grid_list("0x16")
    with pytest.raises(ValueError, match="rows must be in"):
        gru.parse_grid_list("4000x16")
    with pytest.raises(ValueError, match="repeats a grid"):
        gru.parse_grid_list("96x16,96x16")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--grid", "96x"], "--grid: grid '96x' is not ROWSxCOLS"),
        (["--rates", "1,ten"], "is not a comma list of integers"),
        (["--rates", "1,11"], "[11] not among"),
    ],
)
def test_bad_options_exit_2_with_the_reason(argv, message, capsys):
    assert gru.main(argv) == 2
    assert message in capsys.readouterr().err


def test_several_grids_are_timed_side_by_side_and_tabled(monkeypatch):
    """A 2 x 32 GRU: the dense build once, every BSPC rate once per grid, each checked
    against torch inside ``run`` (it raises past 1e-3)."""
    monkeypatch.setattr(gru, "HIDDEN", 32)
    grids = [gru.grids_for(12, 4), gru.grids_for(24, 4)]
    records, notes = gru.run((1, 10), T=4, repeat=1, threads=1, grids=grids, peers=False)
    builds = sorted({(r["rate"], r.get("grid"), r["impl"]) for r in records})
    assert builds == [(1, None, "tvm_dense"), (10, "12x4", "bspc"), (10, "24x4", "bspc")]
    assert {r["mode"] for r in records} == {"stream", "utterance"}
    for r in records:
        assert r["us_per_frame"] > 0 and r["max_abs_error"] <= 1e-3
        if r["impl"] == "bspc":
            assert abs(r["achieved_rate"] - 10) < 1.5
    assert "onnx_export" not in notes  # peers skipped
    text = gru.table(records)
    assert "| rate | grid |" in text
    for grid in ("12x4", "24x4"):
        assert sum(f"| 10 | {grid} |" in line for line in text.splitlines()) == 2  # both modes
    assert "dense peers" not in text


def test_load_both_times_every_build_quiet_and_loaded(monkeypatch):
    """``loads=("quiet", "loaded")``: each build and mode is timed under both conditions, the
    loaded one with a busy process running (seen through the load module's context)."""
    from tvm_bsp.experiments.bench import load as load_module

    monkeypatch.setattr(gru, "HIDDEN", 16)
    started = []
    real = load_module.competing_load

    def spy(processes=1, warmup_s=0.5):
        started.append(processes)
        return real(processes, warmup_s=0.05)

    monkeypatch.setattr(gru, "competing_load", spy)
    records, notes = gru.run(
        (1,), T=3, repeat=1, threads=1, grids=gru.grids_for(12, 4), peers=False,
        loads=("quiet", "loaded"), load_processes=1,
    )  # fmt: skip
    assert sorted(started) == [0, 1]
    keys = sorted((r["mode"], r["load"]) for r in records)
    assert keys == sorted((m, c) for m in ("stream", "utterance") for c in ("quiet", "loaded"))
    assert notes["load_processes"] == 1


def test_bad_load_options_exit_2(capsys):
    assert gru.main(["--load-processes", "-1"]) == 2
    assert "--load-processes must be >= 0" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        gru.main(["--load", "heavy"])
    assert exc.value.code == 2
