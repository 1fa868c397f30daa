"""What a new user trips over in the CLI (issue 13, "Also found"): each checked as they meet it.

- ``tvm-bsp rpc-server`` ended by ``kill PID`` (or killed outright) leaves no process behind;
- ``tvm-bsp tune`` against a tracker it cannot reach fails at once, naming the address;
- bad ``--target`` is a usage error (exit 2) listing the valid targets.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tvm_bsp.devices.rpc import free_port

ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for init to reap it counts as ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def _descendants(pid: int) -> list[int]:
    """All live descendants of ``pid`` (from /proc, independent of the code under test)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return [p for p in out if _alive(p)]


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [p for p in pids if _alive(p)]
        if not left:
            return []
        time.sleep(0.05)
    return [p for p in pids if _alive(p)]


def _kill_all(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


# a child that starts a grandchild (as tvm.exec.rpc_server starts its popen_worker), writes
# both pids, then waits; with IGNORE it ignores SIGTERM and SIGINT
_CHILD = """
import os, signal, subprocess, sys, time
if sys.argv[2] == "IGNORE":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
g = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
open(sys.argv[1] + ".tmp", "w").write(f"{os.getpid()} {g.pid}")
os.replace(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(float(sys.argv[3]))
sys.exit(3)
"""

_PARENT = """
import sys
from tvm_bsp.devices.supervise import supervised_call
sys.exit(supervised_call([sys.executable, "-c", sys.argv[1], *sys.argv[2:]], grace=0.5))
"""


def _start_supervised(tmp_path: Path, mode: str = "PLAIN", life: float = 600.0):
    pids = tmp_path / "pids"
    parent = subprocess.Popen(
        [sys.executable, "-c", _PARENT, _CHILD, str(pids), mode, str(life)],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not pids.exists():
        assert parent.poll() is None, parent.communicate()
        assert time.monotonic() < deadline, "the supervised child did not start"
        time.sleep(0.05)
    child, grandchild = map(int, pids.read_text().split())
    guard = _descendants(parent.pid)
    assert child in guard and grandchild in guard
    return parent, _descendants(parent.pid)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_stop_signal_ends_the_child_and_its_children(tmp_path: Path, sig: int) -> None:
    parent, tree = _start_supervised(tmp_path)
    try:
        parent.send_signal(sig)
        assert parent.wait(timeout=20) == 0
        assert _wait_gone(tree, 5) == []
    finally:
        _kill_all([parent.pid, *tree])


def test_killing_the_parent_outright_ends_the_child_and_its_children(tmp_path: Path) -> None:
    parent, tree = _start_supervised(tmp_path)
    try:
        parent.kill()  # SIGKILL: no handler runs in the parent
        parent.wait(timeout=10)
        assert _wait_gone(tree, 10) == []
    finally:
        _kill_all(tree)


def test_a_child_ignoring_sigterm_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    parent, tree = _start_supervised(tmp_path, "IGNORE")
    try:
        t0 = time.monotonic()
        parent.terminate()
        assert parent.wait(timeout=20) == 0
        assert _wait_gone(tree, 5) == []
        assert time.monotonic() - t0 < 10
    finally:
        _kill_all([parent.pid, *tree])


def test_the_exit_code_passes_through_and_leftovers_are_ended(tmp_path: Path) -> None:
    parent, tree = _start_supervised(tmp_path, "PLAIN", life=1.0)
    try:
        assert parent.wait(timeout=30) == 3  # the child's own exit code
        assert _wait_gone(tree, 5) == []  # its grandchild did not outlive it
    finally:
        _kill_all([parent.pid, *tree])


def _port_bound(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


@pytest.mark.slow
@pytest.mark.rpc
def test_rpc_server_ended_by_kill_frees_its_port_and_leaves_no_process() -> None:
    port = free_port()
    tracker = free_port()  # nothing listens there: the server binds first, then retries
    env = {**_env(), "TVM_USE_RUNTIME_LIB": "1"}
    argv = [sys.executable, "-m", "tvm_bsp", "rpc-server", "--tracker", f"127.0.0.1:{tracker}"]
    argv += ["--key", "usability", "--port", str(port), "--port-end", str(port + 1)]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    tree: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while not _port_bound(port):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the RPC server did not bind its port"
            time.sleep(0.2)
        tree = _descendants(proc.pid)
        assert len(tree) >= 3  # guard, tvm.exec.rpc_server, its popen_worker
        proc.send_signal(signal.SIGTERM)  # what `kill PID` sends
        assert proc.wait(timeout=30) == 0
        assert _wait_gone(tree, 10) == []
        assert not _port_bound(port)
    finally:
        _kill_all([proc.pid, *tree])
