"""Compile torch GRU/LSTM models (dense or BSPC) into one deployable library.

:func:`compile_model` chains the importer (:mod:`tvm_bsp.frontend`), the passes
(:mod:`tvm_bsp.passes`) and ``tvm.compile``; :class:`CompiledModel` runs and exports the
result, which :func:`tvm_bsp.runtime.load.load` opens with the TVM runtime alone.
:mod:`.model_file` reads (and writes) the model files that ``tvm-bsp compile`` / ``deploy``
compile: speech models, plain RNN modules (:class:`~.model_file.RNNStack`) and ``.onnx``.
Per-layer tuned knobs come from :mod:`tvm_bsp.records`, which the tuner writes.
"""

from tvm_bsp.compiler.bspc_sources import infer_grid, resolve_bspc
from tvm_bsp.compiler.model import CompiledModel, compile_model, with_meta

__all__ = ["CompiledModel", "compile_model", "infer_grid", "resolve_bspc", "with_meta"]
