"""Compile BSPC and dense kernels: PrimFunc + packed arrays, executables, callables, export.

``spmm_prim_func`` / ``dense_prim_func`` give what a Relax fusion or a tuner needs (the
PrimFunc of the target's mat-mat kernel, :mod:`tvm_bsp.kernels.matmat`, its packed constant
inputs, the argument order); ``build_spmm`` / ``build_dense`` compile them into a
:class:`Kernel` that runs on numpy arrays (host targets) and exports a shared library for
every target. The PrimFunc is the one ``compile_model`` ships: its frame count is symbolic;
a :class:`Kernel` calls it with ``batch`` frames.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import tvm

from tvm_bsp.bspc.matrix import BSPCMatrix
from tvm_bsp.kernels.epilogue import check_activation
from tvm_bsp.kernels.layout import check_bias
from tvm_bsp.kernels.matmat import MatmatTemplate, dense_template, spmm_template
from tvm_bsp.kernels.targets import is_arm, resolve_target

TargetLike = str | dict | tvm.target.Target

#: Entry function name of the BSPC kernels in compiled / exported modules.
SPMM_ENTRY = "bspc_spmm"
#: Entry function name of the dense kernels.
DENSE_ENTRY = "dense"


class KernelSpec(NamedTuple):
    """A kernel before compilation.

    Attributes
    ----------
    func : tvm.tirx.PrimFunc
        Destination-passing PrimFunc: ``func(x, *packed, y)``, ``x`` ``(n, N)`` and ``y``
        ``(n, M)`` for any number of frames ``n``.
    arrays : dict of str to numpy.ndarray
        The packed constant inputs by parameter name (everything but ``x`` and ``y``).
    arg_names : tuple of str
        Parameter names of ``func`` in order, ``"x"`` first and ``"y"`` last.
    """

    func: tvm.tirx.PrimFunc
    arrays: dict[str, np.ndarray]
    arg_names: tuple[str, ...]


def spmm_prim_func(
    bspc: BSPCMatrix,
    batch: int = 1,
    config: dict[str, Any] | None = None,
    epilogue: str | None = None,
    bias: np.ndarray | None = None,
    target: TargetLike = "host",
) -> KernelSpec:
    """PrimFunc of ``y = act(x W^T + bias)`` with ``W`` in BSPC, and its inputs.

    Parameters
    ----------
    bspc : BSPCMatrix
        The ``(M, N)`` weight.
    batch : int
        Frames per call the config is chosen for: ``x`` is ``(batch, N)``, ``y``
        ``(batch, M)``.
    config : dict, optional
        Knob values (see ``spmm_template(target).knobs(batch)``); missing knobs take the
        defaults ``compile_model`` uses for this matrix.
    epilogue : {None, "none", "relu", "sigmoid", "tanh"}
        Activation after the bias add.
    bias : numpy.ndarray, optional
        ``(M,)`` bias, packed into the ``bias`` input (zeros if omitted).
    target : str, dict or tvm.target.Target
        Selects the kernel (CPU for ``llvm``, GPU for ``opencl``).

    Returns
    -------
    KernelSpec
        ``(func, arrays, arg_names)``.
    """
    template = spmm_template(resolve_target(target))
    return _spec(template, bspc, bspc.shape, batch, config, epilogue, bias, SPMM_ENTRY)


def dense_prim_func(
    weight: np.ndarray,
    batch: int = 1,
    config: dict[str, Any] | None = None,
    epilogue: str | None = None,
    bias: np.ndarray | None = None,
    target: TargetLike = "host",
) -> KernelSpec:
    """PrimFunc of the dense ``y = act(x W^T + bias)`` and its packed inputs.

    Parameters are as in :func:`spmm_prim_func`, with a dense ``(M, N)`` ``weight``.
    """
    weight = np.asarray(weight, np.float32)
    if weight.ndim != 2:
        raise ValueError(f"weight must be 2-D, got shape {weight.shape}")
    template = dense_template(resolve_target(target))
    return _spec(template, weight, weight.shape, batch, config, epilogue, bias, DENSE_ENTRY)


def _spec(
    template: MatmatTemplate,
    weight: Any,
    shape: tuple[int, int],
    batch: int,
    config: dict[str, Any] | None,
    epilogue: str | None,
    bias: np.ndarray | None,
    entry: str,
) -> KernelSpec:
    _check_batch(batch)
    activation = check_activation(epilogue)
    bias = check_bias(bias, shape[0])
    full = template.config(batch, config, weight if template.sparse else None)
    func, arrays = template.instantiate(weight, full, activation, bias)
    func = func.with_attr("global_symbol", entry).with_attr("tvm_bsp.config", _config_attr(full))
    return KernelSpec(func, arrays, template.arg_names)


class CompiledKernel:
    """What every compiled stand-alone kernel shares: ``target``, ``executable``, a lazy JIT,
    export and the generated code.

    Subclasses set ``target`` and ``executable`` and ``_jit = None`` in ``__init__``.
    """

    target: tvm.target.Target
    executable: Any
    _jit: Any

    @property
    def runnable(self) -> bool:
        """True when this process can run the kernel (an ``llvm`` target for this CPU)."""
        if self.target.kind.name != "llvm":
            return False
        triple = str(self.target.attrs.get("mtriple", ""))
        return not triple or triple.split("-")[0] == os.uname().machine

    def export(self, path: str | os.PathLike[str]) -> Path:
        """Write a shared library loadable by the TVM runtime of the target's machine.

        aarch64 targets (and OpenCL with an aarch64 host) are linked with the GNU cross
        compiler (:func:`tvm_bsp.deploy.cross.export_arm64`); others are written to a
        temporary beside ``path`` and renamed, so ``path`` is never half written.
        """
        path = Path(path).absolute()
        host = self.target.host if self.target.kind.name != "llvm" else self.target
        if host is not None and is_arm(host) and os.uname().machine != "aarch64":
            from tvm_bsp.deploy.cross import export_arm64

            return export_arm64(self.executable, path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.so")
        try:
            self.executable.export_library(str(tmp))
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

    def inspect_source(self, fmt: str = "asm") -> str:
        """Generated code: ``"asm"`` / ``"ll"`` of the host module, ``"cl"`` for OpenCL."""
        mod = self.executable.mod
        if fmt == "cl":
            return "\n".join(m.inspect_source() for m in mod.imports if m.kind == "opencl")
        return mod.inspect_source(fmt)

    def _module(self) -> Any:
        if not self.runnable:
            raise RuntimeError(f"cannot run a kernel for {self.target} in this process")
        if self._jit is None:
            self._jit = self.executable.jit()
        return self._jit


class Kernel(CompiledKernel):
    """A compiled kernel with its packed inputs bound.

    Call it on numpy arrays (``llvm`` targets of this machine's architecture); export it as a
    shared library for any target.

    Attributes
    ----------
    spec : KernelSpec
    target : tvm.target.Target
    executable : tvm.runtime.Executable
        Result of :func:`tvm.compile`; the entry function is :attr:`entry`.
    shape : tuple of int
        ``(M, N)``.
    batch : int
    """

    def __init__(
        self,
        spec: KernelSpec,
        target: tvm.target.Target,
        executable: Any,
        shape: tuple[int, int],
        batch: int,
    ) -> None:
        self.spec = spec
        self.target = target
        self.executable = executable
        self.shape = shape
        self.batch = batch
        self.entry = str(spec.func.attrs["global_symbol"])
        self._device_args: list[Any] | None = None
        self._jit: Any = None


    @property
    def out_shape(self) -> tuple[int, int]:
        """Shape of the PrimFunc's output ``y``: ``(batch, M)``."""
        return (self.batch, self.shape[0])

    def inputs(self, x: np.ndarray) -> list[np.ndarray]:
        """The kernel's input arrays for frames ``x`` (``(N,)`` or ``(batch, N)``), in parameter
        order (without ``y``)."""
        return [self._as_frames(x), *(self.spec.arrays[n] for n in self.spec.arg_names[1:-1])]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Run on ``x`` of shape ``(N,)`` (``batch == 1``) or ``(batch, N)``.

        Returns
        -------
        numpy.ndarray
            ``(M,)`` or ``(batch, M)``, matching the shape of ``x``.
        """
        args = self._bound_args()
        dev = tvm.cpu()
        args[0] = tvm.runtime.tensor(self._as_frames(x), dev)
        self._func()(*args)
        y = args[-1].numpy()
        return y[0] if np.ndim(x) == 1 else y

    def time(self, x: np.ndarray | None = None, number: int = 100, repeat: int = 30) -> np.ndarray:
        """Seconds per call, one entry per repeat (``time_evaluator``, ``number`` calls each)."""
        args = self._bound_args()
        if x is not None:
            args[0] = tvm.runtime.tensor(self._as_frames(x), tvm.cpu())
        module = self._module()
        evaluator = module.time_evaluator(self.entry, tvm.cpu(), number=number, repeat=repeat)
        return np.asarray(evaluator(*args).results)

    # ------------------------------------------------------------------ helpers
    def _as_frames(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float32)
        N = self.shape[1]
        if x.ndim == 1:
            x = x[None, :]
        if x.shape != (self.batch, N):
            raise ValueError(f"x must have shape ({N},) or ({self.batch}, {N}), got {x.shape}")
        return np.ascontiguousarray(x)


    def _func(self) -> Any:
        return self._module()[self.entry]

    def _bound_args(self) -> list[Any]:
        if self._device_args is None:
            dev = tvm.cpu()
            names = self.spec.arg_names
            x0 = np.zeros((self.batch, self.shape[1]), np.float32)
            self._device_args = [
                tvm.runtime.tensor(x0, dev),
                *(tvm.runtime.tensor(self.spec.arrays[n], dev) for n in names[1:-1]),
                tvm.runtime.tensor(np.zeros(self.out_shape, np.float32), dev),
            ]
        return list(self._device_args)


def compile_spec(spec: KernelSpec, target: TargetLike) -> Any:
    """:func:`tvm.compile` a kernel spec's PrimFunc for ``target`` (a device module is required
    for OpenCL targets)."""
    target = resolve_target(target)
    name = str(spec.func.attrs["global_symbol"])
    executable = tvm.compile(tvm.IRModule({name: spec.func}), target=target)
    if target.kind.name == "opencl" and not any(m.kind == "opencl" for m in executable.mod.imports):
        raise RuntimeError("no OpenCL device module was generated (missing thread bindings?)")
    return executable


def build_spmm(
    bspc: BSPCMatrix,
    batch: int = 1,
    target: TargetLike = "host",
    config: dict[str, Any] | None = None,
    epilogue: str | None = None,
    bias: np.ndarray | None = None,
) -> Kernel:
    """Compile the BSPC kernel ``y = act(x W^T + bias)`` of :func:`spmm_prim_func`.

    Parameters
    ----------
    target : str, dict or tvm.target.Target
        ``"host"``, ``"arm64"``, ``"opencl-mali"``, ``"opencl-adreno"`` or a Target.
    bspc, batch, config, epilogue, bias
        As for :func:`spmm_prim_func` (missing knobs take their defaults).

    Returns
    -------
    Kernel
        ``kernel(x)`` on numpy arrays for host targets; ``kernel.export(path)`` for all.
    """
    tgt = resolve_target(target)
    spec = spmm_prim_func(bspc, batch, config, epilogue, bias, tgt)
    return Kernel(spec, tgt, compile_spec(spec, tgt), bspc.shape, batch)


def build_dense(
    M: int,
    N: int,
    batch: int = 1,
    target: TargetLike = "host",
    config: dict[str, Any] | None = None,
    epilogue: str | None = None,
    bias: np.ndarray | None = None,
    weight: np.ndarray | None = None,
) -> Kernel:
    """Compile the dense baseline ``y = act(x W^T + bias)``.

    Parameters are as in :func:`build_spmm`; ``weight`` is the ``(M, N)`` matrix (zeros if
    omitted, e.g. for timing only).
    """
    if weight is None:
        weight = np.zeros((M, N), np.float32)
    weight = np.asarray(weight, np.float32)
    if weight.shape != (M, N):
        raise ValueError(f"weight must have shape ({M}, {N}), got {weight.shape}")
    tgt = resolve_target(target)
    spec = dense_prim_func(weight, batch, config, epilogue, bias, tgt)
    return Kernel(spec, tgt, compile_spec(spec, tgt), (M, N), batch)


def _check_batch(batch: int) -> None:
    if isinstance(batch, bool) or not isinstance(batch, int | np.integer) or batch < 1:
        raise ValueError(f"batch must be a positive integer, got {batch!r}")


def _config_attr(config: dict[str, Any]) -> dict[str, Any]:
    return {k: (v if isinstance(v, int | str) else str(v)) for k, v in config.items()}
