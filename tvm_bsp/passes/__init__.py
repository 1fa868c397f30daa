"""Relax module passes of the RNN compile path (one pass per file).

- :func:`SparsifyWeights`: named dense weights -> their BSPC form.
- :func:`AttachSchedules`: record the target and the kernel knobs (defaults or tuned).
- :func:`AttachOpenCLSchedules`: the same for an OpenCL target (same precedence rule:
  :func:`~tvm_bsp.passes.knob_table.knob_table`).
- :func:`LowerRNN`: recurrent/dense placeholders -> input projection + time-loop kernels.
- :func:`FuseStep`: the streaming ``step`` as one kernel (CPU targets).
- :func:`rnn_pipeline`: the passes as one ``tvm.transform.Sequential``.
"""

from tvm_bsp.passes.attach_opencl_schedules import AttachOpenCLSchedules
from tvm_bsp.passes.attach_schedules import AttachSchedules, knobs_of
from tvm_bsp.passes.fuse_step import FuseStep
from tvm_bsp.passes.ir_utils import BSPC_OP, bspc_call, bspc_from_call
from tvm_bsp.passes.lower_rnn import LowerRNN
from tvm_bsp.passes.pipeline import rnn_pipeline
from tvm_bsp.passes.sparsify import SparsifyWeights

__all__ = [
    "BSPC_OP",
    "AttachOpenCLSchedules",
    "AttachSchedules",
    "FuseStep",
    "LowerRNN",
    "SparsifyWeights",
    "bspc_call",
    "bspc_from_call",
    "knobs_of",
    "rnn_pipeline",
]
