"""A loopback TVM RPC tracker plus one server, on the host or in the emulated aarch64 root.

``local_rpc(key)`` starts ``python -m tvm.exec.rpc_tracker`` and ``python -m
tvm.exec.rpc_server --tracker ... --key KEY`` bound to 127.0.0.1, waits until the server is
registered and free, yields ``(host, port, key)`` and stops everything on exit. With
``arm64=True`` the server runs inside the aarch64 root under qemu (see
:mod:`tvm_bsp.devices.aarch64`); it shares the host network namespace and reaches the host
tracker over loopback, so a client uploads aarch64 libraries and runs them remotely exactly as
with a phone.

Both processes start in their own session; shutdown signals the whole process group (a
server's ``popen_worker`` child would otherwise survive it), escalating from SIGTERM to
SIGKILL with bounded waits.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, NamedTuple

from tvm_bsp.devices.tracker import tracker_summary

__all__ = ["RPCEndpoint", "free_port", "local_rpc"]

_LOOPBACK = "127.0.0.1"


class RPCEndpoint(NamedTuple):
    """Where to reach the tracker, and the key the server registered under."""

    host: str
    port: int
    key: str


def free_port(host: str = _LOOPBACK) -> int:
    """A TCP port that was free on ``host`` a moment ago.

    Parameters
    ----------
    host : str
        Address to probe.

    Returns
    -------
    int
        Port number chosen by the kernel.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _port_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def _stop(proc: subprocess.Popen | None, grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL, the process group led by ``proc``; bounded waits."""
    if proc is None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    # children that outlived their leader (same group) go too
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def _tail(log: IO[bytes] | None, n: int = 3000) -> str:
    if log is None:
        return ""
    log.flush()
    data = Path(log.name).read_bytes()
    return data[-n:].decode(errors="replace")


def _start(argv: list[str], env: Mapping[str, str], log: IO[bytes]) -> subprocess.Popen:
    """Start ``argv`` under a guard: it ends with this process, even one killed by SIGKILL."""
    from tvm_bsp.devices.supervise import guarded

    argv, full_env = guarded(argv, env)
    return subprocess.Popen(
        argv,
        env=full_env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _server_ready(host: str, port: int, key: str) -> bool:
    """Whether the tracker lists a free server under ``key`` (the tracker is listening)."""
    summary = tracker_summary(host, port)
    if summary is None:
        return False
    servers = [s for s in summary.get("server_info", []) if s.get("key") == f"server:{key}"]
    free = summary.get("queue_info", {}).get(key, {}).get("free", 0)
    return bool(servers) and free > 0


@contextlib.contextmanager
def local_rpc(
    key: str,
    arm64: bool = False,
    *,
    timeout: float = 180.0,
    server_env: Mapping[str, str] | None = None,
) -> Iterator[RPCEndpoint]:
    """Run a loopback RPC tracker and one server registered under ``key``.

    Parameters
    ----------
    key : str
        Device key of the server (clients call ``connect_tracker(host, port).request(key)``).
    arm64 : bool
        Run the server inside the emulated aarch64 root (requires
        ``scripts/setup_aarch64_emulator.sh``); otherwise on the host with this interpreter.
    timeout : float
        Seconds to wait for the tracker to listen and the server to register.
    server_env : mapping, optional
        Extra environment variables for the server.

    Yields
    ------
    RPCEndpoint
        ``(host, port, key)`` of the tracker.

    Raises
    ------
    TimeoutError
        If the server does not register in time (the logs' tails are in the message).
    """
    tracker = server = None
    logs: list[IO[bytes]] = []
    with contextlib.ExitStack() as stack:  # log files close after the processes stop
        try:
            # --- tracker, on the host; retry if another process took the port meanwhile
            # the tracker and a host server need only the runtime library (faster start)
            host_env = {**os.environ, "TVM_USE_RUNTIME_LIB": "1"}
            for _attempt in range(3):
                port = free_port()
                tlog = stack.enter_context(
                    tempfile.NamedTemporaryFile(prefix="tvm-bsp-tracker-", suffix=".log")
                )
                logs.append(tlog)
                tracker = _start(
                    [
                        sys.executable, "-m", "tvm.exec.rpc_tracker",
                        "--host", _LOOPBACK, "--port", str(port), "--port-end", str(port + 1),
                    ],
                    host_env,
                    tlog,
                )  # fmt: skip
                deadline = time.monotonic() + min(timeout, 60.0)
                while time.monotonic() < deadline and tracker.poll() is None:
                    if _port_open(_LOOPBACK, port):
                        break
                    time.sleep(0.1)
                if tracker.poll() is None and _port_open(_LOOPBACK, port):
                    break
                _stop(tracker)
                tracker = None
            if tracker is None:
                raise RuntimeError(f"RPC tracker did not start:\n{_tail(logs[-1])}")

            # --- server
            sport = free_port()
            server_args = [
                "-m", "tvm.exec.rpc_server",
                "--tracker", f"{_LOOPBACK}:{port}", "--key", key,
                "--host", _LOOPBACK, "--port", str(sport), "--port-end", str(sport + 100),
            ]  # fmt: skip
            slog = stack.enter_context(
                tempfile.NamedTemporaryFile(prefix="tvm-bsp-rpc-server-", suffix=".log")
            )
            logs.append(slog)
            # the server keeps uploads in temporary directories that a killed server cannot
            # remove: give it a private TMPDIR and delete that after it stops
            if arm64:
                from tvm_bsp.devices.aarch64 import (
                    binfmt_registered,
                    guest_command,
                    guest_workdir,
                )

                if not binfmt_registered():
                    raise RuntimeError(
                        "an RPC server in the aarch64 root starts aarch64 worker processes, "
                        "which needs qemu-aarch64 registered with binfmt_misc "
                        "(scripts/setup_aarch64_emulator.sh does it)"
                    )
                _, guest_tmp = stack.enter_context(guest_workdir())
                argv, env = guest_command(
                    ["python3", *server_args], {"TMPDIR": guest_tmp, **(server_env or {})}
                )
            else:
                host_tmp = stack.enter_context(
                    tempfile.TemporaryDirectory(prefix="tvm-bsp-rpc-", ignore_cleanup_errors=True)
                )
                argv = [sys.executable, *server_args]
                env = {**host_env, "TMPDIR": host_tmp, **(server_env or {})}
            server = _start(argv, env, slog)

            deadline = time.monotonic() + timeout
            while not _server_ready(_LOOPBACK, port, key):
                if server.poll() is not None:
                    raise RuntimeError(
                        f"RPC server exited with {server.returncode}:\n{_tail(slog)}"
                    )
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"RPC server {key!r} did not register with the tracker within {timeout} s\n"
                        f"--- server log ---\n{_tail(slog)}\n--- tracker log ---\n{_tail(logs[-2])}"
                    )
                time.sleep(0.25)
            yield RPCEndpoint(_LOOPBACK, port, key)
        finally:
            _stop(server)
            _stop(tracker)
