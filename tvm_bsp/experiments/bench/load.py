"""A competing CPU load for the benchmarks (``bench gru --load``).

Phones and shared machines rarely give a benchmark every core: the figures of issue-style
measurements "on a loaded machine" (2 threads slower than 1, the dense build far behind ONNX
Runtime) came from other processes holding a core. :func:`competing_load` starts ``processes``
busy processes (a float multiply-add loop each, one core apiece) for the duration of a
``with`` block, so the same benchmark can be reported quiet and loaded in one run. The load
runs under the guard of :mod:`tvm_bsp.devices.supervise`: it ends with the block, and with this
process even when it is killed.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

from tvm_bsp.devices.supervise import guarded

LOAD_MODES = ("quiet", "loaded", "both")
"""``--load`` values: no load, under load, or both one after the other."""

_BUSY_LOOP = "x = 1.0\nwhile True:\n    x = x * 1.0000001 + 1e-9\n"


def modes_of(load: str) -> list[str]:
    """The conditions ``--load LOAD`` measures, in order (``"both"``: quiet, then loaded).

    Raises
    ------
    ValueError
        For a value outside :data:`LOAD_MODES`.
    """
    if load not in LOAD_MODES:
        raise ValueError(f"--load must be one of {', '.join(LOAD_MODES)}, got {load!r}")
    return ["quiet", "loaded"] if load == "both" else [load]


@contextlib.contextmanager
def competing_load(processes: int = 1, warmup_s: float = 0.5) -> Iterator[list[int]]:
    """Keep ``processes`` cores busy with other processes while the block runs.

    Parameters
    ----------
    processes : int
        Busy processes to start (0: none, the block runs quiet).
    warmup_s : float
        Seconds to wait after starting them, so that they are running when timing begins.

    Yields
    ------
    list of int
        The process ids of the guards (each guard's group holds one busy process).
    """
    if processes < 0:
        raise ValueError(f"processes must be >= 0, got {processes}")
    children: list[subprocess.Popen] = []
    try:
        for _ in range(processes):
            argv, env = guarded([sys.executable, "-c", _BUSY_LOOP], grace=1.0)
            children.append(subprocess.Popen(argv, env=env, start_new_session=True))
        if children:
            time.sleep(warmup_s)
        yield [c.pid for c in children]
    finally:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
