"""Run an exported RNN module on a remote device over TVM RPC.

:func:`connect` opens an RPC session (a server's ``host:port``, or a tracker's and a device
``key``); :func:`remote_session` uploads an exported ``.so`` (:meth:`CompiledModel.export
<tvm_bsp.compiler.CompiledModel.export>`), loads it on the device, builds the Relax
VirtualMachine there and returns a :class:`RemoteSession`. It has the interface of
:class:`~tvm_bsp.runtime.session.Session` (``forward`` / ``step`` / ``push`` / ``reset``; the
arrays are copied to the device and back), plus :meth:`RemoteSession.time_step`, which times
``step`` on the device itself (no RPC round trip in the figure).

The default address is loopback: nothing here opens a port, and a tracker or server on
another machine must be named explicitly.

::

    from tvm_bsp.deploy.remote import remote_session
    with remote_session("model.so", tracker=("127.0.0.1", 9190), key="pixel") as s:
        y, h = s.forward(x)            # x: (T, B, I) numpy
        us = s.time_step(batch=1)      # median microseconds per streaming frame
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from tvm_bsp.runtime.session import Session, read_meta

__all__ = ["RemoteSession", "connect", "parse_address", "remote_session"]

_LOOPBACK = "127.0.0.1"


def parse_address(address: str | tuple[str, int], default_port: int = 9190) -> tuple[str, int]:
    """``"HOST:PORT"`` / ``"PORT"`` / ``(host, port)`` to ``(host, port)``.

    Raises
    ------
    ValueError
        If the port is not an integer in ``1..65535``.
    """
    if isinstance(address, tuple):
        host, port = address
    else:
        text = str(address).strip()
        host, sep, port_text = text.rpartition(":")
        if not sep:
            host, port_text = (_LOOPBACK, text) if text.isdigit() else (text, str(default_port))
        try:
            port = int(port_text)
        except ValueError:
            raise ValueError(f"bad RPC address {address!r}: expected HOST:PORT") from None
    if not 0 < int(port) < 65536:
        raise ValueError(f"bad RPC port {port} in {address!r}")
    return (host or _LOOPBACK), int(port)


def connect(
    server: str | tuple[str, int] | None = None,
    *,
    tracker: str | tuple[str, int] | None = None,
    key: str | None = None,
    session_timeout: float = 0,
    priority: int = 1,
) -> Any:
    """Open an RPC session to a server directly or through a tracker.

    Parameters
    ----------
    server : "HOST:PORT" or (host, port), optional
        An RPC server to connect to directly.
    tracker : "HOST:PORT" or (host, port), optional
        A tracker to request a device from (``key`` required).
    key : str, optional
        Device key registered with the tracker.
    session_timeout : float
        Seconds after which the server ends the session (0: never).
    priority : int
        Request priority at the tracker.

    Returns
    -------
    tvm.rpc.RPCSession

    Raises
    ------
    ValueError
        If neither or both of ``server`` and ``tracker`` are given, or ``tracker`` lacks
        ``key``.
    ConnectionError
        If the server or tracker cannot be reached (the message names it).
    """
    from tvm import rpc

    if (server is None) == (tracker is None):
        raise ValueError("give exactly one of server=HOST:PORT or tracker=HOST:PORT (with key)")
    try:
        if tracker is not None:
            if not key:
                raise ValueError("a tracker needs the device key (key=...)")
            host, port = parse_address(tracker)
            client = rpc.connect_tracker(host, port)
            return client.request(key, priority=priority, session_timeout=session_timeout)
        host, port = parse_address(server)  # type: ignore[arg-type]
        return rpc.connect(host, port, session_timeout=session_timeout)
    except (RuntimeError, OSError) as err:
        where = f"tracker {tracker} (key {key!r})" if tracker is not None else f"server {server}"
        raise ConnectionError(f"cannot reach RPC {where}: {err}") from None


class RemoteSession(Session):
    """A :class:`Session` whose module runs on an RPC device (see the module docstring).

    Parameters
    ----------
    remote : tvm.rpc.RPCSession
        The open session (kept alive by this object).
    module : tvm.runtime.Module
        The module loaded on the device (``remote.load_module``).
    threads : int, optional
        Size of the device's TVM CPU thread pool: by default the module's
        ``meta["threads"]`` (the count its kernels were compiled for); 0 keeps the device's
        own default.
    """

    def __init__(self, remote: Any, module: Any, threads: int | None = None) -> None:
        # Session.__init__ would size the *local* thread pool: set the fields here instead
        import tvm
        from tvm.runtime.vm import VirtualMachine

        self._tvm = tvm
        self.remote = remote
        self.device = remote.cpu(0)
        self.vm = VirtualMachine(module, self.device)
        meta = read_meta(self.vm)
        if threads is None and meta.get("threads") is not None:
            threads = int(meta["threads"])
        if threads is not None and threads < 0:
            raise ValueError(f"threads must be >= 0, got {threads}")
        if threads:
            # before the first parallel call; -3: share all cores (CPU ids cannot cross RPC)
            remote.get_function("runtime.config_threadpool")(-3, int(threads))
        self._init_session(meta, threads)

    def _pool_size(self) -> None:
        """The device's pool was sized in ``__init__``; the local one is not used."""
        self._pools.ready = True

    def _call(self, name: str, x: np.ndarray, state: np.ndarray):
        # a tuple result cannot cross RPC as an object: use the VM's stateful interface
        tensor = self._tvm.runtime.tensor
        self.vm.set_input(name, tensor(x, self.device), tensor(state, self.device))
        self.vm.invoke_stateful(name)
        y, new_state = self.vm.get_outputs(name)
        return y.numpy(), new_state.numpy()

    def _stream(self, x: np.ndarray, kept: Any, shape: tuple[int, ...]) -> tuple[np.ndarray, Any]:
        """:meth:`push`'s frame over RPC: the kept state travels as numpy both ways."""
        if kept is None or kept.shape != shape:
            kept = np.zeros(shape, np.float32)
        return self._run("step", x, kept)

    def time_step(
        self, batch: int = 1, *, number: int = 20, repeat: int = 5, min_repeat_ms: int = 50
    ) -> float:
        """Median device time of one ``step`` (one streaming frame), in microseconds.

        Timed on the device by ``time_evaluator`` (RPC latency excluded): ``repeat`` runs of
        at least ``number`` calls (or ``min_repeat_ms``) each, after a warm-up call.
        """
        if batch < 1 or number < 1 or repeat < 1:
            raise ValueError("batch, number and repeat must be >= 1")
        tensor = self._tvm.runtime.tensor
        rng = np.random.default_rng(0)
        x = rng.standard_normal((batch, int(self.meta["input_size"]))).astype(np.float32)
        h = np.zeros(self.state_shape(batch), np.float32)
        with self._lock:
            evaluator = self.vm.time_evaluator(
                "step", self.device, number=number, repeat=repeat, min_repeat_ms=min_repeat_ms
            )
            result = evaluator(tensor(x, self.device), tensor(h, self.device))
        return float(np.median(result.results)) * 1e6

    def close(self) -> None:
        """Drop the device objects and end the RPC session (frees a tracker's device)."""
        import gc

        self.vm = None  # type: ignore[assignment]
        self.remote = None
        self.device = None  # a remote Device holds its RPC session
        self.reset()
        gc.collect()  # the VM's bound functions form cycles that keep the session open

    def __enter__(self) -> RemoteSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def remote_session(
    library: str | os.PathLike[str],
    server: str | tuple[str, int] | None = None,
    *,
    tracker: str | tuple[str, int] | None = None,
    key: str | None = None,
    threads: int | None = None,
    session_timeout: float = 0,
) -> RemoteSession:
    """Upload an exported ``.so`` to an RPC device and open it there.

    Parameters
    ----------
    library : path-like
        A library written by :meth:`CompiledModel.export` for the device's ISA.
    server, tracker, key, session_timeout
        Where the device is (:func:`connect`).
    threads : int, optional
        Device thread pool size (:class:`RemoteSession`).

    Returns
    -------
    RemoteSession

    Raises
    ------
    FileNotFoundError
        If ``library`` does not exist.
    ValueError
        If it is not a ``.so`` file, or the loaded module is not a tvm_bsp RNN module.
    ConnectionError
        If the device cannot be reached.
    RuntimeError
        If the device cannot load the library (e.g. built for another ISA).
    """
    path = Path(library)
    if not path.is_file():
        raise FileNotFoundError(f"compiled library {path} not found")
    if path.suffix != ".so":
        raise ValueError(f"{path} is not a shared library (.so); export the model first")
    from tvm_bsp.runtime.load import check_file

    check_file(path, here=False)  # size, digests, ELF sanity (the device's ISA is its own)
    remote = connect(server, tracker=tracker, key=key, session_timeout=session_timeout)
    # a unique name: several clients may share one server's upload directory
    name = f"tvm_bsp_{uuid.uuid4().hex[:12]}_{path.name}"
    remote.upload(str(path), name)
    try:
        module = remote.load_module(name)
    except Exception as err:  # TVMError from the device: wrong ISA, missing symbols, ...
        raise RuntimeError(f"the RPC device could not load {path}: {err}") from None
    return RemoteSession(remote, module, threads)
