"""BSP block-size search: PER and streaming latency of block grids x rates, Pareto front.

Usage::

    python scripts/block_search.py --json results/block_search.json \\
        --plot results/block_search.png [--quick] [--model DENSE.pt] [--corpus DIR] \\
        [--grids 6x4,12x8] [--rates 10,20] [--db TUNING_DB] [--work DIR]

The same as ``tvm-bsp tune --block-search --json PATH --plot PATH [--quick] DENSE.pt``;
see :mod:`tvm_bsp.experiments.block_search`.
"""

from __future__ import annotations

import sys

from tvm_bsp.cli.block_search import main

if __name__ == "__main__":
    sys.exit(main())
