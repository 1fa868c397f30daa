#!/usr/bin/env python
"""Family A (stand-alone SpMM templates) against family B (compile_model's mat-mat kernels).

Both compute ``y = x W^T`` on the same BSPC matrices (3072x1024, block grid 96x16, BSP masks
at the given rates with ``PAPER_SPLITS``) and the same dense 3072x1024 matrix, for batch 1
and a batch of frames, in the row-major contract ``x (batch, K) -> y (batch, M)``:

``A``     ``tvm_bsp.kernels.templates`` (what ``bench spmv`` measured and ``tune_spmm``
          tuned before the families were merged): fixed batch, the cost model's config.
``A*``    the best of a small set of template knobs (``panel_rows``, ``k_split``, ``unroll``
          / ``batch_tile``, ``row_order``, ``threads``).
``A-nb``  (batch > 1, for reference) the best frame-major template (``x (K, batch)``).
``B``     ``tvm_bsp.kernels.cpu.rnn.linear_kernel`` (what ``compile_model`` ships for input
          projections and dense heads): symbolic frame count, the defaults
          ``compile_model`` takes (target knobs, ``suggest_lanes`` for a BSPC weight), built
          through ``spmm_prim_func`` / ``dense_prim_func`` (which return this kernel since
          the merge).
``B*``    the best over ``lanes`` in (4, 8, 16, 32) x ``frames`` (batch > 1) or ``k_split``
          (batch 1), parallel or not.

Every kernel is checked against numpy first. Timings are ``time_evaluator`` medians; the
defaults and the winners of both families are re-timed in alternating rounds (A, B, A, B,
...), and the median over all rounds is reported. Each thread count runs in a child process
with ``TVM_NUM_THREADS`` set (TVM's pool is sized once per process); kernel thread knobs are
capped at that count. Family A only exists in trees before the merge; without it the A
columns stay empty.

OpenCL (``--opencl``): both families' OpenCL kernels are run on POCL and checked against
numpy; POCL runs on this machine's CPU, so its timings say nothing about a GPU and none are
reported.

Usage::

    python scripts/bench_matmat_families.py [--quick] [--json results/bench_matmat_families.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from itertools import product
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHAPE = (3072, 1024)
GRID = (96, 16)
RATES = (1, 10, 103, 301)  # 1: the dense matrix (dense kernels of both families)
BATCHES = (1, 32)
THREADS = (1, 2)
LANES = (4, 8, 16, 32)
FRAMES = (1, 2, 4, 8, 16)


def _problem(rate: int):
    from tvm_bsp.bspc import BSPCMatrix
    from tvm_bsp.prune import PAPER_SPLITS, bsp_mask

    weight = np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32)
    if rate == 1:
        return weight, weight
    mask = bsp_mask(weight, *GRID, *PAPER_SPLITS[rate])
    return BSPCMatrix.from_dense(weight, mask, *GRID), np.where(mask, weight, 0)


class Compiled:
    """A PrimFunc compiled for the host with its constant inputs bound."""

    def __init__(self, func, consts, x: np.ndarray, out_shape, frame_major: bool = False):
        import tvm

        from tvm_bsp.kernels.targets import host_target

        func = func.with_attr("global_symbol", "main")
        ex = tvm.compile(tvm.IRModule({"main": func}), target=host_target())
        self.module = ex.jit() if hasattr(ex, "jit") else ex
        self.dev = tvm.cpu()
        xk = np.ascontiguousarray(x.T) if frame_major else x
        self.args = [tvm.runtime.tensor(a, self.dev) for a in (xk, *consts)]
        self.args.append(tvm.runtime.tensor(np.zeros(out_shape, np.float32), self.dev))
        self.frame_major = frame_major

    def output(self) -> np.ndarray:
        self.module["main"](*self.args)
        y = self.args[-1].numpy()
        return y.T if self.frame_major else y

    def time(self, seconds: float) -> list[float]:
        """Microseconds per call, one value per repeat (each repeat about 1 ms)."""
        once = self.module.time_evaluator("main", self.dev, number=3, repeat=1)(*self.args).mean
        number = max(1, int(1e-3 / max(once, 1e-7)))
        repeat = max(5, min(100, int(seconds / (once * number))))
        ev = self.module.time_evaluator("main", self.dev, number=number, repeat=repeat)
        return [r * 1e6 for r in ev(*self.args).results]


def _templates_a():
    """Family A's template module, or None in trees after the merge."""
    try:
        import tvm_bsp.kernels.templates as templates
    except ImportError:
        return None
    return templates


def _spec_a(matrix, batch: int, config: dict | None, target):
    """Family A's PrimFunc, packed inputs in parameter order and full config."""
    templates = _templates_a()
    if templates is None:
        return None
    if isinstance(matrix, np.ndarray):
        template = templates.dense_template(target)
        full = template.config(batch, config)
        arrays = template.pack(matrix, full, None)
        func = template.kernel(*matrix.shape, batch, full, None)
    else:
        template = templates.spmm_template(target)
        full = template.config(batch, config, matrix)
        layout = template.pack(matrix, full, None)
        arrays, func = layout.arrays, template.kernel(layout, batch, full, None)
    consts = [arrays[n] for n in template.arg_names[1:-1]]
    return func, consts, full


def _family_a(matrix, batch: int, config: dict | None, x):
    """Family A's kernel on the host, or None when this tree no longer has the templates."""
    from tvm_bsp.kernels.targets import host_target

    spec = _spec_a(matrix, batch, config, host_target())
    if spec is None:
        return None
    func, consts, cfg = spec
    nb = cfg.get("frames_layout") == "nb"
    shape = (SHAPE[0], batch) if nb else (batch, SHAPE[0])
    return Compiled(func, consts, x, shape, nb), cfg


def _family_b(matrix, batch: int, config: dict, x):
    """The shipped kernel, as ``build_spmm`` / ``build_dense`` instantiate it."""
    from tvm_bsp.kernels.build import dense_prim_func, spmm_prim_func

    make = dense_prim_func if isinstance(matrix, np.ndarray) else spmm_prim_func
    func, arrays, names = make(matrix, batch, config)
    cfg = {k: v if isinstance(v, str) else int(v) for k, v in func.attrs["tvm_bsp.config"].items()}
    cfg["parallel"] = bool(func.attrs["tvm_bsp.parallel"])
    return Compiled(func, [arrays[n] for n in names[1:-1]], x, (batch, SHAPE[0])), cfg


def _space_a(batch: int, threads: int, dense: bool) -> list[dict]:
    ts = sorted({1, threads})
    if dense:
        third = ("k_split", (1, 2)) if batch == 1 else ("batch_tile", (4, 8, 16))
        return [
            {"panel_rows": p, third[0]: v, "threads": t}
            for p, v, t in product((16, 32), third[1], ts)
        ]
    if batch == 1:
        return [
            {"panel_rows": p, "k_split": k, "unroll": u, "threads": t, "row_order": o}
            for p, k, u, t, o in product((16, 32), (2, 4), (1, 2), ts, ("reorder", "natural"))
        ]
    return [
        {"panel_rows": p, "k_split": k, "batch_tile": b, "threads": t, "row_order": "natural"}
        for p, k, b, t in product((16, 32), (1, 2), (4, 8), ts)
    ]


def _space_nb(threads: int) -> list[dict]:
    return [
        {"frames_layout": "nb", "panel_rows": p, "unroll": u, "threads": t, "row_order": "reorder"}
        for p, u, t in product((1, 2, 4, 8), (1, 2), sorted({1, threads}))
    ]


def _space_b(batch: int, threads: int) -> list[dict]:
    pars = (150_000,) if threads == 1 else (0, 1_000_000)  # parallel forced on / (mostly) off
    second = ("k_split", (1, 2, 4)) if batch == 1 else ("frames", FRAMES)
    return [
        {"lanes": p, second[0]: v, "threads": threads, "min_parallel_macs": m}
        for p, v, m in product(LANES, second[1], pars)
    ]


def _checked(built, want, label):
    if built is None:
        return None
    kernel, cfg = built
    np.testing.assert_allclose(kernel.output(), want, rtol=1e-4, atol=2e-3, err_msg=label)
    return kernel, cfg


def _search(make, space, want, seconds, label):
    best = None
    for config in space:
        built = _checked(make(config), want, f"{label} {config}")
        if built is None:
            return None
        t = float(np.median(built[0].time(seconds)))
        if best is None or t < best[0]:
            best = (t, built)
    return best[1]


def bench_case(rate: int, batch: int, threads: int, seconds: float, rounds: int) -> dict:
    """Defaults and tuned kernels of both families for one case (this process's threads)."""
    matrix, dense = _problem(rate)
    x = np.random.default_rng(1).standard_normal((batch, SHAPE[1])).astype(np.float32)
    want = x.astype(np.float64) @ dense.T.astype(np.float64)
    cap = {"threads": threads} if threads < (os.cpu_count() or 1) else {}  # all cores: the defaults
    quick = seconds / 5
    kernels = {
        "A": _checked(_family_a(matrix, batch, cap, x), want, "A default"),
        "A*": _search(
            lambda c: _family_a(matrix, batch, c, x), [cap, *_space_a(batch, threads, rate == 1)],
            want, quick, "A",
        ),
        "B": _checked(_family_b(matrix, batch, cap, x), want, "B default"),
        "B*": _search(
            lambda c: _family_b(matrix, batch, c, x), [cap, *_space_b(batch, threads)], want,
            quick, "B",
        ),
    }  # fmt: skip
    if batch > 1 and rate != 1:
        kernels["A-nb"] = _search(
            lambda c: _family_a(matrix, batch, c, x), _space_nb(threads), want, quick, "A-nb"
        )
    live = {k: v for k, v in kernels.items() if v is not None}
    samples: dict[str, list[float]] = {k: [] for k in live}
    for _ in range(rounds):  # alternate the families, round after round
        for name, (kernel, _cfg) in live.items():
            samples[name] += kernel.time(seconds / rounds)
    out = {"rate": rate, "batch": batch, "threads": threads, "kernels": {}}
    for name, (_kernel, cfg) in live.items():
        out["kernels"][name] = {
            "median_us": float(np.median(samples[name])),
            "min_us": float(np.min(samples[name])),
            "samples": len(samples[name]),
            "config": cfg,
        }
    return out


def check_opencl(rates, batches) -> list[dict]:
    """Both families' OpenCL kernels on POCL against numpy (correctness only)."""
    from tvm_bsp.kernels.opencl.knobs import default_gpu_rnn_knobs
    from tvm_bsp.kernels.opencl.rnn import gpu_linear_kernel
    from tvm_bsp.kernels.targets import resolve_target
    from tvm_bsp.testing.opencl import build_opencl_program, opencl_available, run_opencl_prim_func

    if not opencl_available():
        return [{"opencl": "unavailable"}]
    out = []
    for device, rate, batch in product(("mali", "adreno"), rates, batches):
        target = resolve_target(f"opencl-{device}", host="host")
        matrix, dense = _problem(rate)
        x = np.random.default_rng(2).standard_normal((batch, SHAPE[1])).astype(np.float32)
        want = x.astype(np.float64) @ dense.T.astype(np.float64)
        rec = {"device": device, "rate": rate, "batch": batch}
        func, consts, rows = gpu_linear_kernel(matrix, None, default_gpu_rnn_knobs(target))
        prog = build_opencl_program(func.with_attr("global_symbol", "main"), target)
        (got,) = prog.run([x, *consts, np.zeros((batch, rows), np.float32)])
        rec["B_max_abs_err"] = float(np.max(np.abs(got - want)))
        spec = _spec_a(matrix, batch, None, target)
        if spec is not None:
            func, consts, _cfg = spec
            args = [x, *consts, np.zeros_like(want, np.float32)]
            rec["A_max_abs_err"] = float(
                np.max(np.abs(run_opencl_prim_func(func, target, args)[0] - want))
            )
        rec["ok"] = all(v < 2e-3 for k, v in rec.items() if k.endswith("_err"))
        out.append(rec)
        print(f"opencl {device} rate {rate} batch {batch}: {rec}", flush=True)
    return out


def _child(args) -> int:
    threads = int(os.environ["TVM_NUM_THREADS"])
    cases = []
    for rate, batch in product(args.rates, args.batches):
        t0 = time.time()
        case = bench_case(rate, batch, threads, args.seconds, args.rounds)
        case["seconds"] = time.time() - t0
        cases.append(case)
        line = "  ".join(f"{k} {v['median_us']:.1f}" for k, v in case["kernels"].items())
        print(f"[{threads}t] rate {rate} batch {batch}: {line} us", flush=True)
    Path(args.child).write_text(json.dumps(cases))
    return 0


def print_table(cases: list[dict]) -> None:
    """One line per (threads, rate, batch): medians and the ratio of the two best."""
    cols = ("A", "A*", "B", "B*", "A-nb")
    print(f"{'thr':>3} {'rate':>5} {'B':>3} " + " ".join(f"{c:>9}" for c in cols) + "   B*/A*")
    for c in cases:
        k = c["kernels"]
        cells = " ".join(f"{k[n]['median_us']:>9.1f}" if n in k else f"{'-':>9}" for n in cols)
        ratio = k["B*"]["median_us"] / k["A*"]["median_us"] if {"A*", "B*"} <= set(k) else None
        rate = "dense" if c["rate"] == 1 else f"{c['rate']}x"
        tail = f"{ratio:>8.2f}" if ratio else f"{'-':>8}"
        print(f"{c['threads']:>3} {rate:>5} {c['batch']:>3} {cells} {tail}")


def main(argv: list[str] | None = None) -> int:
    """Run the comparison (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short timings")
    parser.add_argument("--rates", type=int, nargs="+", default=list(RATES))
    parser.add_argument("--batches", type=int, nargs="+", default=list(BATCHES))
    parser.add_argument("--threads", type=int, nargs="+", default=list(THREADS))
    parser.add_argument("--seconds", type=float, default=None, help="budget per timing")
    parser.add_argument("--rounds", type=int, default=5, help="alternating timing rounds")
    parser.add_argument("--opencl", action="store_true", help="also check OpenCL on POCL")
    parser.add_argument("--json", type=Path, help="write the results to this JSON file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.seconds = args.seconds or (0.1 if args.quick else 0.4)
    if args.child:
        return _child(args)
    from tvm_bsp.experiments.bench.spmv import machine_record

    record = {"machine": machine_record(0), "cases": [], "opencl": []}
    record["machine"].pop("threads")
    for threads in args.threads:
        with tempfile.NamedTemporaryFile(suffix=".json") as tmp:
            cmd = [sys.executable, __file__, "--child", tmp.name, "--seconds", str(args.seconds),
                   "--rounds", str(args.rounds), "--rates", *map(str, args.rates),
                   "--batches", *map(str, args.batches)]  # fmt: skip
            env = {**os.environ, "TVM_NUM_THREADS": str(threads)}
            subprocess.run(cmd, env=env, check=True)
            record["cases"] += json.loads(Path(tmp.name).read_text())
    if args.opencl:
        record["opencl"] = check_opencl(args.rates, args.batches)
    record["machine"]["loadavg_end"] = list(os.getloadavg())
    print_table(record["cases"])
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
