#!/usr/bin/env python
"""BSPC kernels against dense and CSR/BSR peers: wraps
:mod:`tvm_bsp.experiments.bench.spmv`.

Same as ``tvm-bsp bench spmv``. Usage::

    python scripts/bench_spmv.py [--quick] [--tune] [--json results/bench_spmv.json]
"""

import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tvm_bsp.experiments.bench.spmv import main

    sys.exit(main())
