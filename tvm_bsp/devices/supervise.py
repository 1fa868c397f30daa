"""Run a long-lived command (an RPC server) so that it ends with the process that started it.

``subprocess.call`` only stops a child on Ctrl-C; ``kill PID`` of the caller leaves the child
(and the child's own children, e.g. the ``popen_worker`` that really serves TVM RPC) running,
adopted by init. :func:`supervised_call` runs the command under a small *guard* process:

- the caller forwards SIGTERM, SIGINT and SIGHUP to the guard; the guard forwards the signal to
  every process of its process group (the command and all its descendants), waits up to
  ``grace`` seconds, then sends SIGTERM and finally SIGKILL to whatever is left;
- the guard asks the kernel for a parent-death signal (Linux ``prctl(PR_SET_PDEATHSIG)``), so
  when the caller dies, even by SIGKILL, the guard gets SIGTERM and ends the group the same way;
- when the command exits on its own, processes it left behind in the group are ended too.

The guard is ``python -m tvm_bsp.devices.supervise PARENT_PID GRACE -- COMMAND...`` and leads
its own session, so the command's descendants are found by process group (``/proc``). Linux
only for the parent-death part; elsewhere the signal forwarding still works.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["FORWARDED_SIGNALS", "group_members", "set_parent_death_signal", "supervised_call"]

#: Signals the caller and the guard pass on (a stop request).
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
_PR_SET_PDEATHSIG = 1
_ESCALATION_WAIT = 2.0


def set_parent_death_signal(sig: int = signal.SIGTERM) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent thread exits.

    Parameters
    ----------
    sig : int
        Signal number.

    Returns
    -------
    bool
        Whether it was set (``False`` off Linux or when ``prctl`` is unavailable).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def group_members(pgid: int, exclude: int | None = None) -> list[int]:
    """Live (not zombie) processes of process group ``pgid``, from ``/proc``.

    Parameters
    ----------
    pgid : int
        Process group id.
    exclude : int, optional
        A pid to leave out (the caller itself).

    Returns
    -------
    list of int
        Their pids (empty when ``/proc`` is not available).
    """
    pids = []
    try:
        entries = list(os.scandir("/proc"))
    except OSError:
        return []
    for entry in entries:
        if not entry.name.isdigit() or int(entry.name) == exclude:
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses
        fields = stat[stat.rindex(")") + 2 :].split()
        if len(fields) > 2 and fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
            pids.append(int(entry.name))
    return pids


def _signal_all(pids: Sequence[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _end_group(child: subprocess.Popen, grace: float, first: int | None) -> None:
    """Guard side: end every other process of the group (``first`` signal, TERM, KILL)."""
    me, pgid = os.getpid(), os.getpgrp()
    steps = [(first, grace)] if first is not None else []
    steps += [(signal.SIGTERM, _ESCALATION_WAIT), (signal.SIGKILL, _ESCALATION_WAIT)]
    for sig, wait in steps:
        members = group_members(pgid, exclude=me)
        if not members:
            break
        _signal_all(members, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            child.poll()  # reap the direct child as soon as it exits
            if not group_members(pgid, exclude=me):
                break
            time.sleep(0.05)
    with contextlib.suppress(subprocess.TimeoutExpired):
        child.wait(timeout=_ESCALATION_WAIT)


def _guard(parent: int, grace: float, argv: Sequence[str]) -> int:
    """The guard process: run ``argv`` in this group; end the group on a signal or orphaning."""
    set_parent_death_signal(signal.SIGTERM)
    stop: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        if not stop:
            stop.append(signum)

    for sig in FORWARDED_SIGNALS:
        signal.signal(sig, on_signal)
    if os.getppid() != parent:  # the caller died before the parent-death signal was set
        return 128 + signal.SIGTERM
    try:
        child = subprocess.Popen(list(argv))
    except OSError as err:
        print(f"tvm-bsp: cannot run {argv[0]}: {err}", file=sys.stderr)
        return 127
    while not stop:
        try:
            child.wait(timeout=0.2)
            break
        except subprocess.TimeoutExpired:
            if os.getppid() != parent:  # no parent-death signal on this platform
                stop.append(signal.SIGTERM)
    for sig in FORWARDED_SIGNALS:  # the group is ended below; further signals change nothing
        signal.signal(sig, signal.SIG_IGN)
    _end_group(child, grace, stop[0] if stop else None)
    if stop:
        return 128 + stop[0]
    return child.returncode if child.returncode >= 0 else 128 - child.returncode


def _guard_env(env: Mapping[str, str] | None) -> dict[str, str]:
    full = dict(os.environ if env is None else env)
    root = str(Path(__file__).resolve().parents[2])  # the guard imports tvm_bsp from here
    full["PYTHONPATH"] = os.pathsep.join(filter(None, [root, full.get("PYTHONPATH")]))
    return full


def guarded(
    argv: Sequence[str], env: Mapping[str, str] | None = None, grace: float = 5.0
) -> tuple[list[str], dict[str, str]]:
    """``(argv, env)`` that run ``argv`` under a guard which ends it with this process.

    For a :class:`subprocess.Popen` the caller manages itself (started with
    ``start_new_session=True``, so that killing the guard's process group ends the command
    too): the guard ends the command and everything it started when this process dies, even
    by SIGKILL (the kernel's parent-death signal).
    """
    guard_argv = [sys.executable, "-m", __name__, str(os.getpid()), str(float(grace)), "--"]
    return [*guard_argv, *argv], _guard_env(env)


def supervised_call(
    argv: Sequence[str], *, grace: float = 5.0, env: Mapping[str, str] | None = None
) -> int:
    """Run ``argv`` until it exits or this process is asked to stop; never leave it behind.

    Parameters
    ----------
    argv : sequence of str
        The command.
    grace : float
        Seconds the command (and its descendants) get after a forwarded signal before they
        are sent SIGTERM, then SIGKILL.
    env : mapping, optional
        Environment of the command (default: this process's).

    Returns
    -------
    int
        The command's exit code (``128 + N`` if signal N killed it), or 0 when it was stopped
        by SIGTERM, SIGINT or SIGHUP sent to this process.
    """
    if not argv:
        raise ValueError("supervised_call needs a command, got an empty argv")
    guard_argv = [sys.executable, "-m", __name__, str(os.getpid()), str(float(grace)), "--"]
    guard = subprocess.Popen([*guard_argv, *argv], env=_guard_env(env), start_new_session=True)
    received: list[int] = []
    # the guard needs grace + two escalation waits; after that it is killed with its group
    limit = grace + 3 * _ESCALATION_WAIT + 2.0
    deadline = [float("inf")]

    def forward(signum: int, _frame: object) -> None:
        if not received:
            deadline[0] = time.monotonic() + limit
        received.append(signum)
        with contextlib.suppress(ProcessLookupError):
            os.kill(guard.pid, signum)

    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {sig: signal.signal(sig, forward) for sig in FORWARDED_SIGNALS}
    try:
        while True:
            try:
                code = guard.wait(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                pass
            if time.monotonic() > deadline[0]:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(guard.pid, signal.SIGKILL)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if guard.poll() is None:  # an exception here: do not leave the guard either
            with contextlib.suppress(ProcessLookupError):
                os.kill(guard.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                guard.wait(timeout=limit)
    if received:
        return 0
    return code if code >= 0 else 128 - code


def _main(argv: Sequence[str]) -> int:
    if len(argv) < 4 or argv[2] != "--":
        print("usage: python -m tvm_bsp.devices.supervise PARENT_PID GRACE -- COMMAND...",
              file=sys.stderr)  # fmt: skip
        return 2
    return _guard(int(argv[0]), float(argv[1]), argv[3:])


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
