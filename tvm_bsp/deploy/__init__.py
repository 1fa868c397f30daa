"""Host side of deployment: export, named targets, cross compilers, remote devices over RPC.

What runs on the device is :mod:`tvm_bsp.runtime` (``tvm_bsp.runtime.load``: numpy and the
TVM runtime only); this package prepares files for it and drives devices from the host.

=====================  ===================================================================
module                 job
=====================  ===================================================================
:mod:`.targets`        named deploy targets, their TVM targets and compilers, export
:mod:`.cross`          the GNU aarch64 cross compiler
:mod:`.remote`         ``remote_session``: upload a ``.so`` over TVM RPC and run it there
:mod:`.shipped`        the runtime files ``tvm-bsp deploy`` copies to a device
=====================  ===================================================================
"""
