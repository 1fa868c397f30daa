"""local_rpc's tracker and server end with the process that started them, even on SIGKILL."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_CHILD = """
import sys, time
from tvm_bsp.devices.rpc import local_rpc
with local_rpc("orphan-check") as ep:
    print("PORT", ep[1], flush=True)
    time.sleep(600)
"""


def _open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.slow
@pytest.mark.rpc
def test_killing_the_caller_ends_tracker_and_server():
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD],
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    try:
        line = ""
        deadline = time.monotonic() + 120
        while not line.startswith("PORT") and time.monotonic() < deadline:
            line = proc.stdout.readline() or line
        port = int(line.split()[1])
        assert _open(port)
        proc.send_signal(signal.SIGKILL)  # no cleanup code runs in the caller
        proc.wait(timeout=10)
        deadline = time.monotonic() + 30
        while _open(port) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _open(port), "the tracker outlived the process that started it"
    finally:
        if proc.poll() is None:
            proc.kill()
