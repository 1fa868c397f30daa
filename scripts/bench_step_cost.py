#!/usr/bin/env python
"""Where a streamed frame's microseconds go: wraps
:mod:`tvm_bsp.experiments.bench.step_cost`.

Usage::

    python scripts/bench_step_cost.py [--rates 10,103,301] [--json results/bench_step_cost.json]
"""

import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tvm_bsp.experiments.bench.step_cost import main

    sys.exit(main())
