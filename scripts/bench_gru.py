#!/usr/bin/env python
"""Per-frame latency of RTMobile's reference GRU: wraps
:mod:`tvm_bsp.experiments.bench.gru`.

Same as ``tvm-bsp bench gru``. Usage::

    python scripts/bench_gru.py [--quick] [--json results/bench_gru.json]
"""

import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tvm_bsp.experiments.bench.gru import main

    sys.exit(main())
