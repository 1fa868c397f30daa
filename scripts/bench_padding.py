#!/usr/bin/env python
"""Zero padding of the BSPC panel layout on the reference GRU, per rate, old vs new order.

For every rate of :mod:`tvm_bsp.experiments.bench.gru` (its BSP masks and default grid), the
multiply-adds per frame over the stored non-zeros (:mod:`tvm_bsp.kernels.padding`) of the
layers' BSPC weights as the CPU kernels pack them: ``old`` (plain panels, the lanes of the
column-only cost model used before), then each ``panel_order`` knob value with the panel
height :func:`~tvm_bsp.kernels.rnn_knobs.suggest_lanes` picks for it (``--lanes`` adds fixed
heights). ``--time`` also compiles each choice and times it side by side in this
process (``time_tvm`` of the benchmark, rounds interleaved), checking it against torch;
medians over rounds and the fastest round are reported (the machine may be shared). Usage::

    python scripts/bench_padding.py [--rates 43,103,301] [--lanes 4,8] [--time]
                                    [--threads 1] [--json results/bench_padding.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path


def layer_matrices(rate: int, model) -> tuple[object, dict, dict]:
    """The pruned model, its masks and ``{layer: {name: BSPCMatrix}}`` at ``rate``."""
    from tvm_bsp.bspc.matrix import BSPCMatrix
    from tvm_bsp.experiments.bench.gru import LAYERS, pruned

    pmodel, masks, by_name, _ = pruned(model, rate)
    state = {n: p.detach().numpy() for n, p in pmodel.named_parameters()}
    layers = {}
    for layer in range(LAYERS):
        names = (f"weight_hh_l{layer}", f"weight_ih_l{layer}")
        layers[layer] = {n: BSPCMatrix.from_dense(state[n], masks[n], *by_name[n]) for n in names}
    return pmodel, {"bspc": masks, "grid": by_name}, layers


def choices(layers: dict, orders: list[str], fixed: list[int], target) -> list[dict]:
    """Each layout choice: ``{"label", "panel_order", "lanes": {layer: P}}``; ``"old"`` is
    the choice before the grouped order (plain panels, lanes by the column-only cost)."""
    from tvm_bsp.kernels.rnn_knobs import suggest_lanes

    old = {k: suggest_lanes(list(m.values()), target, "plain", 0) for k, m in layers.items()}
    out = [{"label": "old", "panel_order": "plain", "lanes": old}]
    for order in orders:
        lanes = {k: suggest_lanes(list(m.values()), target, order) for k, m in layers.items()}
        out.append({"label": f"{order}/suggested", "panel_order": order, "lanes": lanes})
        for p in fixed:
            out.append(
                {"label": f"{order}/{p}", "panel_order": order, "lanes": dict.fromkeys(layers, p)}
            )
    return out


def padding_of(layers: dict, choice: dict, target) -> dict[str, float]:
    """MAC/nnz ratios of a choice: recurrent weights, input weights and all."""
    from tvm_bsp.kernels.padding import Padding, layer_padding
    from tvm_bsp.kernels.rnn_knobs import default_knobs

    total = {"recurrent": Padding(0, 0), "input": Padding(0, 0)}
    for layer, mats in layers.items():
        knobs = default_knobs(target).updated(
            {"lanes": choice["lanes"][layer], "panel_order": choice["panel_order"]}
        )
        for name, pad in layer_padding(mats, knobs).items():
            total["recurrent" if name.startswith("weight_hh") else "input"] += pad
    total["all"] = total["recurrent"] + total["input"]
    return {k: round(v.ratio, 3) for k, v in total.items()}


def time_choices(pmodel, kwargs, cases: list[dict], args) -> None:
    """Compile every case, check it against torch, and time them in interleaved rounds."""
    import tvm_bsp
    from tvm_bsp.experiments.bench.gru_timers import check, time_tvm

    built = []
    for case in cases:
        tuned = {f"weight_hh_l{k}": {"lanes": p} for k, p in case["lanes"].items()}
        knobs = {"threads": args.threads, "panel_order": case["panel_order"]}
        cm = tvm_bsp.compile_model(pmodel, tuned=tuned, knobs=knobs, **kwargs)
        case["max_abs_error"] = check(cm, pmodel, args.frames)
        if case["max_abs_error"] > 1e-4:
            raise RuntimeError(f"{case['label']}: differs from torch by {case['max_abs_error']}")
        built.append(cm)
    samples = [{"stream": [], "utterance": []} for _ in cases]
    for _ in range(args.rounds):
        for cm, sample in zip(built, samples, strict=True):
            for mode, us in time_tvm(cm, pmodel, args.frames, args.repeat, args.threads).items():
                sample[mode].append(us)
    for case, sample in zip(cases, samples, strict=True):
        for mode, values in sample.items():
            case[f"{mode}_us"] = round(statistics.median(values), 2)
            case[f"{mode}_min_us"] = round(min(values), 2)


def main(argv: list[str] | None = None) -> int:
    """Print the padding table (and times); write ``--json`` atomically."""
    from tvm_bsp.bspc import atomic_write
    from tvm_bsp.experiments.bench.gru import RATES, reference_gru
    from tvm_bsp.kernels.rnn_knobs import PANEL_ORDERS
    from tvm_bsp.kernels.targets import host_target

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rates", default=",".join(str(r) for r in RATES if r != 1))
    parser.add_argument("--orders", default=",".join(reversed(PANEL_ORDERS)))
    parser.add_argument("--lanes", default="", help="comma list of fixed panel heights to add")
    parser.add_argument("--time", action="store_true", help="compile and time every choice")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    try:
        rates = [int(r) for r in args.rates.split(",")]
        fixed = [int(p) for p in args.lanes.split(",") if p]
    except ValueError:
        parser.error("--rates and --lanes take comma lists of integers")
    if bad := [r for r in rates if r not in RATES or r == 1]:
        parser.error(f"--rates {bad}: BSPC rates are {[r for r in RATES if r != 1]}")
    orders = args.orders.split(",")
    if bad := [o for o in orders if o not in PANEL_ORDERS]:
        parser.error(f"--orders {bad}: orders are {list(PANEL_ORDERS)}")
    target = host_target()
    model = reference_gru()
    records = []
    for rate in rates:
        pmodel, kwargs, layers = layer_matrices(rate, model)
        cases = choices(layers, orders, fixed, target)
        for case in cases:
            case.update(
                rate=rate, **{f"ratio_{k}": v for k, v in padding_of(layers, case, target).items()}
            )
        if args.time:
            time_choices(pmodel, kwargs, cases, args)
        for case in cases:
            case["lanes"] = [case["lanes"][k] for k in sorted(case["lanes"])]
            records.append(case)
            print(_row(case), flush=True)
    if args.json:
        meta = {
            "model": "gru-2x1024-in39",
            "target": str(target),
            "threads": args.threads,
            "frames": args.frames,
            "note": "ratio = multiply-adds per frame / stored values (k_split padding included)",
        }
        text = json.dumps({"meta": meta, "records": records}, indent=1) + "\n"
        atomic_write(args.json, lambda f: f.write(text.encode()))
    return 0


def _row(case: dict) -> str:
    times = ""
    if "stream_us" in case:
        times = (
            f"  stream {case['stream_us']:7.2f} (min {case['stream_min_us']:6.2f}) us"
            f"  utterance {case['utterance_us']:6.2f} (min {case['utterance_min_us']:6.2f}) us"
        )
        times += f"  err {case['max_abs_error']:.1e}"
    return (
        f"rate {case['rate']:>3}  {case['label']:<18} lanes {case['lanes']!s:<8}"
        f" MAC/nnz recurrent {case['ratio_recurrent']:.2f} input {case['ratio_input']:.2f}"
        f" all {case['ratio_all']:.2f}{times}"
    )


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
