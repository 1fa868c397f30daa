"""Device side: run an exported model with numpy and the TVM runtime alone.

``tvm_bsp.runtime.load(path)`` opens an exported ``.so`` as a :class:`Session`. This package
is what a phone gets: ``tvm-bsp deploy`` copies it (with ``tvm_bsp/__init__.py``) next to the
library (:func:`tvm_bsp.deploy.shipped.runtime_files`). It imports numpy, the TVM runtime (on
first use) and the standard library, never torch and nothing else of ``tvm_bsp``
(``tests/test_package_layers.py`` checks it, function-level imports included). The host side
(export, named targets, cross compilers, RPC sessions) is :mod:`tvm_bsp.deploy`.

=====================  ===================================================================
module                 job
=====================  ===================================================================
:mod:`.load`           ``load(path)``: check the file, open it with the TVM runtime
:mod:`.session`        ``Session``: forward / step / push / reset over the Relax VM
:mod:`.files`          checked library files (ELF bounds, digests), atomic output
:mod:`.labels`         the sidecar JSON (label names, decoding) next to a ``.so``
:mod:`.decode`         numpy phone decoding (the speech code's, without torch)
:mod:`.runner`         ``python -m tvm_bsp.runtime.runner model.so --features f.npy``
=====================  ===================================================================
"""

from tvm_bsp.runtime.load import load
from tvm_bsp.runtime.session import Session

__all__ = ["Session", "load"]
