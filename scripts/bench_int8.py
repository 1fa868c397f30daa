#!/usr/bin/env python
"""int8 BSPC kernel vs the fp32 BSPC kernel on the reference GRU's 3072x1024 matrix.

``weight_hh_l0`` of :func:`tvm_bsp.experiments.bench.gru.reference_gru`, BSP-pruned by
:func:`~tvm_bsp.experiments.bench.gru.pruned` (grid 96x16) at each rate; per (rate, batch,
threads): the fp32 kernel of :func:`tvm_bsp.kernels.build_spmm` (its default knobs with the
thread count fixed), the int8 kernel of :func:`tvm_bsp.kernels.int8_build.build_spmm_int8`
with the target's dot product (``vpdpbusd`` / ``sdot``) and with the plain-TIR dot
(``generic``), and the int8 activation quantizer. Samples of all kernels of a case are
taken in interleaved rounds in one process; medians (and minima) in microseconds. Every
kernel is checked first (fp32 against numpy, int8 bit for bit against
:func:`tvm_bsp.bspc.quant_ops.int8_matmat`). Usage::

    nice -n 19 python scripts/bench_int8.py [--rates 10,80] [--batches 1,32] [--threads 1,2]
                                            [--rounds 15] [--json results/bench_int8.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

MATRIX = "weight_hh_l0"
SAMPLE_S = 0.02  # seconds per sample


def matrix_at(model, rate: int):
    """The BSPC matrix of :data:`MATRIX` at ``rate`` and its pruned dense weight."""
    from tvm_bsp.bspc import BSPCMatrix
    from tvm_bsp.experiments.bench.gru import pruned

    pmodel, masks, grids, _ = pruned(model, rate)
    weight = dict(pmodel.named_parameters())[MATRIX].detach().numpy().astype(np.float32)
    return BSPCMatrix.from_dense(weight, masks[MATRIX], *grids[MATRIX]), weight


def kernels_for(bspc, batch: int, threads: int) -> dict:
    """``{name: (time(number) -> seconds per call, kernel)}`` of one case, all checked."""
    from tvm_bsp.bspc import quantize_bspc
    from tvm_bsp.bspc.quant_ops import int8_matmat, quantize_activations
    from tvm_bsp.kernels import build_spmm
    from tvm_bsp.kernels.int8_build import build_spmm_int8

    rng = np.random.default_rng(batch)
    x = rng.standard_normal((batch, bspc.shape[1])).astype(np.float32)
    cfg = {"threads": threads} if threads == 1 else {"threads": threads, "min_parallel_macs": 0}
    fp32 = build_spmm(bspc, batch, config=cfg)
    want = x.astype(np.float64) @ bspc.to_dense().astype(np.float64).T
    np.testing.assert_allclose(fp32(x), want, rtol=1e-4, atol=1e-4)
    q = quantize_bspc(bspc)
    xq, _ = quantize_activations(x.T, "input")
    ref = int8_matmat(q, x.T).T
    out = {"fp32": (lambda n: fp32.time(x, number=n, repeat=1)[0], fp32)}
    for dot in (None, "generic"):
        k = build_spmm_int8(q, batch, dot=dot, threads=threads)
        kq, ks = k.quantize(x)
        np.testing.assert_array_equal(kq, xq.T)
        np.testing.assert_array_equal(k(kq, ks), ref)
        out[f"int8_{k.dot}"] = (
            lambda n, k=k, kq=kq, ks=ks: k.time(kq, ks, number=n, repeat=1)[0],
            k,
        )
    quant = out[f"int8_{k.dot}"][1]
    out["quantize"] = (lambda n: quant.time_quantize(number=n, repeat=1)[0], quant)
    rel = float(np.linalg.norm(ref - want) / np.linalg.norm(want))
    return out, {"granularity": q.granularity, "int8_rel_error_vs_fp32": rel}


def time_case(timers: dict, rounds: int) -> dict:
    """Interleaved samples: per round, one sample of every kernel."""
    numbers = {}
    for name, (fn, _) in timers.items():
        fn(3)  # warm up
        once = max(fn(10), 1e-7)
        numbers[name] = max(1, int(SAMPLE_S / once))
    samples = {name: [] for name in timers}
    for _ in range(rounds):
        for name, (fn, _) in timers.items():
            samples[name].append(fn(numbers[name]) * 1e6)
    return {
        n: {"median_us": statistics.median(s), "min_us": min(s), "samples": len(s)}
        for n, s in samples.items()
    }


def print_table(records: list[dict]) -> None:
    """One line per case: medians in microseconds, fp32 / int8 speedup."""
    head = f"{'rate':>4} {'B':>3} {'thr':>3} {'fp32':>9} {'int8':>9} {'generic':>9} "
    print(head + f"{'quant':>7} {'fp32/int8':>9} {'fp32/generic':>12} {'dot':>6}")
    for r in records:
        t = r["timings"]
        dot = r["dot"]
        f, i, g = (t[k]["median_us"] for k in ("fp32", f"int8_{dot}", "int8_generic"))
        quant = t["quantize"]["median_us"]
        print(f"{r['rate']:>4} {r['batch']:>3} {r['threads']:>3} {f:>9.1f} {i:>9.1f} {g:>9.1f} "
              f"{quant:>7.1f} {f / i:>9.2f} {f / g:>12.2f} {dot:>6}")  # fmt: skip


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rates", type=_ints, default=[10, 80])
    parser.add_argument("--batches", type=_ints, default=[1, 32])
    parser.add_argument("--threads", type=_ints, default=[1, 2])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--json", type=Path, default=Path("results/bench_int8.json"))
    args = parser.parse_args(argv)

    from tvm_bsp.experiments.bench.gru import reference_gru
    from tvm_bsp.kernels.int8_build import int8_target

    model = reference_gru()
    records = []
    for rate in args.rates:
        bspc, _ = matrix_at(model, rate)
        for batch in args.batches:
            for threads in args.threads:
                timers, info = kernels_for(bspc, batch, threads)
                timings = time_case(timers, args.rounds)
                dot = next(k for k in timers if k.startswith("int8_") and k != "int8_generic")
                records.append({
                    "matrix": f"{MATRIX} {bspc.shape[0]}x{bspc.shape[1]}", "rate": rate,
                    "grid": f"{bspc.row_blocks}x{bspc.col_blocks}", "nnz": bspc.nnz,
                    "batch": batch, "threads": threads, "dot": dot.removeprefix("int8_"),
                    "fp32_config": timers["fp32"][1].spec.func.attrs["tvm_bsp.config"],
                    "timings": timings, **info,
                })  # fmt: skip
                print(f"rate {rate} batch {batch} threads {threads}: done", flush=True)
    result = {
        "host": os.uname().machine, "target": str(int8_target("host")), "cpus": os.cpu_count(),
        "niceness": os.nice(0), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "note": "medians of interleaved rounds" + (
            "; run under nice on a shared machine: rough" if os.nice(0) > 0 else ""),
        "records": records,
    }  # fmt: skip
    args.json.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.json.with_name(args.json.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=1, default=str))
    os.replace(tmp, args.json)
    print("\nall cases:")
    print_table(records)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
