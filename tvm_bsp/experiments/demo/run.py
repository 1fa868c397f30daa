"""``tvm-bsp demo``: the driver (corpus -> GRU -> BSP -> TVM builds over RPC -> report).

The parser and its handler are :mod:`tvm_bsp.cli.demo`; :func:`run_full` returns the exit
code (0 success, arm64 skipped with a note when the emulator is not set up).
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path
from typing import Any


def _log(line: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {line}", file=sys.stderr, flush=True)


def run_full(args: argparse.Namespace) -> int:
    """The whole demo (module docstring); returns the exit code."""
    from dataclasses import replace

    import torch

    from tvm_bsp.experiments.demo.builds import EMULATED_UTTERANCES
    from tvm_bsp.experiments.demo.models import dense_model, dense_path, load_corpus, pruned_model
    from tvm_bsp.experiments.demo.report import (
        QEMU_NOTE,
        format_next_steps,
        format_results,
        write_json,
        write_plot,
    )
    from tvm_bsp.experiments.demo.settings import DemoSettings, quick_settings
    from tvm_bsp.experiments.demo.sizes import format_size_table, size_table
    from tvm_bsp.speech.train import evaluate_per

    t_start = time.perf_counter()
    settings = quick_settings() if args.quick else DemoSettings()
    if args.rate is not None:
        settings = replace(settings, rate=args.rate)
    if args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    work: Path = args.work.absolute()
    work.mkdir(parents=True, exist_ok=True)
    progress = not args.no_progress

    from tvm_bsp.experiments.demo.shipped import shipped_available, shipped_models

    why_not = "--quick" if args.quick else "--from-scratch" if args.from_scratch else None
    why_not = why_not or shipped_available(settings.rate)
    if why_not is None:
        shipped = shipped_models(work, settings.rate, settings.sizes[2], progress, _log)
        dense, pruned, bspc_dir = shipped.dense, shipped.pruned, shipped.bspc_dir
        achieved, test, dense_file = shipped.achieved, shipped.test, shipped.dense_path
        pruned_file = shipped.pruned_path
        settings = replace(
            settings,
            hidden=dense.config.hidden,
            layers=dense.config.layers,
            smooth=shipped.decode["smooth"],
            min_run=shipped.decode["min_run"],
        )
    else:
        _log(f"training the demo's own models ({why_not})")
        data = load_corpus(work, settings, progress, _log)
        dense = dense_model(work, settings, data, progress, _log)
        pruned, bspc_dir, achieved = pruned_model(work, settings, dense, data, progress, _log)
        test, dense_file = data["test"], dense_path(work, settings)
        pruned_file = bspc_dir.parent / "model.pt"
    decode = {"smooth": settings.smooth, "min_run": settings.min_run}
    torch_per = {"dense": evaluate_per(dense, test, **decode)}
    torch_per["bspc"] = evaluate_per(pruned, test, **decode)
    _log(
        f"torch PER on the test split: dense {torch_per['dense']:.2f}%, "
        f"BSP {achieved:.1f}x {torch_per['bspc']:.2f}%"
    )

    builds = {"dense": (dense, None), "bspc": (pruned, bspc_dir)}
    targets = [("host", False)]
    note = None
    if args.no_arm64:
        note = "arm64 builds skipped (--no-arm64)"
    else:
        from tvm_bsp.devices.aarch64 import arm64_unavailable_reason, binfmt_registered

        reason = arm64_unavailable_reason()
        if reason is None and not binfmt_registered():
            reason = "the RPC server under qemu needs qemu-aarch64 registered with binfmt_misc"
        if reason is None:
            targets.append(("arm64", True))
        else:
            note = f"arm64 builds skipped: {reason}"
    if note:
        _log(note)
    results = _measure(targets, builds, test, work, settings, achieved, _labels(settings))

    print(f"\n## tvm-bsp demo: {settings.layers}x{settings.hidden} GRU, BSP {achieved:.1f}x")
    print(
        f"test split: {len(test)} utterances (held-out voices and words; an emulated device "
        f"scores the first {EMULATED_UTTERANCES}); PER through the compiled modules over RPC; "
        "latency = one streaming frame (step, batch 1) timed on the device\n"
    )
    print(format_results(results))
    print(
        f"\n(torch on the same split: dense {torch_per['dense']:.2f}%, "
        f"BSP {torch_per['bspc']:.2f}%)"
    )
    if any(r.emulated for r in results):
        print(f"\nNote: {QEMU_NOTE}")
    if note:
        print(f"\nNote: {note}")
    rates = args.rates or [10, 80, 301]
    print(f"\n## BSPC storage: RTMobile's reference GRU (2x1024, input 39) at {rates}\n")
    print(format_size_table(size_table(rates, args.seed)))

    print()
    print(format_next_steps(dense_file, pruned_file, bspc_dir, results))

    plot = args.plot or work / "demo.png"
    plot.parent.mkdir(parents=True, exist_ok=True)
    write_plot(plot, results)
    _log(f"wrote {plot}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        write_json(args.json, results)
        _log(f"wrote {args.json}")
    _log(f"done in {time.perf_counter() - t_start:.0f} s")
    return 0


def _labels(settings: Any) -> dict[str, Any]:
    """The sidecar record of the demo's libraries: 39 phones, its framewise decoding."""
    from tvm_bsp.runtime.labels import make_labels
    from tvm_bsp.speech.phones import PHONES_39

    decode = {"smooth": settings.smooth, "min_run": settings.min_run}
    return make_labels(list(PHONES_39), "framewise", decode, source="tvm-bsp demo")


def _measure(
    targets, builds, test, work: Path, settings, achieved: float, labels: dict[str, Any]
) -> list:
    from tvm_bsp.devices.rpc import local_rpc
    from tvm_bsp.experiments.demo.builds import run_builds

    results = []
    out_dir = work / "builds"
    out_dir.mkdir(parents=True, exist_ok=True)
    for target, emulated in targets:
        key = f"demo-{target}-{uuid.uuid4().hex[:8]}"
        where = "in the aarch64 root under qemu" if emulated else "on 127.0.0.1"
        _log(f"starting an RPC tracker + server {where} (key {key}) ...")
        t0 = time.perf_counter()
        with local_rpc(key, arm64=emulated) as endpoint:
            _log(f"RPC server {key} ready after {time.perf_counter() - t0:.0f} s")
            results += run_builds(
                target,
                tuple(endpoint),
                builds,
                test,
                out_dir,
                smooth=settings.smooth,
                min_run=settings.min_run,
                rate=achieved,
                emulated=emulated,
                log=_log,
                labels=labels,
            )
    return results
