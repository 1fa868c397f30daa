"""Local stand-ins for devices (and an RPC tracker client), used by ``tvm-bsp deploy``, the demo,
the tuner, its tests and CI.

Importing this package is cheap (TVM is imported only when used):

- :mod:`tvm_bsp.devices.aarch64`: the emulated aarch64 root made by
  ``scripts/setup_aarch64_emulator.sh`` (qemu-user); run scripts and cross-compiled
  libraries in it.
- :mod:`tvm_bsp.devices.rpc`: a loopback RPC tracker plus one server, on the host or in the
  emulated aarch64 root, so that a client drives it exactly as a phone.
- :mod:`tvm_bsp.devices.tracker`: one bounded question to an RPC tracker (does it answer,
  which keys are registered), for the tuner, ``tvm-bsp tune`` and :mod:`.rpc`.
"""
