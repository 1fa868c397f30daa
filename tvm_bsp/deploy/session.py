"""Run a compiled RNN module with the TVM runtime alone (no torch, no compiler).

A compiled module (:func:`tvm_bsp.compile_model`) is a Relax VM executable with three
functions: ``forward(x, state)``, ``step(x_t, state)`` and ``meta()`` (a JSON description as
``uint8`` bytes: cell, sizes, ``batch_first``, state layout). :class:`Session` wraps one:

- :meth:`Session.forward` / :meth:`Session.step` are stateless: the caller passes and gets the
  state (``None`` means zeros);
- :meth:`Session.push` is the streaming form: it keeps the state between frames (per batch
  size), :meth:`Session.reset` forgets it.

States are ``(layers, B, hidden)`` for GRUs and ``(layers, 2, B, hidden)`` for LSTMs
(``[:, 0]`` = ``h``, ``[:, 1]`` = ``c``). This module imports only numpy and the TVM runtime.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

#: ``format`` value of the ``meta()`` description.
META_FORMAT = "tvm_bsp.rnn"
#: Version of the ``meta()`` description this reader understands.
META_VERSION = 1


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
        hyper-threading), which leaves one core idle on a 2-vCPU machine; the pool is
        per calling thread and can only be sized before its first parallel call.

    Attributes
    ----------
    meta : dict
        The module's description (``cell``, ``layers``, ``input_size``, ``hidden_size``,
        ``output_size``, ``batch_first``, ...).
    """

    def __init__(self, module: Any, device: Any = None, threads: int | None = None) -> None:
        import tvm
        from tvm.runtime.vm import VirtualMachine

        self._tvm = tvm
        self.device = device if device is not None else tvm.cpu(0)
        self.vm = VirtualMachine(module, self.device)
        self.meta = read_meta(self.vm)
        self.state: np.ndarray | None = None
        if threads is None and "TVM_NUM_THREADS" not in os.environ:
            threads = min(int(self.meta.get("threads", 1)), os.cpu_count() or 1)
        if threads is not None:
            configure_threads(threads)

    # ------------------------------------------------------------------ shapes
    @property
    def batch_first(self) -> bool:
        """Sequences are ``(B, T, .)`` instead of ``(T, B, .)``."""
        return bool(self.meta["batch_first"])

    def state_shape(self, batch: int) -> tuple[int, ...]:
        """Shape of the state for ``batch`` sequences."""
        template = self.meta.get("state_shape")  # e.g. [4, "B", 37] (bidirectional: L * 2)
        if template is not None:
            return tuple(batch if d == "B" else int(d) for d in template)
        L, H = int(self.meta["layers"]), int(self.meta["hidden_size"])
        return (L, 2, batch, H) if self.meta["cell"] == "lstm" else (L, batch, H)

    def _state(self, state: np.ndarray | None, batch: int) -> np.ndarray:
        shape = self.state_shape(batch)
        if state is None:
            return np.zeros(shape, np.float32)
        state = np.ascontiguousarray(state, np.float32)
        if state.shape != shape:
            raise ValueError(f"state must have shape {shape}, got {state.shape}")
        return state

    def _input(self, x: np.ndarray, ndim: int) -> np.ndarray:
        x = np.ascontiguousarray(x, np.float32)
        features = int(self.meta["input_size"])
        if x.ndim != ndim or x.shape[-1] != features:
            raise ValueError(
                f"expected a {ndim}-D input with {features} features, got shape {x.shape}"
            )
        return x

    def _call(self, name: str, x: np.ndarray, state: np.ndarray):
        # A direct call returning the (y, state) tuple: about 2-3 us per frame cheaper than the
        # VM's stateful set_input / invoke_stateful / get_outputs (53 against 55 us per step of
        # a 2x128 GRU, 2000-call loops, best of 5, measured side by side). Tuples cannot cross
        # RPC, so RemoteSession uses the stateful form instead.
        tensor = self._tvm.runtime.tensor
        y, new_state = self.vm[name](tensor(x, self.device), tensor(state, self.device))
        return y.numpy(), new_state.numpy()

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
        """
        x = self._input(x, 3)
        batch = x.shape[0] if self.batch_first else x.shape[1]
        if x.shape[1 if self.batch_first else 0] < 1:
            raise ValueError("forward needs at least one frame")
        return self._call("forward", x, self._state(h0, batch))

    def step(self, x_t: np.ndarray, h: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Run one frame ``x_t`` ``(B, I)``; returns ``(y_t (B, O), new state)``."""
        x_t = self._input(x_t, 2)
        return self._call("step", x_t, self._state(h, x_t.shape[0]))

    # ------------------------------------------------------------------ streaming
    def push(self, x_t: np.ndarray) -> np.ndarray:
        """Streaming step: run one frame from the kept state and keep the new one.

        A frame with another batch size than the kept state starts from zeros.
        """
        x_t = self._input(x_t, 2)
        state = self.state
        if state is not None and state.shape != self.state_shape(x_t.shape[0]):
            state = None
        y, self.state = self.step(x_t, state)
        return y

    def reset(self) -> None:
        """Forget the kept state (the next :meth:`push` starts from zeros)."""
        self.state = None


def configure_threads(threads: int) -> int:
    """Size the calling thread's TVM CPU thread pool (threads share all cores).

    Returns
    -------
    int
        The number of threads the pool uses (it cannot grow once it has run work).
    """
    import tvm

    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    config = tvm.get_global_func("runtime.config_threadpool")
    config(-3, int(threads), [str(i) for i in range(int(threads))])  # -3: share all cores
    return int(tvm.get_global_func("runtime.NumThreads")())


def read_meta(vm: Any) -> dict[str, Any]:
    """Decode and check the ``meta()`` description of a compiled RNN module."""
    try:
        raw = vm["meta"]().numpy()
    except Exception as err:  # a module that is not ours
        raise ValueError(f"not a tvm_bsp RNN module (no meta function): {err}") from None
    meta = json.loads(bytes(np.asarray(raw, np.uint8)).decode("utf-8"))
    if meta.get("format") != META_FORMAT:
        raise ValueError(f"not a tvm_bsp RNN module (format {meta.get('format')!r})")
    if meta.get("version") != META_VERSION:
        raise ValueError(
            f"module format version {meta.get('version')}, this reader knows {META_VERSION}"
        )
    return meta
