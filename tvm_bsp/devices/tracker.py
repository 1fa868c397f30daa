"""Asking a TVM RPC tracker, quickly, whether it answers and which devices it has.

``tvm.rpc.TrackerSession`` retries a refused connection for 60 s and then raises, and waits
for an answer without a timeout; a tuner that asks it "is my device there?" against a tracker
that never ran waits a minute and then reports the device as gone. Here one connection attempt
is made, with a timeout, using the tracker's protocol (magic number, then a ``SUMMARY`` JSON
request), so that ``tvm-bsp tune`` can say at once that it never connected, and to which
address.
"""

from __future__ import annotations

import socket
import struct
from typing import Any

__all__ = [
    "TrackerError",
    "check_tracker",
    "device_registered",
    "query_tracker",
    "registered_keys",
    "tracker_problem",
    "tracker_summary",
]

_SERVER_PREFIX = "server:"


class TrackerError(ConnectionError):
    """The RPC tracker cannot be reached or asked, or it has no device under the key."""


def query_tracker(host: str, port: int, timeout: float = 10.0) -> dict[str, Any]:
    """The tracker's summary (``server_info``, ``queue_info``), with one bounded attempt.

    Parameters
    ----------
    host, port : str, int
        The tracker's address.
    timeout : float
        Seconds for the connection and for each reply.

    Returns
    -------
    dict
        What ``TrackerSession.summary()`` returns.

    Raises
    ------
    TrackerError
        Naming the address and the reason (refused, timed out, not a tracker).
    """
    from tvm.rpc import base

    addr = f"{host}:{port}"
    try:
        sock = socket.create_connection((host, int(port)), timeout=timeout)
    except TimeoutError:
        raise TrackerError(f"cannot connect to the RPC tracker at {addr} (timed out)") from None
    except OSError as err:
        reason = err.strerror or str(err)
        raise TrackerError(f"cannot connect to the RPC tracker at {addr} ({reason})") from None
    with sock:
        try:
            sock.sendall(struct.pack("<i", base.RPC_TRACKER_MAGIC))
            (magic,) = struct.unpack("<i", base.recvall(sock, 4))
            if magic != base.RPC_TRACKER_MAGIC:
                raise TrackerError(f"{addr} answers, but it is not a TVM RPC tracker")
            base.sendjson(sock, [base.TrackerCode.SUMMARY])
            reply = base.recvjson(sock)
        except TrackerError:
            raise
        except TimeoutError:
            raise TrackerError(
                f"the RPC tracker at {addr} did not answer in {timeout:g} s"
            ) from None
        except (OSError, RuntimeError, ValueError, struct.error) as err:
            raise TrackerError(f"the RPC tracker at {addr} did not answer ({err})") from None
    if not (isinstance(reply, list) and len(reply) == 2 and reply[0] == base.TrackerCode.SUCCESS):
        raise TrackerError(f"{addr} gave an unexpected reply to a summary request: {reply!r:.200}")
    return reply[1]


def tracker_summary(host: str, port: int) -> dict | None:
    """The tracker's summary, or ``None`` if it does not answer (see :func:`query_tracker`)."""
    try:
        return query_tracker(host, port)
    except TrackerError:
        return None


def registered_keys(summary: dict[str, Any]) -> list[str]:
    """Device keys of the servers in a tracker summary, sorted."""
    keys = set()
    for server in summary.get("server_info", []):
        key = str(server.get("key", ""))
        if key.startswith(_SERVER_PREFIX):
            keys.add(key[len(_SERVER_PREFIX) :])
    return sorted(keys)


def device_registered(host: str, port: int, key: str) -> bool:
    """Whether a server with device ``key`` is registered with the tracker at ``host:port``."""
    summary = tracker_summary(host, port)
    return summary is not None and key in registered_keys(summary)


def tracker_problem(host: str, port: int, key: str, timeout: float = 10.0) -> str | None:
    """Why device ``key`` cannot be used through the tracker, or ``None`` when it can.

    Parameters
    ----------
    host, port : str, int
        The tracker's address.
    key : str
        Device key.
    timeout : float
        Seconds for the connection and each reply.

    Returns
    -------
    str or None
        E.g. ``"cannot connect to the RPC tracker at 127.0.0.1:9190 (Connection refused)"`` or
        ``"no device is registered under key 'rk3399' with the RPC tracker at ...
        (registered keys: 'pixel')"``.
    """
    try:
        summary = query_tracker(host, port, timeout)
    except TrackerError as err:
        return str(err)
    keys = registered_keys(summary)
    if key in keys:
        return None
    known = f"registered keys: {', '.join(map(repr, keys))}" if keys else "no device is registered"
    where = f"the RPC tracker at {host}:{port}"
    return f"no device is registered under key {key!r} with {where} ({known})"


def check_tracker(host: str, port: int, key: str, timeout: float = 10.0) -> None:
    """Fail at once, with what to do, unless device ``key`` is registered with the tracker.

    Parameters
    ----------
    host, port : str, int
        The tracker's address.
    key : str
        Device key.
    timeout : float
        Seconds for the connection and each reply.

    Raises
    ------
    TrackerError
        Saying that nothing was measured, why, and how to start a tracker and a server.
    """
    problem = tracker_problem(host, port, key, timeout)
    if problem is None:
        return
    raise TrackerError(
        f"never connected to device {key!r}: {problem}. Start a tracker with `python -m "
        f"tvm.exec.rpc_tracker --host {host} --port {port}` and register the device with "
        f"`tvm-bsp rpc-server --tracker {host}:{port} --key {key}` (on the device)"
    )
