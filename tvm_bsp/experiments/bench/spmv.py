"""Benchmark BSPC sparse-dense kernels against dense and CSR/BSR peers on this host.

For the reference GRU's matrices (3072x1024 recurrent/hidden, 3072x39 input), batch 1 and 32,
at RTMobile's compression rates, with BSP masks from ``bsp_mask_at_rate`` (column rate from
``PAPER_SPLITS``), it times side by side in one run:

``bspc``         our BSPC kernel, the one ``compile_model`` ships
                 (:func:`tvm_bsp.kernels.build_spmm`:
                 its default knobs, or the best of a small knob set with ``--tune``)
``tvm_dense``    our dense TVM kernel (:func:`tvm_bsp.kernels.build_dense`, same panels, all
                 columns)
``torch_dense``  ``torch.mv`` / ``torch.nn.functional.linear``
``torch_csr``    ``torch`` CSR ``@`` dense
``torch_bsr``    ``torch`` BSR (square blocks, best of 2/4/8) ``@`` dense
``scipy_csr``    ``scipy.sparse.csr_matrix @ x``

All take ``x`` as ``(batch, N)`` and return a contiguous ``(batch, M)`` (the sparse libraries
compute ``W @ x^T``, so for batch > 1 their transposes are timed too).

plus a memory-copy bandwidth measurement for a roofline (achieved GB/s and GFLOP/s per kernel).
TVM kernels are timed with ``time_evaluator``; the others with a timing loop (``number`` calls
per sample, median over samples). torch uses the same thread count as TVM.

Usage::

    tvm-bsp bench spmv [--quick] [--tune] [--json results/bench_spmv.json]
    python scripts/bench_spmv.py [--quick] [--tune] [--json results/bench_spmv.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

RATES = (1, 10, 19, 29, 43, 80, 103, 153, 245, 301)
QUICK_RATES = (10, 103, 301)
#: RTMobile Table II, CPU speedup over dense at each compression rate.
PAPER_CPU_SPEEDUP = {
    1: 1.0, 10: 5.9, 19: 10.1, 29: 15.3, 43: 20.7, 80: 32.7,
    103: 35.2, 153: 41.8, 245: 47.1, 301: 48.9,
}  # fmt: skip
#: (M, N) -> default block grid (row stripes of 32 rows; 16 column stripes of 64, or 4 of ~10)
MATRICES = {(3072, 1024): (96, 16), (3072, 39): (96, 4)}
#: Thread settings of the knob sets: one thread, or parallel whatever the work (``threads`` is
#: capped at the benchmark's thread count; duplicates are skipped).
_THREADS = ({"threads": 1}, {"threads": 2, "min_parallel_macs": 0})
#: BSPC knob sets tried per case with --tune (the default config is always measured too).
TUNE_SPMM = {
    1: [{"lanes": p, "k_split": k, **t} for p in (8, 16, 32) for k in (2, 4) for t in _THREADS],
    32: [{"lanes": p, "frames": f, **t} for p in (8, 16, 32) for f in (4, 8) for t in _THREADS],
}
#: Dense knob sets tried with --tune.
TUNE_DENSE = {
    1: [{"lanes": p, "k_split": k, **t} for p in (16, 32) for k in (1, 2) for t in _THREADS],
    32: [{"lanes": p, "frames": f, **t} for p in (16, 32) for f in (4, 8, 16) for t in _THREADS],
}


@dataclass
class Timing:
    """Median and spread of one measurement, in microseconds."""

    median_us: float
    min_us: float
    samples: int


def time_callable(fn: Callable[[], object], target_s: float) -> Timing:
    """Median of per-call times: calls grouped so one sample takes about 1 ms."""
    fn()
    t0 = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t0, 1e-7)
    number = max(1, int(1e-3 / once))
    samples = max(5, min(200, int(target_s / (once * number))))
    times = []
    for _ in range(samples):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - t0) / number)
    return Timing(float(np.median(times) * 1e6), float(np.min(times) * 1e6), samples)


def time_kernel(kernel, target_s: float) -> Timing:
    """Median over ``time_evaluator`` repeats of a compiled :class:`tvm_bsp.kernels.Kernel`."""
    once = float(np.median(kernel.time(number=3, repeat=3)))
    number = max(1, int(1e-3 / max(once, 1e-7)))
    repeat = max(5, min(200, int(target_s / (once * number))))
    times = kernel.time(number=number, repeat=repeat)
    return Timing(float(np.median(times) * 1e6), float(np.min(times) * 1e6), repeat)


def copy_bandwidth(target_s: float) -> list[dict]:
    """GB/s (read + write) of numpy copies: one DRAM-sized and one L3-sized array."""
    out = []
    for label, mb in (("dram", 256), ("llc", 8)):
        src = np.ones(mb * 2**18, np.float32)
        dst = np.empty_like(src)
        t = time_callable(lambda s=src, d=dst: np.copyto(d, s), target_s)
        gbps = 2 * src.nbytes / t.median_us / 1e3
        out.append({"impl": "copy", "level": label, "bytes": 2 * src.nbytes,
                    "median_us": t.median_us, "gbps": gbps})  # fmt: skip
    return out


def machine_record(threads: int) -> dict:
    """CPU model, cores, thread count, load and library versions."""
    import scipy
    import torch
    import tvm

    model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from tvm.target import codegen

    return {
        "impl": "machine",
        "cpu": model,
        "llvm_mcpu": codegen.llvm_get_system_cpu(),
        "cores": os.cpu_count(),
        "threads": threads,
        "loadavg_start": list(os.getloadavg()),
        "python": platform.python_version(),
        "tvm": tvm.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
    }


def _bytes_moved(values: int, index_bytes: int, M: int, N: int, batch: int) -> int:
    return 4 * values + index_bytes + 4 * batch * (M + N)


def bench_case(
    M: int, N: int, batch: int, rate: int, grid: tuple[int, int], args, dense_kernels: dict
) -> list[dict]:
    """All implementations for one (matrix, batch, rate)."""
    import scipy.sparse as sp
    import torch

    from tvm_bsp.bspc import BSPCMatrix
    from tvm_bsp.kernels import build_spmm
    from tvm_bsp.prune import PAPER_SPLITS, achieved_rate, bsp_mask_at_rate

    rng = np.random.default_rng(M * 7 + N)
    weight = rng.standard_normal((M, N)).astype(np.float32)
    mask = bsp_mask_at_rate(weight, grid[0], grid[1], rate, PAPER_SPLITS[rate][0])
    sparse = np.where(mask, weight, 0).astype(np.float32)
    bspc = BSPCMatrix.from_dense(weight, mask, *grid)
    x = rng.standard_normal((batch, N)).astype(np.float32)
    ref = x @ sparse.T
    nnz = int(mask.sum())
    base = {"matrix": f"{M}x{N}", "batch": batch, "rate": rate, "grid": f"{grid[0]}x{grid[1]}",
            "achieved_rate": achieved_rate(mask), "nnz": nnz}  # fmt: skip
    flops = 2.0 * nnz * batch
    records = []

    def add(impl: str, t: Timing, nbytes: int, **extra) -> None:
        rec = {**base, "impl": impl, "median_us": t.median_us, "min_us": t.min_us,
               "samples": t.samples, "gbps": nbytes / t.median_us / 1e3,
               "gflops": flops / t.median_us / 1e3, **extra}  # fmt: skip
        records.append(rec)

    # ---- BSPC (TVM): the suggested config, and with --tune the best of a small knob set
    def measure(config: dict | None, seconds: float):
        kernel = build_spmm(bspc, batch, config=config)
        if not np.allclose(kernel(x), ref, rtol=1e-4, atol=1e-3):
            raise AssertionError(f"bspc wrong for {base} config {config}")
        return time_kernel(kernel, seconds), kernel

    def search(first: dict | None, space: list[dict]):
        default = measure(_cap_threads(first, args.threads), args.seconds)
        best = default
        for config in _within(space, args.threads) if args.tune else []:
            cand = measure(config, args.seconds / 5)
            if cand[0].median_us < best[0].median_us:
                best = cand
        if best is not default:  # re-measure the winner with the full budget
            best = (time_kernel(best[1], args.seconds), best[1])
        return best, default

    best, default = search(None, TUNE_SPMM.get(batch, []))
    for impl, (t, kernel) in [("bspc", best), ("bspc_default", default)]:
        if impl.endswith("_default") and not args.tune:
            continue
        a = kernel.spec.arrays
        cfg = {k: (v if isinstance(v, str) else int(v))
               for k, v in kernel.spec.func.attrs["tvm_bsp.config"].items()}  # fmt: skip
        idx_bytes = sum(v.nbytes for k, v in a.items() if k not in ("vals", "bias"))
        padded = int(a["panel_ptr"][-1]) * cfg["lanes"]
        tuned = bool(args.tune and not impl.endswith("_default"))
        add(impl, t, _bytes_moved(padded, idx_bytes, M, N, batch), config=cfg,
            padded_values=padded, tuned=tuned)  # fmt: skip

    # ---- dense TVM (one compile per matrix and batch, the weights do not matter for speed)
    dense = dense_kernels.get((M, N, batch))
    if dense is None:
        raise KeyError("dense kernel missing")
    kernel_d, t_d = dense
    cfg_d = {k: (v if isinstance(v, str) else int(v))
             for k, v in kernel_d.spec.func.attrs["tvm_bsp.config"].items()}  # fmt: skip
    add("tvm_dense", t_d, _bytes_moved(M * N, 0, M, N, batch), config=cfg_d,
        gflops_dense=2.0 * M * N * batch / t_d.median_us / 1e3)  # fmt: skip

    # ---- torch
    wt = torch.from_numpy(sparse)
    xt = torch.from_numpy(x)
    with torch.no_grad():
        if batch == 1:
            x1 = xt[0].contiguous()
            t = time_callable(lambda: torch.mv(wt, x1), args.seconds)
        else:
            t = time_callable(lambda: torch.nn.functional.linear(xt, wt), args.seconds)
        add("torch_dense", t, _bytes_moved(M * N, 0, M, N, batch))
        csr = wt.to_sparse_csr()
        # same contract as ours: x (batch, N) in, y (batch, M) contiguous out; the sparse
        # libraries compute W @ x^T, so the transposes are part of their cost
        if batch == 1:
            t = time_callable(lambda: torch.mv(csr, x1), args.seconds)
        else:
            t = time_callable(lambda: (csr @ xt.T).T.contiguous(), args.seconds)
        add("torch_csr", t, _bytes_moved(nnz, 8 * nnz + 8 * (M + 1), M, N, batch))
        bsr_best = None
        for bs in (4,) if args.quick else (2, 4, 8):
            if M % bs or N % bs:
                continue
            bsr = wt.to_sparse_bsr((bs, bs))
            run = _bsr_runner(bsr, x1 if batch == 1 else None, xt)
            got = run().numpy()
            if not np.allclose(got.reshape(ref.shape), ref, rtol=1e-4, atol=1e-3):
                raise AssertionError("torch bsr wrong")
            t = time_callable(run, args.seconds)
            if bsr_best is None or t.median_us < bsr_best[0].median_us:
                bsr_best = (t, bs, bsr.values().numel())
        if bsr_best is not None:
            t, bs, stored = bsr_best
            add("torch_bsr", t, _bytes_moved(stored, 8 * stored // (bs * bs), M, N, batch),
                block=bs, stored_values=stored)  # fmt: skip

    # ---- scipy
    sc = sp.csr_matrix(sparse)
    if batch == 1:
        t = time_callable(lambda: sc @ x[0], args.seconds)
    else:
        t = time_callable(lambda: np.ascontiguousarray((sc @ x.T).T), args.seconds)
    add("scipy_csr", t, _bytes_moved(nnz, 4 * nnz + 4 * (M + 1), M, N, batch))
    return records


def _cap_threads(config: dict | None, threads: int) -> dict:
    """``config`` with the thread knob at most ``threads`` (the benchmark's thread count)."""
    config = dict(config or {})
    config["threads"] = min(config.get("threads", threads), threads)
    return config


def _within(space: list[dict], threads: int) -> list[dict]:
    """The configs of ``space`` that use at most ``threads`` threads."""
    return [c for c in space if c.get("threads", 1) <= threads]


def _bsr_runner(bsr, x1, xt) -> Callable[[], object]:
    """``bsr @ x`` for one frame, ``(bsr @ x^T)^T`` (contiguous) for a batch."""
    if x1 is not None:
        return lambda: bsr @ x1
    return lambda: (bsr @ xt.T).T.contiguous()


def build_dense_kernels(matrices, batches, args) -> dict:
    """Compile and time our dense kernel once per (matrix, batch); with --tune, the best of
    :data:`TUNE_DENSE`."""
    from tvm_bsp.kernels import build_dense

    out = {}
    for M, N in matrices:
        weight = np.random.default_rng(0).standard_normal((M, N)).astype(np.float32)
        for batch in batches:
            x = np.random.default_rng(1).standard_normal((batch, N)).astype(np.float32)
            best = None
            space = _within(TUNE_DENSE.get(batch, []), args.threads) if args.tune else []
            for config in [_cap_threads(None, args.threads), *space]:
                kernel = build_dense(M, N, batch, config=config, weight=weight)
                if not np.allclose(kernel(x), x @ weight.T, rtol=1e-4, atol=1e-3):
                    raise AssertionError(f"dense kernel wrong for {M}x{N} batch {batch}")
                t = time_kernel(kernel, args.seconds / (3 if config else 1))
                if best is None or t.median_us < best[1].median_us:
                    best = (kernel, t)
            kernel = best[0]
            out[(M, N, batch)] = (kernel, time_kernel(kernel, args.seconds))
    return out


def ratios(records: list[dict]) -> None:
    """Add speedups of BSPC over every peer (``speedup_vs_<impl>``) to the bspc records."""
    by_case: dict[tuple, dict[str, dict]] = {}
    for r in records:
        if "rate" in r:
            by_case.setdefault((r["matrix"], r["batch"], r["rate"]), {})[r["impl"]] = r
    for (_, _, rate), impls in by_case.items():
        b = impls.get("bspc")
        if b is None:
            continue
        for name, r in impls.items():
            if not name.startswith("bspc"):
                b[f"speedup_vs_{name}"] = r["median_us"] / b["median_us"]
        b["paper_cpu_speedup"] = PAPER_CPU_SPEEDUP.get(rate)
        dense, torch_dense = impls.get("tvm_dense"), impls.get("torch_dense")
        if dense and torch_dense:
            dense["speedup_vs_torch_dense"] = torch_dense["median_us"] / dense["median_us"]


def print_table(records: list[dict]) -> None:
    """One line per (matrix, batch, rate): medians and BSPC's speedups."""
    cols = ["bspc", "tvm_dense", "torch_dense", "torch_csr", "torch_bsr", "scipy_csr"]
    head = f"{'matrix':>10} {'B':>3} {'rate':>4} " + " ".join(f"{c:>11}" for c in cols)
    head += f" {'xDense':>7} {'paper':>6} {'xTcsr':>6} {'xScsr':>6} {'dense/torch':>11}"
    print(head)
    by_case: dict[tuple, dict[str, dict]] = {}
    for r in records:
        if "rate" in r:
            by_case.setdefault((r["matrix"], r["batch"], r["rate"]), {})[r["impl"]] = r
    for (mat, batch, rate), impls in by_case.items():
        line = f"{mat:>10} {batch:>3} {rate:>4} "
        line += " ".join(
            f"{impls[c]['median_us']:>11.2f}" if c in impls else f"{'-':>11}" for c in cols
        )
        b = impls["bspc"]
        line += f" {b.get('speedup_vs_tvm_dense', 0):>7.1f} {PAPER_CPU_SPEEDUP[rate]:>6.1f}"
        line += f" {b.get('speedup_vs_torch_csr', 0):>6.1f}"
        line += f" {b.get('speedup_vs_scipy_csr', 0):>6.1f}"
        d = impls.get("tvm_dense", {})
        line += f" {d.get('speedup_vs_torch_dense', 0):>11.2f}"
        print(line)


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the benchmark's options (``--quick``, ``--tune``, ``--json``, ...) to ``parser``."""
    parser.add_argument("--quick", action="store_true", help="3072x1024, rates 10/103/301")
    parser.add_argument("--tune", action="store_true", help="best of small knob sets (BSPC, dense)")
    parser.add_argument("--json", type=Path, help="write the records to this JSON file")
    parser.add_argument("--seconds", type=float, default=None, help="time budget per timing")
    parser.add_argument("--threads", type=int, default=None, help="threads (default: cores)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; see the module docstring (``python scripts/bench_spmv.py``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    return run_args(add_arguments(parser).parse_args(argv))


def run_args(args: argparse.Namespace) -> int:
    """Run the benchmark with parsed options (see :func:`add_arguments`)."""
    args.seconds = args.seconds or (0.15 if args.quick else 0.5)

    threads = args.threads = args.threads or os.cpu_count() or 1
    os.environ["TVM_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)
    rates = QUICK_RATES if args.quick else RATES
    matrices = [(3072, 1024)] if args.quick else list(MATRICES)
    batches = (1, 32)
    print(f"threads: TVM {os.environ['TVM_NUM_THREADS']}, torch {torch.get_num_threads()}")

    records: list[dict] = [machine_record(threads)]
    copies = copy_bandwidth(args.seconds)
    records += copies
    for c in copies:
        print(f"copy bandwidth ({c['level']}): {c['gbps']:.1f} GB/s")
    dense = build_dense_kernels(matrices, batches, args)
    t_start = time.time()
    for M, N in matrices:
        for batch in batches:
            for rate in rates:
                records += bench_case(M, N, batch, rate, MATRICES[(M, N)], args, dense)
    records[0]["loadavg_end"] = list(os.getloadavg())
    records[0]["bench_seconds"] = time.time() - t_start
    ratios(records)
    print_table(records)
    if args.json:
        from tvm_bsp.bspc import atomic_write

        args.json.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(records, indent=1) + "\n"
        atomic_write(args.json, lambda f: f.write(text.encode()))
        print(f"wrote {len(records)} records to {args.json}")
    return 0
