"""``compile_model``: a torch RNN (or its description) to a compiled, exportable module."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import tvm
from tvm import relax

from tvm_bsp.bspc.matrix import BSPCMatrix
from tvm_bsp.compiler.bspc_sources import BSPCSource, Grid, resolve_bspc
from tvm_bsp.frontend.model import RNNModel
from tvm_bsp.frontend.relax_import import to_relax
from tvm_bsp.frontend.torch_import import from_torch, select_submodule
from tvm_bsp.kernels.rnn_knobs import default_knobs, is_aarch64
from tvm_bsp.passes.fuse_step import FUSED_NAME, SCRATCH_ATTR
from tvm_bsp.passes.pipeline import check_target, rnn_pipeline
from tvm_bsp.records.layers import resolve_tuned, suggested_knobs, with_suggestions
from tvm_bsp.runtime.session import META_FORMAT, META_VERSION, Session

TargetLike = str | dict | tvm.target.Target
_SESSION_LOCK = threading.Lock()


def _target(target: TargetLike) -> tvm.target.Target:
    from tvm_bsp.kernels.targets import resolve_target

    return resolve_target(target)


def _meta(
    model: RNNModel, target: tvm.target.Target, sparse: list[str], threads: int
) -> dict[str, Any]:
    return {
        "format": META_FORMAT,
        "version": META_VERSION,
        "cell": model.cell,
        "layers": model.num_layers,
        "input_size": model.input_size,
        "hidden_size": model.hidden_size,
        "output_size": model.output_size,
        "batch_first": model.batch_first,
        "state": "(layers, 2, B, H): [:, 0] = h, [:, 1] = c"
        if model.cell == "lstm"
        else "(layers, B, H)",
        "state_shape": ["B" if d == -1 else d for d in model.state_shape(-1)],
        "directions": model.num_directions,
        "proj_size": model.proj_size,
        "streamable": model.streamable,
        "streamable_reason": model.streamable_reason,
        "target": str(target),
        "sparse": sparse,
        "threads": threads,
    }


def with_meta(mod: tvm.IRModule, meta: Mapping[str, Any]) -> tvm.IRModule:
    """Add ``meta() -> uint8[n]``: the JSON description the runtime session reads."""
    data = np.frombuffer(json.dumps(dict(meta), sort_keys=True).encode(), np.uint8).copy()
    bb = relax.BlockBuilder(mod)
    with bb.function("meta", []):
        bb.emit_func_output(relax.const(data))
    return bb.get()


class CompiledModel:
    """A compiled RNN: ``forward``, ``step``, ``push``/``reset`` and ``export``.

    Attributes
    ----------
    model : RNNModel
        The imported description.
    target : tvm.target.Target
    executable : tvm.runtime.Executable
    ir : tvm.IRModule
        The lowered Relax module that was compiled.
    sparse : dict
        ``{parameter name: BSPCMatrix}`` of the weights compiled in BSPC.
    meta : dict
        What ``meta()`` returns in the compiled module.
    """

    def __init__(
        self,
        model: RNNModel,
        target: tvm.target.Target,
        executable: Any,
        ir: tvm.IRModule,
        sparse: dict[str, BSPCMatrix],
        meta: dict[str, Any],
    ) -> None:
        self.model = model
        self.target = target
        self.executable = executable
        self.ir = ir
        self.sparse = sparse
        self.meta = meta
        self._session: Session | None = None

    @property
    def runnable(self) -> bool:
        """True when this process can run the module (a CPU target of this machine's ISA)."""
        if self.target.kind.name != "llvm":
            return False
        return is_aarch64(self.target) == (os.uname().machine in ("aarch64", "arm64"))

    @property
    def session(self) -> Session:
        """The runtime session over this executable (host targets only)."""
        if not self.runnable:
            raise RuntimeError(
                f"compiled for {self.target}, which this machine cannot run: export() it and "
                "open it with tvm_bsp.runtime.load on the device (or under qemu)"
            )
        with _SESSION_LOCK:  # two threads asking first must get the same session
            if self._session is None:
                self._session = Session(self.executable)
        return self._session

    def forward(self, x: np.ndarray, h0: np.ndarray | None = None):
        """Whole utterance: see :meth:`tvm_bsp.runtime.session.Session.forward`."""
        return self.session.forward(x, h0)

    def step(self, x_t: np.ndarray, h: np.ndarray | None = None):
        """One frame: see :meth:`tvm_bsp.runtime.session.Session.step`."""
        return self.session.step(x_t, h)

    def push(self, x_t: np.ndarray) -> np.ndarray:
        """Streaming frame with the kept state: see :meth:`Session.push`."""
        return self.session.push(x_t)

    def reset(self) -> None:
        """Forget the streaming state."""
        self.session.reset()

    def export(self, path: str | os.PathLike[str]) -> Path:
        """Write the shared library (weights embedded) for :func:`tvm_bsp.runtime.load`.

        The linker is the one of the named deploy target the compile target maps to
        (:func:`tvm_bsp.deploy.targets.deploy_target_of`): the system compiler for the host,
        the GNU aarch64 cross compiler for ``arm64`` (and OpenCL with an aarch64 Linux host),
        the NDK compiler of ``TVM_NDK_CC`` for Android. The file appears atomically.
        """
        from tvm_bsp.deploy.targets import deploy_target_of, export_library

        cpu = self.target.host if self.target.kind.name == "opencl" else self.target
        name = deploy_target_of(self.target).name
        if cpu is None or not is_aarch64(cpu):
            name = "host"  # e.g. an OpenCL target given without an aarch64 host
        return export_library(self.executable, name, path)


def _check_label_count(labels: Any, outputs: int) -> None:
    """Refuse ``extra_meta["labels"]`` (a list or a sidecar record) naming another count."""
    names = labels.get("labels") if isinstance(labels, Mapping) else labels
    if names is not None and (not isinstance(names, list | tuple) or len(names) != outputs):
        count = len(names) if isinstance(names, list | tuple) else repr(names)
        raise ValueError(
            f"extra_meta['labels'] names {count} labels, the model has {outputs} outputs"
        )


def compile_model(
    module: Any,
    target: TargetLike = "host",
    bspc: BSPCSource = None,
    tuned: Mapping[str, Mapping[str, Any]] | str | os.PathLike[str] | Any = None,
    *,
    grid: Grid | Mapping[str, Grid] | None = None,
    knobs: Mapping[str, Any] | None = None,
    extra_meta: Mapping[str, Any] | None = None,
    submodule: str | None = None,
    fuse_step: bool = True,
) -> CompiledModel:
    """Compile a recurrent model.

    Parameters
    ----------
    module : torch.nn.Module, onnx.ModelProto, path to a ``.onnx`` file, or RNNModel
        See :func:`tvm_bsp.frontend.from_torch` and :func:`tvm_bsp.frontend.from_onnx` for
        the accepted module shapes and graphs.
    target : str, dict or tvm.target.Target
        ``"host"``, ``"arm64"`` (cross-compiled; run it with :func:`tvm_bsp.runtime.load` on
        the device), any ``llvm`` target, or ``"opencl-mali"`` / ``"opencl-adreno"`` / an
        ``opencl`` target (the OpenCL kernels of
        :mod:`tvm_bsp.kernels.opencl.sequence`, aarch64 host by
        default; not runnable here: ``export`` it for the device).
    bspc : None, "auto", directory or mapping
        Which weights are BSPC (see :mod:`tvm_bsp.compiler.bspc_sources`).
    tuned : mapping, TuningDatabase or directory, optional
        Knobs per layer: a mapping as :func:`tvm_bsp.passes.AttachSchedules` takes it, or a
        :class:`tvm_bsp.records.TuningDatabase` (or its directory) whose best record is applied
        to every layer whose workload (shape, sparsity structure, target) it holds; other
        layers keep the defaults. ``meta["tuned"]`` lists the configs applied per layer.
        Untuned layers get structure-dependent defaults
        (:func:`tvm_bsp.records.layers.suggested_knobs`: short BSPC row stripes get short
        panels), listed in ``meta["suggested"]``; tuned records and ``knobs`` win over them.
    grid : (int, int) or mapping, optional
        Block grid for BSPC weights given as masks (inferred if omitted).
    knobs : mapping, optional
        Knob overrides for every layer (e.g. ``{"threads": 1}``).
    extra_meta : mapping, optional
        JSON-able entries added to the module's ``meta()`` (e.g. ``labels``: the class names
        a runner prints); they may not replace the compiler's own entries.
    submodule : str, optional
        Compile only this part of ``module`` (a dotted path such as ``"decoder.rnn"``): an
        RNN, or a container whose forward is "RNN then head ops". The rest of the model stays
        in torch; docs/compile.md ("A recurrent part of a bigger model") shows how to splice
        it back.
    fuse_step : bool
        On CPU targets, make the streaming ``step`` one kernel that ``Session.push`` calls
        without the VM (:func:`tvm_bsp.passes.FuseStep`); False keeps a call per kernel.

    Returns
    -------
    CompiledModel
        ``forward(x, h0=None) -> (y, h)``, ``step(x_t, h=None) -> (y_t, h)`` on numpy
        arrays, and ``export(path)``.
    """
    from tvm_bsp.frontend.dispatch import is_onnx

    if is_onnx(module):  # an onnx.ModelProto or a .onnx path
        if submodule is not None:
            raise ValueError("submodule= selects a part of a torch model, not of an ONNX graph")
        from tvm_bsp.frontend.onnx_import import from_onnx

        module = from_onnx(module)
    if submodule is not None:
        module = select_submodule(module, submodule)
    desc = from_torch(module, prefix=f"{submodule}." if submodule else "")
    _check_label_count((extra_meta or {}).get("labels"), desc.output_size)
    tgt = _target(target)
    check_target(desc, tgt)
    sparse = resolve_bspc(desc, bspc, grid)
    per_layer = resolve_tuned(desc, sparse, tgt, tuned)
    effective, suggested = with_suggestions(per_layer, suggested_knobs(desc, sparse, tgt), knobs)
    mod = rnn_pipeline(tgt, sparse, effective, knobs, fuse_step)(to_relax(desc))
    threads = 1  # the OpenCL kernels use no CPU thread pool
    if tgt.kind.name != "opencl":
        base = default_knobs(tgt).updated(knobs).updated(per_layer.get("*"))
        threads = max(
            [base.threads] + [int(c.get("threads", base.threads)) for c in effective.values()]
        )
        if knobs and "threads" in knobs:  # explicit knobs win over tuned records
            threads = int(knobs["threads"])
    meta = _meta(desc, tgt, sorted(sparse), threads)
    meta["tuned"] = per_layer
    meta["suggested"] = suggested
    if FUSED_NAME in {gv.name_hint for gv in mod.get_global_vars()}:
        meta["step_kernel"] = FUSED_NAME  # push calls it without the VM (runtime.kernel_step)
        meta["step_scratch"] = json.loads(str(mod[FUSED_NAME].attrs[SCRATCH_ATTR]))
    clash = sorted(set(extra_meta or {}) & set(meta))
    if clash:
        raise ValueError(f"extra_meta may not replace the compiler's meta entries {clash}")
    meta.update(json.loads(json.dumps(dict(extra_meta or {}))))
    mod = with_meta(mod, meta)
    executable = tvm.compile(mod, target=tgt)
    return CompiledModel(desc, tgt, executable, mod, sparse, meta)
