"""The demo's TVM half: compile dense and BSPC, run them over RPC, measure PER and latency.

Each build is compiled with :func:`tvm_bsp.compile_model`, exported as a ``.so``, uploaded to
an RPC server (a host ``tvm.exec.rpc_server`` on 127.0.0.1, or one in the emulated aarch64
root under qemu) and run there through :class:`~tvm_bsp.deploy.remote.RemoteSession`:

- PER: the test split's features go through the remote ``forward`` (utterances padded into
  one time-major batch; a GRU's outputs at frame ``t`` do not depend on later frames, so the
  padding changes nothing), and the scores are decoded and scored on this side;
- latency: the remote ``step`` with batch 1 (one streaming frame, state in and out), timed on
  the device by ``time_evaluator``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

Log = Callable[[str], Any]

EMULATED_UTTERANCES = 20
"""Test utterances scored on an emulated device (qemu): the outputs prove the build runs and
decodes the same there; the full split is scored on the host."""


@dataclass
class BuildResult:
    """One compiled model measured on one device (a JSON record of ``--json``)."""

    build: str
    target: str
    per: float
    us_per_frame: float
    rate: float
    threads: int
    emulated: bool
    compile_s: float
    so_bytes: int
    test_utterances: int
    test_frames: int
    rtf: float
    library: str = ""


def pad_batch(utts: Sequence[Any]) -> tuple[np.ndarray, list[int]]:
    """Stack utterances' features into a zero-padded ``(T_max, B, D)`` batch."""
    lengths = [len(u.features) for u in utts]
    dim = int(utts[0].features.shape[1])
    x = np.zeros((max(lengths), len(utts), dim), np.float32)
    for b, u in enumerate(utts):
        x[: lengths[b], b] = u.features
    return x, lengths


def per_from_scores(
    scores: np.ndarray, lengths: Sequence[int], utts: Sequence[Any], smooth: int, min_run: int
) -> float:
    """PER (percent) of time-major scores ``(T, B, C)`` against the utterances' phones."""
    from tvm_bsp.speech.per import phone_error_rate
    from tvm_bsp.speech.phones import phone_ids
    from tvm_bsp.speech.train import smoothed_framewise_decode

    hyps = [
        smoothed_framewise_decode(scores[: lengths[b], b], smooth, min_run)
        for b in range(len(utts))
    ]
    refs = [phone_ids(list(u.phones)) for u in utts]
    return 100.0 * phone_error_rate(refs, hyps)


def compile_and_export(
    model: Any,
    bspc_dir: Path | None,
    target: str,
    out: Path,
    log: Log,
    labels: dict[str, Any] | None = None,
) -> tuple[Path, float]:
    """Compile ``model`` (BSPC weights from ``bspc_dir``, dense if ``None``); export ``out``.

    ``labels`` (a :func:`tvm_bsp.runtime.labels.make_labels` record) goes into the library's
    meta and its sidecar ``out.json``, so that ``tvm-bsp deploy out --wav F`` runs it.
    """
    import tvm_bsp

    log(f"compiling {out.name} ...")
    t0 = time.perf_counter()
    compiled = tvm_bsp.compile_model(
        model,
        target=target,
        bspc=None if bspc_dir is None else bspc_dir,
        extra_meta=None if labels is None else {"labels": labels},
    )
    if bspc_dir is not None and not compiled.meta["sparse"]:
        raise ValueError(f"no BSPC weights were compiled from {bspc_dir}")
    path = compiled.export(out)
    if labels is not None:
        from tvm_bsp.runtime.labels import write_labels

        write_labels(path, {**labels, "sparse": list(compiled.meta.get("sparse", []))})
    seconds = time.perf_counter() - t0
    log(f"compiled {out.name} in {seconds:.1f} s ({path.stat().st_size / 1024:.0f} KiB)")
    return path, seconds


def measure_remote(
    library: Path,
    endpoint: tuple[str, int, str],
    utts: Sequence[Any],
    *,
    smooth: int,
    min_run: int,
    threads: int,
    timing: dict[str, int],
) -> tuple[float, float, np.ndarray]:
    """Run ``library`` on the RPC device: ``(PER %, us per frame, scores)``."""
    from tvm_bsp.deploy.remote import remote_session

    host, port, key = endpoint
    x, lengths = pad_batch(utts)
    with remote_session(library, tracker=(host, port), key=key, threads=threads) as session:
        scores, _ = session.forward(x)
        per = per_from_scores(scores, lengths, utts, smooth, min_run)
        us = session.time_step(batch=1, **timing)
    return per, us, scores


def run_builds(
    target: str,
    endpoint: tuple[str, int, str],
    builds: dict[str, tuple[Any, Path | None]],
    utts: Sequence[Any],
    out_dir: Path,
    *,
    smooth: int,
    min_run: int,
    rate: float,
    emulated: bool,
    log: Log,
    labels: dict[str, Any] | None = None,
) -> list[BuildResult]:
    """Compile, export and measure every ``{name: (model, bspc_dir)}`` build for ``target``.

    ``labels``: the sidecar record of the libraries (see :func:`compile_and_export`).
    """
    threads = max(1, min(2, os.cpu_count() or 1))
    # qemu runs ~10-50x slower: fewer timed calls there
    timing = (
        {"number": 3, "repeat": 3, "min_repeat_ms": 0}
        if emulated
        else {"number": 20, "repeat": 5, "min_repeat_ms": 50}
    )
    if emulated:  # qemu runs the code 10-50x slower: score the first utterances only
        utts = utts[:EMULATED_UTTERANCES]
    frames = sum(len(u.features) for u in utts)
    results = []
    for name, (model, bspc_dir) in builds.items():
        record = None if labels is None else {**labels, "target": target}
        lib, compile_s = compile_and_export(
            model, bspc_dir, target, out_dir / f"{name}-{target}.so", log, record
        )
        where = " under qemu (emulated: minutes)" if emulated else ""
        log(f"running {name} on {target}{where}: PER over {len(utts)} utterances, then latency")
        t0 = time.perf_counter()
        per, us, _ = measure_remote(
            lib, endpoint, utts, smooth=smooth, min_run=min_run, threads=threads, timing=timing
        )
        log(
            f"{name} on {target}{' (qemu)' if emulated else ''}: PER {per:.2f}%, "
            f"{us:.1f} us/frame ({time.perf_counter() - t0:.1f} s over RPC)"
        )
        results.append(
            BuildResult(
                build=name,
                target=target,
                per=round(per, 4),
                us_per_frame=round(us, 3),
                rate=1.0 if bspc_dir is None else round(rate, 3),
                threads=threads,
                emulated=emulated,
                compile_s=round(compile_s, 2),
                so_bytes=lib.stat().st_size,
                test_utterances=len(utts),
                test_frames=frames,
                rtf=round(us / 10_000.0, 5),  # 10 ms frame shift
                library=str(lib),
            )
        )
    return results
