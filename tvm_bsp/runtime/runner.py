"""Run an exported model on features with the TVM runtime only; print phones and latency.

::

    python -m tvm_bsp.runtime.runner model.so --features feats.npy   # (T, 39) .npy or .npz
    python -m tvm_bsp.runtime.runner model.so --stream < frames.txt  # one frame per line
    python -m tvm_bsp.runtime.runner model.so --features feats.npy --utterance

Frames are pushed one at a time through :meth:`Session.push` (the state is kept between
frames) and each push is timed; ``--utterance`` calls ``forward`` once on all frames instead.
The scores are decoded with the rule of the sidecar ``model.so.json``
(:mod:`tvm_bsp.runtime.labels`; phone names, smoothing) and the runner prints::

    phones: sil hh ah l ow sil
    frames: 120, per-frame latency: median 0.210 ms, p90 0.260 ms, mean 0.220 ms
    real-time factor: 0.0220 (10 ms frame shift)

This module imports numpy and the TVM runtime, never torch or the compiler (set
``TVM_USE_RUNTIME_LIB=1`` on a device that has only the runtime). Exit codes: 0 success,
1 bad input (message on stderr), 2 bad usage.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from tvm_bsp.runtime.decode import decode_scores
from tvm_bsp.runtime.labels import FRAME_SHIFT_MS, check_labels, read_labels

__all__ = [
    "RunResult",
    "build_parser",
    "check_features",
    "load_features",
    "main",
    "read_stream",
    "run",
    "run_stream",
    "run_utterance",
]


@dataclass(frozen=True)
class RunResult:
    """What one run measured.

    Attributes
    ----------
    phones : list of str
        The decoded label sequence.
    frames : int
    mode : str
        ``"stream"`` (one push per frame) or ``"utterance"`` (one forward call).
    median_ms, p90_ms, mean_ms : float
        Per-frame latency (``utterance``: the call's time divided by the frames).
    rtf : float
        Real-time factor: compute time over audio time (``frames x frame shift``).
    """

    phones: list[str]
    frames: int
    mode: str
    median_ms: float
    p90_ms: float
    mean_ms: float
    rtf: float

    def report(self) -> str:
        """The lines the runner prints."""
        return (
            f"phones: {' '.join(self.phones)}\n"
            f"frames: {self.frames} ({self.mode}), per-frame latency: median "
            f"{self.median_ms:.3f} ms, p90 {self.p90_ms:.3f} ms, mean {self.mean_ms:.3f} ms\n"
            f"real-time factor: {self.rtf:.4f} ({FRAME_SHIFT_MS:g} ms frame shift)"
        )


def load_features(path: str | os.PathLike[str], width: int) -> np.ndarray:
    """Read ``(T, width)`` float32 features from ``.npy`` or ``.npz`` (no pickles).

    An ``.npz`` must hold one array, or one named ``features``.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not a numpy array file or the array is not ``(T >= 1, width)`` finite.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no feature file at {path}")
    try:
        data = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise ValueError(f"{path} is not a .npy/.npz array file: {err}") from None
    if isinstance(data, np.lib.npyio.NpzFile):
        with data:
            names = list(data.files)
            if "features" in names:
                names = ["features"]
            if len(names) != 1:
                raise ValueError(f"{path} holds arrays {names}; name one 'features'")
            data = data[names[0]]
    return check_features(np.asarray(data), width, str(path))


def check_features(x: np.ndarray, width: int, what: str = "features") -> np.ndarray:
    """Check a ``(T, width)`` feature matrix and return it as contiguous float32.

    float32 and float64 are accepted (float64 is rounded to float32), other dtypes, NaN and
    infinities are refused: a feature file with them is broken (the session API itself lets
    NaN propagate, see :mod:`tvm_bsp.runtime.session`).
    """
    if x.ndim != 2 or x.shape[1] != width or x.shape[0] < 1:
        raise ValueError(f"{what}: expected (frames, {width}) features, got shape {x.shape}")
    if x.dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"{what}: expected float32 or float64 features, got dtype {x.dtype}")
    x = np.ascontiguousarray(x, np.float32)
    if not np.isfinite(x).all():
        raise ValueError(f"{what}: features contain NaN or infinity")
    return x


def read_stream(lines: Iterable[str], width: int) -> Iterator[np.ndarray]:
    """Yield one ``(width,)`` float32 frame per non-blank line of whitespace-separated floats.

    Raises
    ------
    ValueError
        Naming the line number of a line that is not ``width`` finite numbers.
    """
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            frame = np.array([float(v) for v in line.split()], np.float32)
        except ValueError:
            raise ValueError(f"stdin line {number}: not a list of numbers") from None
        if frame.shape != (width,) or not np.isfinite(frame).all():
            raise ValueError(
                f"stdin line {number}: expected {width} finite numbers, got {frame.size}"
            )
        yield frame


def _summary(phones: list[str], times_s: list[float], mode: str, frames: int) -> RunResult:
    t = np.asarray(times_s, np.float64) * 1e3
    audio_ms = frames * FRAME_SHIFT_MS
    return RunResult(
        phones=phones,
        frames=frames,
        mode=mode,
        median_ms=float(np.median(t)),
        p90_ms=float(np.percentile(t, 90)),
        mean_ms=float(t.mean()),
        rtf=float(t.sum() / audio_ms) if mode == "stream" else float(t.mean() * frames / audio_ms),
    )


def run_stream(session: Any, frames: Iterable[np.ndarray], labels: dict[str, Any]) -> RunResult:
    """Push frames one at a time (state kept), time each push, decode at the end.

    Parameters
    ----------
    session : Session
        A loaded module (:func:`tvm_bsp.runtime.load`).
    frames : iterable of numpy.ndarray
        ``(I,)`` frames, e.g. the rows of a feature matrix or :func:`read_stream`.
    labels : dict
        The sidecar record.

    Returns
    -------
    RunResult
    """
    session.reset()
    scores, times = [], []
    for frame in frames:
        x = frame.reshape(1, -1)
        t0 = time.perf_counter()
        y = session.push(x)
        times.append(time.perf_counter() - t0)
        scores.append(y[0])
    if not scores:
        raise ValueError("no frames to run")
    out = np.stack(scores)
    return _summary(decode_scores(out, labels), times, "stream", len(out))


def run_utterance(session: Any, feats: np.ndarray, labels: dict[str, Any]) -> RunResult:
    """Call ``forward`` once on all frames (batch 1) and decode; the time is per frame."""
    x = feats[None] if session.batch_first else feats[:, None]
    t0 = time.perf_counter()
    y, _ = session.forward(x)
    elapsed = time.perf_counter() - t0
    scores = y[0] if session.batch_first else y[:, 0]
    return _summary(decode_scores(scores, labels), [elapsed / len(feats)], "utterance", len(feats))


def build_parser() -> argparse.ArgumentParser:
    """The runner's argument parser."""
    p = argparse.ArgumentParser(
        prog="python -m tvm_bsp.runtime.runner",
        description="Run an exported tvm_bsp model (TVM runtime only) on speech features; "
        "print the decoded phones, per-frame latency and the real-time factor.",
    )
    p.add_argument("model", type=Path, help="the .so written by 'tvm-bsp compile' / deploy")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--features", type=Path, help="(T, I) float32 features, .npy or .npz")
    source.add_argument(
        "--stream", action="store_true", help="read frames from stdin, one line per frame"
    )
    p.add_argument(
        "--utterance", action="store_true", help="one forward call instead of frame by frame"
    )
    p.add_argument("--labels", type=Path, help="sidecar JSON (default: MODEL.json next to it)")
    p.add_argument("--threads", type=int, help="TVM CPU threads (default: the module's)")
    p.add_argument(
        "--device",
        default="cpu",
        help="TVM device: cpu (default), or opencl for an opencl-mali/-adreno build",
    )
    p.add_argument("--json", type=Path, help="also write the result as JSON here")
    return p


def run(args: argparse.Namespace, stdin: TextIO | None = None) -> RunResult:
    """Run the runner with parsed arguments (see :func:`build_parser`)."""
    from tvm_bsp.runtime.load import load

    if args.utterance and args.stream:
        raise ValueError("--utterance needs --features (a stream has no end to wait for)")
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    if not args.model.is_file():
        raise FileNotFoundError(f"no compiled module at {args.model}")
    session = load(args.model, device=args.device, threads=args.threads)
    width, classes = int(session.meta["input_size"]), int(session.meta["output_size"])
    embedded = session.meta.get("labels")
    if args.labels is None and isinstance(embedded, dict):
        labels = check_labels(embedded, classes, f"meta() of {args.model}")
    else:
        labels = read_labels(args.labels or args.model, classes)
    if not args.utterance and not session.streamable:
        raise ValueError(
            f"{args.model} cannot stream (a backward direction needs the whole utterance): "
            "run it with --features and --utterance"
        )
    if args.stream:
        return run_stream(session, read_stream(stdin or sys.stdin, width), labels)
    feats = load_features(args.features, width)
    if args.utterance:
        return run_utterance(session, feats, labels)
    return run_stream(session, feats, labels)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (0, 1 bad input, 2 bad usage)."""
    args = build_parser().parse_args(argv)
    try:
        result = run(args)
        if args.json is not None:
            from tvm_bsp.runtime.labels import write_json

            write_json(args.json, asdict(result))
    except (ValueError, OSError) as err:
        print(f"runner: error: {err}", file=sys.stderr)
        return 1
    print(result.report())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
