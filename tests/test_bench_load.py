"""The competing load of ``bench gru --load``: it holds a core, and it ends with its block."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tvm_bsp.devices.supervise import group_members
from tvm_bsp.experiments.bench.load import competing_load, modes_of


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _cpu_seconds(pid: int) -> float:
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc")
def test_the_load_burns_cpu_while_the_block_runs_and_is_gone_after():
    with competing_load(1, warmup_s=0.2) as guards:
        (guard,) = guards
        busy = [p for p in group_members(guard, exclude=guard)]
        assert busy, "the guard started no busy process"
        before = sum(_cpu_seconds(p) for p in busy)
        time.sleep(1.0)
        used = sum(_cpu_seconds(p) for p in busy) - before
        assert used > 0.3, f"the load used only {used:.2f} s of CPU in 1 s"
    time.sleep(0.2)
    assert not any(os.path.exists(f"/proc/{p}") and _alive(p) for p in [guard, *busy])


def _alive(pid: int) -> bool:
    state = _stat(pid)[0]
    return state != "Z"


def test_no_load_and_the_modes():
    with competing_load(0) as guards:
        assert guards == []
    assert modes_of("both") == ["quiet", "loaded"] and modes_of("loaded") == ["loaded"]
    with pytest.raises(ValueError, match="--load must be one of quiet, loaded, both"):
        modes_of("heavy")
    with pytest.raises(ValueError, match="processes must be >= 0"), competing_load(-1):
        pass
