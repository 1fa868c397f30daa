"""Per-frame latency of RTMobile's reference GRU (2 x 1024, input 39): our BSPC builds vs peers.

For each compression rate of RTMobile's Table II (BSP masks from ``bsp_mask_at_rate`` with the
column rate of ``PAPER_SPLITS``, grids 96 x 16 for the 3072 x 1024 matrices and 96 x 4 for the
3072 x 39 one; ``--grid 96x16,384x16`` times several grids side by side, records carry
``grid``), the reference model is compiled with :func:`tvm_bsp.compile_model` and timed

``stream``     frame by frame: ``step(x_t, state)`` per frame, state fed back (per-frame cost
               of a streaming recognizer, call overhead included);
``utterance``  one ``forward`` over ``T = 200`` frames, divided by ``T``;

next to (rate 1 only, the dense model): our dense build (``tvm_dense``), ``torch.nn.GRU`` with
1 and 2 threads (``torch_dense_1t`` / ``torch_dense_2t``) and ONNX Runtime's GRU
(``onnxruntime``; from ``torch.onnx.export`` when it works, else the two GRU nodes built with
``onnx.helper``). Our builds are compiled and timed twice, for 1 thread and for all
``--threads`` (records carry ``threads``); speedups divide our dense time by the BSPC time.
Every number is the median of repeated runs. The tables mirror RTMobile's Table II (their
CPU column: Kryo 485; here: this host). Run it on a quiet machine: a process holding a core
stalls every barrier of the parallel time loops.

Usage::

    tvm-bsp bench gru [--quick] [--rates 1,10] [--grid 96x16[,384x16]] [--json PATH]
    python scripts/bench_gru.py [--quick] [--json results/bench_gru.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tvm_bsp.bspc.grid import parse_grid_list as parse_grids

RATES = (1, 10, 19, 29, 43, 80, 103, 153, 245, 301)
QUICK_RATES = (1, 10, 103, 301)
#: RTMobile Table II: CPU speedup over dense (Snapdragon 855 Kryo 485).
PAPER_CPU_SPEEDUP = {
    1: 1.0,
    10: 5.9,
    19: 10.1,
    29: 15.3,
    43: 20.7,
    80: 32.7,
    103: 35.2,
    153: 41.8,
    245: 47.1,
    301: 48.9,
}
#: RTMobile Table II: CPU microseconds per frame.
PAPER_CPU_US = {
    1: 7130.0,
    10: 1210.2,
    19: 709.33,
    29: 464.73,
    43: 344.77,
    80: 218.01,
    103: 202.72,
    153: 170.74,
    245: 151.28,
    301: 145.93,
}
MODEL = "gru-2x1024-in39"
INPUT, HIDDEN, LAYERS = 39, 1024, 2
GRIDS = {(3 * HIDDEN, HIDDEN): (96, 16), (3 * HIDDEN, INPUT): (96, 4)}


def grids_for(row_blocks: int, col_blocks: int) -> dict[tuple[int, int], tuple[int, int]]:
    """The per-shape grids of the reference model for a ``ROWSxCOLS`` grid of its H-wide
    matrices (the 39-column input matrix keeps 4 column stripes)."""
    return {(3 * HIDDEN, HIDDEN): (row_blocks, col_blocks), (3 * HIDDEN, INPUT): (row_blocks, 4)}


def parse_grid_list(text: str) -> list[tuple[int, int]]:
    """``"96x16,384x16"`` -> ``[(96, 16), (384, 16)]`` within the reference model's shapes."""
    grids = parse_grids(text)
    for rb, cb in grids:
        if not (rb <= 3 * HIDDEN and cb <= INPUT):
            raise ValueError(
                f"grid {rb}x{cb}: rows must be in [1, {3 * HIDDEN}] and columns in [1, {INPUT}] "
                "(the input matrix has 39 columns)"
            )
    return grids


def median_time(fn: Callable[[], object], repeat: int, warmup: int = 1) -> float:
    """Median wall-clock seconds of ``fn()`` over ``repeat`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


# ---------------------------------------------------------------------- models
def reference_gru():
    """The dense reference model, seeded."""
    import torch

    torch.manual_seed(0)
    return torch.nn.GRU(INPUT, HIDDEN, LAYERS).eval()


def pruned(model, rate: int, grids: dict | None = None):
    """A copy of ``model`` with BSP-pruned weights (zero outside the masks) and the masks."""
    import torch

    from tvm_bsp.prune import PAPER_SPLITS, bsp_mask_at_rate

    col_rate, _ = PAPER_SPLITS[rate]
    copy = torch.nn.GRU(INPUT, HIDDEN, LAYERS).eval()
    copy.load_state_dict(model.state_dict())
    masks, kept, size = {}, 0, 0
    with torch.no_grad():
        for name, p in copy.named_parameters():
            if not name.startswith("weight"):
                continue
            rb, cb = (grids or GRIDS)[tuple(p.shape)]
            mask = bsp_mask_at_rate(p.numpy(), rb, cb, rate, col_rate)
            p.mul_(torch.from_numpy(mask))
            masks[name] = mask
            kept += int(mask.sum())
            size += mask.size
    by_name = {n: (grids or GRIDS)[m.shape] for n, m in masks.items()}
    return copy, masks, by_name, size / kept


# ---------------------------------------------------------------------- timers
def time_tvm(cm, T: int, repeat: int, threads: int) -> dict[str, float]:
    """``{"stream": us/frame, "utterance": us/frame}`` of a compiled model on ``threads``."""
    import tvm

    from tvm_bsp.deploy.session import configure_threads

    vm = cm.session.vm
    configure_threads(threads)
    rng = np.random.default_rng(1)
    x = tvm.runtime.tensor(rng.standard_normal((T, 1, INPUT)).astype(np.float32))
    frames = [tvm.runtime.tensor(f) for f in rng.standard_normal((T, 1, INPUT)).astype(np.float32)]
    state0 = tvm.runtime.tensor(np.zeros((LAYERS, 1, HIDDEN), np.float32))
    forward, step = vm["forward"], vm["step"]

    def stream():
        state = state0
        for frame in frames:
            _, state = step(frame, state)

    utt = median_time(lambda: forward(x, state0), repeat)
    strm = median_time(stream, max(3, repeat // 2))
    return {"stream": strm / T * 1e6, "utterance": utt / T * 1e6}


def time_torch(model, T: int, repeat: int, threads: int) -> dict[str, float]:
    """Per-frame latency of ``torch.nn.GRU`` with ``threads`` intra-op threads."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        rng = np.random.default_rng(1)
        x = torch.from_numpy(rng.standard_normal((T, 1, INPUT)).astype(np.float32))
        h0 = torch.zeros(LAYERS, 1, HIDDEN)
        frames = [x[t : t + 1] for t in range(T)]

        def stream():
            h = h0
            for frame in frames:
                _, h = model(frame, h)

        with torch.no_grad():
            utt = median_time(lambda: model(x, h0), repeat)
            strm = median_time(stream, max(3, repeat // 2))
    finally:
        torch.set_num_threads(old)
    return {"stream": strm / T * 1e6, "utterance": utt / T * 1e6}


def onnx_gru_model(model, path: Path) -> str:
    """Write an ONNX model of ``model``; returns how (``torch.onnx.export`` or ``onnx.helper``)."""
    import torch

    x = torch.zeros(5, 1, INPUT)
    h0 = torch.zeros(LAYERS, 1, HIDDEN)
    try:
        torch.onnx.export(
            model,
            (x, h0),
            str(path),
            input_names=["x", "h0"],
            output_names=["y", "hn"],
            dynamic_axes={"x": {0: "T"}, "y": {0: "T"}},
            dynamo=False,
        )
        return "torch.onnx.export"
    except Exception:  # the exporter needs onnxscript (not installed) or fails otherwise
        pass
    _onnx_helper_gru(model, path)
    return "onnx.helper"


def _onnx_helper_gru(model, path: Path) -> None:
    """Two ONNX GRU nodes (``linear_before_reset=1`` = torch's GRU) chained."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    H = HIDDEN
    nodes, inits = [], []
    seq = "x"
    for k in range(LAYERS):
        p = {
            n: getattr(model, f"{n}_l{k}").detach().numpy()
            for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        }

        def zrh(a):  # torch stacks r, z, n; ONNX z, r, h
            return np.concatenate([a[H : 2 * H], a[:H], a[2 * H :]])

        inits += [
            numpy_helper.from_array(zrh(p["weight_ih"])[None], f"W{k}"),
            numpy_helper.from_array(zrh(p["weight_hh"])[None], f"R{k}"),
            numpy_helper.from_array(
                np.concatenate([zrh(p["bias_ih"]), zrh(p["bias_hh"])])[None], f"B{k}"
            ),
            numpy_helper.from_array(np.array([k], np.int64), f"idx{k}"),
        ]
        nodes += [
            helper.make_node("Gather", ["h0", f"idx{k}"], [f"h0_{k}"], axis=0),
            helper.make_node(
                "GRU",
                [seq, f"W{k}", f"R{k}", f"B{k}", "", f"h0_{k}"],
                [f"y{k}", f"hn{k}"],
                hidden_size=H,
                linear_before_reset=1,
            ),
            helper.make_node("Squeeze", [f"y{k}", "axis1"], [f"s{k}"]),
        ]
        seq = f"s{k}"
    inits.append(numpy_helper.from_array(np.array([1], np.int64), "axis1"))
    nodes.append(helper.make_node("Concat", [f"hn{k}" for k in range(LAYERS)], ["hn"], axis=0))
    graph = helper.make_graph(
        nodes,
        "gru",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["T", 1, INPUT]),
            helper.make_tensor_value_info("h0", TensorProto.FLOAT, [LAYERS, 1, H]),
        ],
        [
            helper.make_tensor_value_info(seq, TensorProto.FLOAT, ["T", 1, H]),
            helper.make_tensor_value_info("hn", TensorProto.FLOAT, [LAYERS, 1, H]),
        ],
        inits,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def time_onnxruntime(model, T: int, repeat: int, threads: int) -> tuple[dict[str, float], str]:
    """Per-frame latency of ONNX Runtime on the exported model (and how it was exported)."""
    import onnxruntime as ort
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "gru.onnx"
        how = onnx_gru_model(model, path)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    out, hn = (o.name for o in sess.get_outputs()[:2])
    rng = np.random.default_rng(1)
    x = rng.standard_normal((T, 1, INPUT)).astype(np.float32)
    h0 = np.zeros((LAYERS, 1, HIDDEN), np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x), torch.from_numpy(h0))[0].numpy()
    got = sess.run([out], dict(zip(names, (x, h0), strict=True)))[0].reshape(ref.shape)
    if not np.allclose(got, ref, atol=1e-4):
        raise RuntimeError(f"ONNX Runtime GRU ({how}) disagrees with torch")
    frames = [x[t : t + 1] for t in range(T)]

    def stream():
        h = h0
        for frame in frames:
            _, h = sess.run([out, hn], {names[0]: frame, names[1]: h})

    utt = median_time(lambda: sess.run([out], {names[0]: x, names[1]: h0}), repeat)
    strm = median_time(stream, max(3, repeat // 2))
    return {"stream": strm / T * 1e6, "utterance": utt / T * 1e6}, how


# ---------------------------------------------------------------------- main
def check(cm, model, T: int) -> float:
    """Max abs difference of the compiled model from torch on a random utterance."""
    import torch

    x = np.random.default_rng(2).standard_normal((T, 1, INPUT)).astype(np.float32)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # no spinning OpenMP workers left behind to slow TVM's threads
    try:
        with torch.no_grad():
            ref = model(torch.from_numpy(x))[0].numpy()
    finally:
        torch.set_num_threads(threads)
    return float(np.abs(cm.forward(x)[0] - ref).max())


def run(
    rates, T: int, repeat: int, threads: int, grids: dict | list[dict], peers: bool = True
) -> tuple[list[dict], dict]:
    """Measure everything; returns ``(records, notes)``.

    ``grids`` is one per-shape grid mapping (:func:`grids_for`) or a list of them: every
    BSPC rate is then built and timed once per grid (records carry ``grid``, ``"RxC"`` of
    the H-wide matrices), the dense build once.

    Our builds are timed first, and torch keeps one thread until its own turn: OpenMP and
    ONNX Runtime workers spin after their work and would steal the cores from TVM's pool.
    """
    import torch

    import tvm_bsp
    from tvm_bsp.deploy.session import configure_threads

    torch.set_num_threads(1)
    # TVM's pool gets its workers when first used and cannot grow afterwards: create it with
    # the most threads, then switch between 1 and ``threads`` per build.
    pool = configure_threads(threads)

    records: list[dict] = []
    notes: dict = {"load_before": os.getloadavg(), "tvm_pool_threads": pool}
    model = reference_gru()

    def add(mode, rate, impl, us, **extra):
        records.append(
            {"model": MODEL, "mode": mode, "rate": rate, "impl": impl, "us_per_frame": us, **extra}
        )

    grid_list = grids if isinstance(grids, list) else [grids]
    builds = [(rate, None) for rate in rates if rate == 1]
    builds += [(rate, g) for rate in rates if rate != 1 for g in grid_list]
    for rate, grid in builds:
        if grid is None:
            pmodel, impl, achieved, kwargs, label = model, "tvm_dense", 1.0, {}, {}
        else:
            pmodel, masks, by_name, achieved = pruned(model, rate, grid)
            impl, kwargs = "bspc", {"bspc": masks, "grid": by_name}
            label = {"grid": "{}x{}".format(*grid[(3 * HIDDEN, HIDDEN)])}
        for tvm_threads in sorted({1, threads}):
            start = time.time()
            cm = tvm_bsp.compile_model(pmodel, knobs={"threads": tvm_threads}, **kwargs)
            compile_s = time.time() - start
            times = time_tvm(cm, T, repeat, tvm_threads)
            error = check(cm, pmodel, T)
            if error > 1e-3:
                raise RuntimeError(f"rate {rate}: compiled model differs from torch by {error}")
            for mode, us in times.items():
                extra = {
                    "achieved_rate": round(achieved, 2),
                    "compile_s": round(compile_s, 1),
                    **label,
                }
                add(mode, rate, impl, us, threads=tvm_threads, max_abs_error=error, **extra)
        where = f" grid {label['grid']}" if label else ""
        print(f"rate {rate:>3}{where}: done", file=sys.stderr, flush=True)
    if peers:
        for threads_ in (1, 2):
            for mode, us in time_torch(model, T, repeat, threads_).items():
                add(mode, 1, f"torch_dense_{threads_}t", us)
        ort_times, how = time_onnxruntime(model, T, repeat, threads)
        notes["onnx_export"] = how
        for mode, us in ort_times.items():
            add(mode, 1, "onnxruntime", us, threads=threads)
    notes["load_after"] = os.getloadavg()
    return records, notes


def table(records: list[dict]) -> str:
    """Markdown tables like RTMobile's Table II (this host), per mode.

    Our builds appear with 1 and with all threads; the speedup divides our dense time by
    the BSPC time at the same thread count, and "best" uses the faster of the two for each.
    With several grids, each BSPC rate has one row per grid.
    """
    ours: dict[tuple, float] = {}
    peers: dict[tuple, float] = {}
    for r in records:
        if r["impl"] in ("bspc", "tvm_dense"):
            ours[(r["mode"], r["rate"], r.get("grid", ""), r["threads"])] = r["us_per_frame"]
        else:
            peers[(r["mode"], r["impl"])] = r["us_per_frame"]
    builds = sorted({k[1:3] for k in ours})
    counts = sorted({k[3] for k in ours})
    several = len({g for _, g in builds if g}) > 1
    lines = []
    for mode in ("stream", "utterance"):
        dense = {n: ours.get((mode, 1, "", n)) for n in counts}
        dense_values = [v for v in dense.values() if v]
        best_dense = min(dense_values) if dense_values else None
        heads = [f"ours {n}t us" for n in counts] + [f"speedup {n}t" for n in counts]
        grid_head = "grid | " if several else ""
        lines += [
            f"\n{mode}: microseconds per frame, speedup over our dense build",
            f"| rate | {grid_head}"
            + " | ".join(heads)
            + " | speedup best | RTMobile CPU speedup |",
            "| --- " * (len(heads) + 3 + several) + "|",
        ]
        for rate, grid in builds:
            us = {n: ours.get((mode, rate, grid, n)) for n in counts}
            cells = [f"{us[n]:.1f}" if us[n] else "-" for n in counts]
            cells += [f"{dense[n] / us[n]:.1f}" if us[n] and dense[n] else "-" for n in counts]
            fastest = min((v for v in us.values() if v), default=None)
            best = f"{best_dense / fastest:.1f}" if best_dense and fastest else "-"
            grid_cell = f"{grid or '-'} | " if several else ""
            lines.append(
                f"| {rate} | {grid_cell}"
                + " | ".join(cells)
                + f" | {best} | {PAPER_CPU_SPEEDUP[rate]} |"
            )
        names = ("torch_dense_1t", "torch_dense_2t", "onnxruntime")
        if any((mode, n) in peers for n in names):
            lines.append(
                "dense peers: "
                + ", ".join(f"{n} {peers[(mode, n)]:.1f}" for n in names if (mode, n) in peers)
            )
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the benchmark's options (``--quick``, ``--json``, ...) to ``parser``; return it."""
    parser.add_argument("--quick", action="store_true", help=f"rates {QUICK_RATES}, fewer runs")
    parser.add_argument("--json", type=Path, help="write the records here")
    parser.add_argument("--frames", type=int, default=200, help="utterance length T")
    parser.add_argument(
        "--grid",
        default="96x16",
        help="block grid of the 3072 x 1024 matrices, or a comma list timed side by side "
        "(e.g. 96x16,384x16; the 3072 x 39 matrix keeps 4 column stripes)",
    )
    parser.add_argument(
        "--rates",
        help=f"comma list of rates out of {','.join(map(str, RATES))} (default: all, or --quick's)",
    )
    parser.add_argument(
        "--no-peers", action="store_true", help="skip torch and ONNX Runtime (our builds only)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count() or 1,
        help="threads of ONNX Runtime (TVM: TVM_NUM_THREADS, default all cores)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (``python scripts/bench_gru.py``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    return run_args(add_arguments(parser).parse_args(argv))


def run_args(args: argparse.Namespace) -> int:
    """Run the benchmark with parsed options (see :func:`add_arguments`)."""
    rates = QUICK_RATES if args.quick else RATES
    if args.rates:
        try:
            rates = tuple(int(v) for v in args.rates.split(","))
        except ValueError:
            print(f"error: --rates {args.rates!r} is not a comma list of integers", file=sys.stderr)
            return 2
        unknown = [r for r in rates if r not in RATES]
        if unknown:
            print(f"error: --rates {unknown} not among {list(RATES)}", file=sys.stderr)
            return 2
    repeat = 3 if args.quick else 9
    try:
        grid_list = [grids_for(rb, cb) for rb, cb in parse_grid_list(args.grid)]
    except ValueError as err:
        print(f"error: --grid: {err}", file=sys.stderr)
        return 2
    grids = grid_list[0] if len(grid_list) == 1 else grid_list
    records, notes = run(rates, args.frames, repeat, args.threads, grids, peers=not args.no_peers)
    print(table(records))
    if args.json:
        from tvm_bsp.bspc import atomic_write

        args.json.parent.mkdir(parents=True, exist_ok=True)
        details = {
            "host": {
                "machine": platform.machine(),
                "cpus": os.cpu_count(),
                "processor": platform.processor(),
            },
            "frames": args.frames,
            "grids": [{f"{m}x{n}": g for (m, n), g in grid.items()} for grid in grid_list],
            "notes": notes,
        }
        # the contract: PATH holds the list of records; the run's context goes beside it
        sidecar = args.json.with_name(args.json.stem + ".details.json")
        atomic_write(sidecar, lambda f: f.write(json.dumps(details, indent=1).encode()))
        atomic_write(args.json, lambda f: f.write(json.dumps(records, indent=1).encode()))
    return 0
