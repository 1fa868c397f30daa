"""Deployment: named targets, export, and running compiled modules with the TVM runtime only.

``tvm_bsp.deploy.load(path)`` opens an exported ``.so`` as a :class:`Session`; importing this
package pulls in numpy and (on first use) the TVM runtime, never torch or the compiler.

=====================  ===================================================================
module                 job
=====================  ===================================================================
:mod:`.targets`        named deploy targets, their TVM targets and compilers, export
:mod:`.cross`          the GNU aarch64 cross compiler
:mod:`.load`           ``load(path)``: runtime-only loading
:mod:`.session`        ``Session``: forward / step / push / reset over the Relax VM
:mod:`.labels`         the sidecar JSON (label names, decoding) next to a ``.so``
:mod:`.decode`         numpy phone decoding (the speech code's, without torch)
:mod:`.runner`         ``python -m tvm_bsp.deploy.runner model.so --features f.npy``
=====================  ===================================================================
"""

from tvm_bsp.deploy.load import load
from tvm_bsp.deploy.session import Session

__all__ = ["Session", "load"]
