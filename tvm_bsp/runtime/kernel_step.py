"""The fused step kernel of a CPU module, called without the VM.

A module compiled for a CPU target streams through one kernel,
``fused_step(x_t, state, *constants, y_t, new_state, *scratch)`` (:mod:`tvm_bsp.passes.fuse_step`),
and its VM has a function ``step_constants()`` that returns the constants. The VM's ``step``
wraps that kernel in interpreted instructions: shape checks, an allocation per output, the
result tuple (about 3 µs a frame, more than a 301x model's multiply-adds). :class:`KernelStep`
calls the kernel itself on buffers it keeps: the state in two device tensors used in turn
(each frame reads one and writes the other), the output in a third, the intermediates
(``meta()["step_scratch"]``) in their own. Nothing is allocated
per frame; the arguments a frame passes are the ones the kernel checks in its own entry
(shapes, types, the batch).

This module imports only numpy and the TVM runtime.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: ``meta()["step_kernel"]`` of a module whose ``step`` is the fused kernel.
STEP_KERNEL = "fused_step"
#: The VM function that returns the fused kernel's constants.
STEP_CONSTANTS = "step_constants"


class KernelStep:
    """The fused step kernel and its constants (see the module docstring).

    Parameters
    ----------
    kernel : tvm.ffi.Function
        ``fused_step`` of the module's library.
    constants : sequence of tvm.runtime.Tensor
        Its constant arguments, in order (``step_constants()``).
    device : tvm.runtime.Device
    """

    def __init__(
        self, kernel: Any, constants: Any, device: Any, scratch: list[dict] | None = None
    ) -> None:
        self.kernel = kernel
        self.constants = tuple(constants)
        self.device = device
        self.scratch = list(scratch or [])
        self._rings: dict[tuple, StateRing] = {}

    @classmethod
    def of(cls, module: Any, vm: Any, meta: dict, device: Any) -> KernelStep | None:
        """The module's fused step kernel, or None (another target, an older module, a
        step that was not fused)."""
        if meta.get("step_kernel") != STEP_KERNEL or getattr(device, "device_type", 1) != 1:
            return None
        runtime_module = getattr(module, "mod", module)  # a compiler Executable wraps one
        kernel = None
        for lib in (*getattr(runtime_module, "imports", ()), runtime_module):
            try:
                kernel = lib.get_function(STEP_KERNEL, True)
            except Exception:  # the VM executable answers for its own functions only
                kernel = None
            if kernel is not None:
                break
        if kernel is None:
            return None
        scratch = meta.get("step_scratch")
        if not isinstance(scratch, list):
            return None
        return cls(kernel, tuple(vm[STEP_CONSTANTS]()), device, scratch)

    def scratch_tensors(self, batch: int) -> list:
        """The kernel's scratch parameters for ``batch`` sequences (``"B"`` is the batch)."""
        import tvm

        out = []
        for spec in self.scratch:
            shape = [batch if d == "B" else int(d) for d in spec["shape"]]
            out.append(tvm.runtime.empty(shape, spec["dtype"], self.device))
        return out

    def __call__(self, x_t: Any, state: Any, y_t: Any, new_state: Any, scratch: Any) -> None:
        """``y_t, new_state = step(x_t, state)`` into the given device tensors (``scratch``:
        :meth:`scratch_tensors` of the batch)."""
        self.kernel(x_t, state, *self.constants, y_t, new_state, *scratch)

    def ring(self, state_shape: tuple[int, ...], output_shape: tuple[int, ...]) -> StateRing:
        """The kept buffers of one batch size (created on first use)."""
        key = (state_shape, output_shape)
        ring = self._rings.get(key)
        if ring is None:
            ring = self._rings[key] = StateRing(self, state_shape, output_shape)
        return ring


class StateRing:
    """Two state tensors used in turn and an output tensor, for one batch size.

    :meth:`advance` runs one frame from :attr:`current` into the other state tensor, which
    then becomes :attr:`current`. The output tensor is overwritten every frame (callers copy
    what they keep).
    """

    def __init__(self, step: KernelStep, state_shape: tuple, output_shape: tuple) -> None:
        import tvm

        self.step = step
        self.states = [tvm.runtime.empty(state_shape, "float32", step.device) for _ in "ab"]
        self.y = tvm.runtime.empty(output_shape, "float32", step.device)
        self.scratch = step.scratch_tensors(int(output_shape[0]))
        self._views = [np.from_dlpack(s) for s in self.states]
        self.y_view = np.from_dlpack(self.y)
        self.index = 0
        self.reset()

    @property
    def current(self) -> Any:
        """The state after the last frame (a device tensor the ring reuses)."""
        return self.states[self.index]

    def reset(self, state: np.ndarray | None = None) -> None:
        """Start from ``state`` (copied; zeros if None)."""
        view = self._views[self.index]
        if state is None:
            view.fill(0.0)
        else:
            np.copyto(view, state)

    def advance(self, x_t: Any) -> Any:
        """One frame from :attr:`current`; returns the output tensor (overwritten by the
        next frame)."""
        nxt = 1 - self.index
        self.step(x_t, self.states[self.index], self.y, self.states[nxt], self.scratch)
        self.index = nxt
        return self.y


__all__ = ["STEP_CONSTANTS", "STEP_KERNEL", "KernelStep", "StateRing"]
