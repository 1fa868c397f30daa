"""Benchmarks behind ``tvm-bsp bench`` (and ``scripts/bench_*.py``, thin wrappers).

=====================  ===================================================================
module                 what it times
=====================  ===================================================================
:mod:`.gru`            per-frame latency of the reference GRU (2 x 1024, input 39), BSPC
                       builds at RTMobile's rates vs our dense build, torch and ONNX Runtime
                       (timers in :mod:`.gru_timers`, the report in :mod:`.gru_table`)
:mod:`.spmv`           BSPC sparse x dense kernels vs dense, torch CSR/BSR and scipy CSR
=====================  ===================================================================

Each module has ``add_arguments(parser)``, ``run_args(args)`` and ``main(argv)``; heavy
imports (torch, the compiler) happen inside the functions that use them.
"""

BENCHMARKS = ("gru", "spmv")
