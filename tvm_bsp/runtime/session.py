"""Run a compiled RNN module with the TVM runtime alone (no torch, no compiler).

A compiled module (:func:`tvm_bsp.compile_model`) is a Relax VM executable with three
functions: ``forward(x, state)``, ``step(x_t, state)`` and ``meta()`` (a JSON description as
``uint8`` bytes: cell, sizes, ``batch_first``, state layout). :class:`Session` wraps one:

- :meth:`Session.forward` / :meth:`Session.step` are stateless: the caller passes and gets the
  state (``None`` means zeros);
- :meth:`Session.push` is the streaming form: it keeps the state between frames (per batch
  size), :meth:`Session.reset` forgets it.

States are ``(layers, B, hidden)`` for GRUs and ``(layers, 2, B, hidden)`` for LSTMs
(``[:, 0]`` = ``h``, ``[:, 1]`` = ``c``; ``layers`` counts both directions of a bidirectional
model). This module imports only numpy and the TVM runtime (:func:`import_tvm` keeps torch
out of the process).

Inputs (checked on every call, cheaply: a float32 C-contiguous array of the right shape is
used as it is)

- ``float32`` arrays; ``float64`` (and Python lists) are converted to float32, every other
  dtype (integers, ``float16``, bool, complex, objects) raises :class:`TypeError`;
- a wrong rank, feature size, ``T = 0``, ``B = 0`` or a state of another shape raises
  :class:`ValueError` naming the expected and the given shape;
- non-contiguous arrays (slices, transposes) are copied;
- NaN and +-inf are not refused: they propagate as in torch (a NaN feature makes the outputs
  and the state NaN from that frame on; :meth:`reset` starts a clean stream).

Threads: a session is thread-safe. Calls into the VM (and :meth:`push`'s read-modify-write of
the kept state) hold the session's lock, so threads sharing one session run one call at a
time and all of them feed the *same* stream through :meth:`push`; for parallel streams load one
session per thread (or per stream).
"""

from __future__ import annotations

import json
import os
import sys
import threading
from typing import Any

import numpy as np

#: ``format`` value of the ``meta()`` description.
META_FORMAT = "tvm_bsp.rnn"
#: Version of the ``meta()`` description this reader understands.
META_VERSION = 1
_F32 = np.dtype(np.float32)


def import_tvm() -> Any:
    """Import ``tvm`` without torch.

    ``tvm_ffi`` imports torch when it is installed (about 400 MB and seconds); the runtime
    never needs it. Unless torch is already loaded, it is hidden while ``tvm`` is first
    imported (an ``import torch`` afterwards works as usual).
    """
    if "tvm" in sys.modules or "torch" in sys.modules:
        import tvm

        return tvm
    sys.modules["torch"] = None  # type: ignore[assignment]  # makes `import torch` fail fast
    try:
        import tvm
    finally:
        if sys.modules.get("torch", 0) is None:
            del sys.modules["torch"]
    return tvm


class Session:
    """A loaded RNN module (see the module docstring).

    Parameters
    ----------
    module : tvm.runtime.Module
        The executable's module (``tvm.runtime.load_module(path)``, or ``Executable.mod``
        after ``jit``).
    device : tvm.runtime.Device, optional
        Defaults to ``tvm.cpu(0)``.
    threads : int, optional
        Size of TVM's CPU thread pool. By default the number the kernels were compiled for
        (``meta["threads"]``, capped at the machine's CPU count), unless ``TVM_NUM_THREADS``
        is set. TVM's own default on x86 is half the logical CPUs (it assumes
        hyper-threading), which leaves one core idle on a 2-vCPU machine. The pool is per
        calling thread and can only be sized before its first parallel call: every thread is
        sized on its first call through this session.

    Attributes
    ----------
    meta : dict
        The module's description (``cell``, ``layers``, ``input_size``, ``hidden_size``,
        ``output_size``, ``batch_first``, ...).
    """

    def __init__(self, module: Any, device: Any = None, threads: int | None = None) -> None:
        tvm = import_tvm()
        from tvm.runtime.vm import VirtualMachine

        self._tvm = tvm
        self.device = device if device is not None else tvm.cpu(0)
        try:
            self.vm = VirtualMachine(module, self.device)
        except (AttributeError, TypeError, RuntimeError) as err:  # not a Relax VM executable
            raise ValueError(f"not a tvm_bsp RNN module (no Relax VM executable): {err}") from None
        meta = read_meta(self.vm)
        self._module = module
        if threads is None and "TVM_NUM_THREADS" not in os.environ:
            threads = min(int(meta.get("threads", 1)), os.cpu_count() or 1)
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self._init_session(meta, threads)
        self._pool_size()

    def _init_session(self, meta: dict[str, Any], threads: int | None) -> None:
        """Fields shared with :class:`~tvm_bsp.deploy.remote.RemoteSession`."""
        self.meta = meta
        self.threads = threads
        self._lock = threading.RLock()
        self._pools = threading.local()
        self._kept: Any = None  # numpy, or the VM's device tensor (Session._stream)
        self._funcs: dict[str, Any] = {}
        self._staging: dict[tuple, Any] = {}
        self._cpu = getattr(self.device, "device_type", 1) == 1  # kDLCPU
        self._features = int(meta["input_size"])
        self._shapes: dict[int, tuple[int, ...]] = {}
        self._stream_error: str | None = None
        self._kernel_step: Any = False  # not looked up yet (None: the module has none)
        if meta.get("streamable", True) is False:
            reason = meta.get("streamable_reason") or "it has a backward (time-reversed) direction"
            self._stream_error = (
                f"this module cannot stream (step/push): {reason}, which needs the whole "
                "utterance; call forward on complete utterances instead"
            )

    def _pool_size(self) -> None:
        """Size the calling thread's TVM pool once (see ``threads``)."""
        if self.threads is not None and not getattr(self._pools, "ready", False):
            configure_threads(self.threads)
        self._pools.ready = True

    # ------------------------------------------------------------------ shapes
    @property
    def batch_first(self) -> bool:
        """Sequences are ``(B, T, .)`` instead of ``(T, B, .)``."""
        return bool(self.meta["batch_first"])

    @property
    def streamable(self) -> bool:
        """False for modules without ``step`` / ``push`` (a backward direction)."""
        return self._stream_error is None

    def state_shape(self, batch: int) -> tuple[int, ...]:
        """Shape of the state for ``batch`` sequences."""
        shape = self._shapes.get(batch)
        if shape is None:
            meta = self.meta
            directions = int(meta.get("num_directions", meta.get("directions", 1)))
            L, H = int(meta["layers"]) * directions, int(meta["hidden_size"])
            shape = (L, 2, batch, H) if meta["cell"] == "lstm" else (L, batch, H)
            self._shapes[batch] = shape
        return shape

    @property
    def state(self) -> np.ndarray | None:
        """The state :meth:`push` keeps (``None`` before the first frame / after ``reset``).

        Setting it (a state to continue a stream from) checks and copies it; reading it gives
        a copy.
        """
        with self._lock:
            kept = self._kept
            if kept is None:
                return None
            return kept.copy() if isinstance(kept, np.ndarray) else kept.numpy()

    @state.setter
    def state(self, value: np.ndarray | None) -> None:
        if value is None:
            self._kept = None
            return
        value = _as_float32(value, "state")
        batch = value.shape[-2] if value.ndim >= 2 else 1
        with self._lock:
            self._kept = self._state(value, batch).copy()

    def _state(self, state: np.ndarray | None, batch: int) -> np.ndarray:
        shape = self.state_shape(batch)
        if state is None:
            return np.zeros(shape, np.float32)
        if not _ready(state, shape):
            state = _as_float32(state, "state")
            if state.shape != shape:
                raise ValueError(
                    f"state: expected shape {shape} (batch {batch}), got {state.shape}"
                )
        return state

    def _input(self, x: Any, ndim: int, call: str) -> np.ndarray:
        if (
            type(x) is np.ndarray
            and x.dtype == _F32
            and x.ndim == ndim
            and x.flags.c_contiguous
            and x.shape[-1] == self._features
            and 0 not in x.shape
        ):
            return x
        x = _as_float32(x, "x" if ndim == 3 else "x_t")
        I = self._features
        sequence = "(B, T, {})" if self.batch_first else "(T, B, {})"
        expected = (sequence if ndim == 3 else "(B, {})").format(I)
        if x.ndim != ndim or x.shape[-1] != I:
            hint = "; one frame is x_t[None]" if ndim == 2 and x.ndim == 1 else ""
            raise ValueError(f"{call}: expected {expected} features, got shape {x.shape}{hint}")
        if ndim == 3:
            frames = x.shape[1] if self.batch_first else x.shape[0]
            if frames < 1:
                raise ValueError(f"{call}: needs at least one frame (T >= 1), got {x.shape}")
        batch = x.shape[0] if ndim == 2 or self.batch_first else x.shape[1]
        if batch < 1:
            raise ValueError(f"{call}: needs a batch of at least one sequence, got {x.shape}")
        return x

    def _device_call(self, name: str, x: np.ndarray, state: Any) -> tuple[Any, Any]:
        """``vm[name](x, state)`` on device tensors; returns the VM's tensors.

        A direct call returning the (y, state) tuple (2-3 us a frame cheaper than the VM's
        stateful interface; tuples cannot cross RPC, so RemoteSession uses that instead).
        The arguments reach the device without an allocation: ``x`` (and a numpy ``state``)
        zero-copy when 64-byte aligned, else copied into a staging tensor the session keeps
        per argument and shape; a device ``state`` (what :meth:`push` keeps) as it is.
        Callers hold ``self._lock``.
        """
        func = self._funcs.get(name)
        if func is None:
            func = self._funcs[name] = self.vm[name]
        if isinstance(state, np.ndarray):
            state = self._staged("state", state)
        return func(self._staged("x", x), state)

    def _staged(self, slot: str, a: np.ndarray) -> Any:
        """A device tensor with the contents of the float32 C-contiguous array ``a``."""
        tvm = self._tvm
        if self._cpu and a.ctypes.data % 64 == 0:
            return tvm.runtime.from_dlpack(a)  # read only during the call
        key = (slot, a.shape)
        staged = self._staging.get(key)
        if staged is None:
            buffer = tvm.runtime.empty(a.shape, "float32", self.device)
            view = np.from_dlpack(buffer) if self._cpu else None
            staged = self._staging[key] = (buffer, view)
        buffer, view = staged
        if view is not None:
            np.copyto(view, a)  # ~0.5 us; Tensor.copyfrom costs ~6 us a call
        else:
            buffer.copyfrom(a)
        return buffer

    def _host(self, t: Any) -> np.ndarray:
        """A VM result as numpy: a zero-copy view on the CPU (the array keeps the tensor's
        memory alive, and the VM returns fresh tensors every call), else a copy."""
        return np.from_dlpack(t) if self._cpu else t.numpy()

    def _call(self, name: str, x: np.ndarray, state: np.ndarray):
        y, new_state = self._device_call(name, x, state)
        return self._host(y), self._host(new_state)

    def _stream(self, x: np.ndarray, kept: Any, shape: tuple[int, ...]) -> tuple[np.ndarray, Any]:
        """One :meth:`push` frame from the kept state (``None``: zeros); returns ``(y, kept)``.

        The kept state stays the VM's device tensor from frame to frame: no copy in or out.
        """
        if not getattr(self._pools, "ready", False):
            self._pool_size()
        kernel = self.kernel_step()
        if kernel is not None:
            ring = kernel.ring(shape, (shape[-2], int(self.meta["output_size"])))
            if kept is not ring.current:  # a state set by the caller, or another batch size
                ring.reset(kept if kept is not None and tuple(kept.shape) == shape else None)
            ring.advance(self._staged("x", x))
            return ring.y_view.copy(), ring.current
        if kept is None or tuple(kept.shape) != shape:
            kept = np.zeros(shape, np.float32)
        y, new_state = self._device_call("step", x, kept)
        return self._host(y), new_state

    def kernel_step(self) -> Any:
        """The module's fused step kernel called without the VM
        (:class:`tvm_bsp.runtime.kernel_step.KernelStep`), or None: :meth:`push` uses it when
        there is one (CPU modules), the VM's ``step`` otherwise."""
        if self._kernel_step is False:
            from tvm_bsp.runtime.kernel_step import KernelStep

            self._kernel_step = KernelStep.of(self._module, self.vm, self.meta, self.device)
        return self._kernel_step

    def _run(self, name: str, x: np.ndarray, state: np.ndarray):
        with self._lock:
            if not getattr(self._pools, "ready", False):
                self._pool_size()
            return self._call(name, x, state)

    def _check_stream(self, call: str) -> None:
        if self._stream_error is not None:
            raise ValueError(f"{call}: {self._stream_error}")

    # ------------------------------------------------------------------ stateless
    def forward(self, x: np.ndarray, h0: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Run a whole utterance.

        Parameters
        ----------
        x : numpy.ndarray
            ``(T, B, I)``, or ``(B, T, I)`` for ``batch_first`` modules; any ``T >= 1``.
        h0 : numpy.ndarray, optional
            Initial state (zeros if omitted).

        Returns
        -------
        y : numpy.ndarray
            ``(T, B, O)`` (or ``(B, T, O)``).
        state : numpy.ndarray
            The state after the last frame.

        Raises
        ------
        TypeError
            An input of another dtype than float32 / float64.
        ValueError
            A wrong shape, ``T = 0`` or ``B = 0`` (the message names expected and given).
        """
        x = self._input(x, 3, "forward")
        batch = x.shape[0] if self.batch_first else x.shape[1]
        return self._run("forward", x, self._state(h0, batch))

    def step(self, x_t: np.ndarray, h: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Run one frame ``x_t`` ``(B, I)``; returns ``(y_t (B, O), new state)``.

        Raises as :meth:`forward` does, and :class:`ValueError` for a module that cannot
        stream (``meta["streamable"]`` False).
        """
        self._check_stream("step")
        x_t = self._input(x_t, 2, "step")
        return self._run("step", x_t, self._state(h, x_t.shape[0]))

    # ------------------------------------------------------------------ streaming
    def push(self, x_t: np.ndarray) -> np.ndarray:
        """Streaming step: run one frame ``(B, I)`` from the kept state and keep the new one.

        A frame with another batch size than the kept state starts from zeros. The kept
        state is the session's own buffer: it is not checked again frame by frame.
        """
        self._check_stream("push")
        x_t = self._input(x_t, 2, "push")
        shape = self.state_shape(x_t.shape[0])
        with self._lock:
            y, self._kept = self._stream(x_t, self._kept, shape)
        return y

    def reset(self) -> None:
        """Forget the kept state (the next :meth:`push` starts from zeros)."""
        with self._lock:
            self._kept = None


def _ready(a: Any, shape: tuple[int, ...]) -> bool:
    """``a`` is a float32 C-contiguous numpy array of ``shape`` (used as it is)."""
    return type(a) is np.ndarray and a.dtype == _F32 and a.flags.c_contiguous and a.shape == shape


def _as_float32(a: Any, name: str) -> np.ndarray:
    """``a`` as a C-contiguous float32 array: float32/float64 only (see the module docstring)."""
    try:
        arr = np.asarray(a)
    except (ValueError, TypeError) as err:  # ragged lists, ...
        raise TypeError(f"{name} must be a float32 array, got {type(a).__name__}: {err}") from None
    if arr.dtype not in (_F32, np.dtype(np.float64)):
        raise TypeError(
            f"{name} must be float32 (float64 is converted), got dtype {arr.dtype} "
            f"with shape {arr.shape}"
        )
    return np.ascontiguousarray(arr, np.float32)


def configure_threads(threads: int) -> int:
    """Size the calling thread's TVM CPU thread pool (threads share all cores).

    Returns
    -------
    int
        The number of threads the pool uses (it cannot grow once it has run work).
    """
    tvm = import_tvm()

    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    config = tvm.get_global_func("runtime.config_threadpool")
    config(-3, int(threads), [str(i) for i in range(int(threads))])  # -3: share all cores
    return int(tvm.get_global_func("runtime.NumThreads")())


def read_meta(vm: Any) -> dict[str, Any]:
    """Decode and check the ``meta()`` description of a compiled RNN module."""
    try:
        raw = vm["meta"]().numpy()
        meta = json.loads(bytes(np.asarray(raw, np.uint8)).decode("utf-8"))
    except Exception as err:  # a module that is not ours
        raise ValueError(f"not a tvm_bsp RNN module (no readable meta function): {err}") from None
    if not isinstance(meta, dict) or meta.get("format") != META_FORMAT:
        got = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise ValueError(f"not a tvm_bsp RNN module (format {got!r})")
    if meta.get("version") != META_VERSION:
        raise ValueError(
            f"module format version {meta.get('version')}, this reader knows {META_VERSION}"
        )
    return meta
