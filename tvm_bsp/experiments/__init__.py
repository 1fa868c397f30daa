"""The project's experiments: each drives the library end to end and writes ``results/``.

- :mod:`.demo`: ``tvm-bsp demo``, the main job;
- :mod:`.table1`: Table I (PER of BSP against unstructured, ESE-style and magnitude pruning
  at RTMobile's rates; ``scripts/table1.py``), with its shipped models;
- :mod:`.block_search`: the block size chosen by accuracy x latency (``tvm-bsp block-search``);
- :mod:`.bench`: the benchmarks (``tvm-bsp bench``, ``scripts/bench_*.py``).

Everything below (kernels, compiler, tuner, runtime, speech) imports nothing from here.
"""
