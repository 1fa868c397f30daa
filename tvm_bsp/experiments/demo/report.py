"""The demo's output: the PER / latency table, the JSON records and the plot."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from tvm_bsp.bspc import atomic_write
from tvm_bsp.experiments.demo.builds import BuildResult

QEMU_NOTE = (
    "arm64 runs under qemu-user emulation on this machine: its latency shows that the "
    "cross-compiled .so works, it is NOT phone latency (emulation is ~10-50x slower and "
    "distorts dense vs sparse ratios)."
)


def format_results(results: Sequence[BuildResult], torch_per: float | None = None) -> str:
    """Markdown table: PER and per-frame latency, dense vs BSPC side by side, per target."""
    lines = [
        "| target | build | compression | PER % | us / frame | real-time factor | speedup |",
        "|---|---|---|---|---|---|---|",
    ]
    dense_us = {r.target: r.us_per_frame for r in results if r.build == "dense"}
    for r in results:
        speedup = dense_us.get(r.target, float("nan")) / r.us_per_frame
        target = f"{r.target} (qemu)" if r.emulated else r.target
        lines.append(
            f"| {target} | {r.build} | {r.rate:g}x | {r.per:.2f} | {r.us_per_frame:.1f} "
            f"| {r.rtf:.4f} | {speedup:.2f} |"
        )
    if torch_per is not None:
        lines.append(f"\n(dense torch model on the same split: PER {torch_per:.2f}%)")
    return "\n".join(lines)


def write_json(path: Path, results: Sequence[BuildResult]) -> None:
    """Write one record per build, atomically."""
    data = json.dumps([asdict(r) for r in results], indent=1).encode()
    atomic_write(path, lambda f: f.write(data))


def write_plot(path: Path, results: Sequence[BuildResult]) -> None:
    """Bar charts of PER and per-frame latency for every build (matplotlib, Agg)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r.build}\n{r.target}{chr(10) + '(qemu)' if r.emulated else ''}" for r in results]
    colors = ["#777777" if r.build == "dense" else "#1f77b4" for r in results]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.bar(labels, [r.per for r in results], color=colors)
    ax1.set_ylabel("test PER %")
    ax1.set_title("PER through the compiled modules")
    ax2.bar(labels, [r.us_per_frame for r in results], color=colors)
    ax2.set_yscale("log")
    ax2.set_ylabel("us per streaming frame (batch 1)")
    ax2.set_title("latency (qemu: emulated, not phone latency)")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write(path, lambda f: f.write(buf.getvalue()))


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it is below it (shorter commands)."""
    path = Path(path).absolute()
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def format_next_steps(
    dense_model: Path, pruned: Path, bspc_dir: Path, results: Sequence[BuildResult]
) -> str:
    """Where the demo's models and libraries are, and the commands that use them next.

    Parameters
    ----------
    dense_model : pathlib.Path
        The dense model file (``.pt`` with its ``.json`` beside it, or a shipped
        ``.safetensors``).
    pruned : pathlib.Path
        The pruned model file.
    bspc_dir : pathlib.Path
        Its BSPC export.
    results : sequence of BuildResult
        The measured builds (their ``library`` paths).

    Returns
    -------
    str
        A Markdown section.
    """
    lines = [
        "## Files written",
        "",
        f"- dense model: {_shown(dense_model)}",
        f"- BSP-pruned model: {_shown(pruned)} (BSPC weights in {_shown(bspc_dir)})",
    ]
    libs = [r for r in results if r.library]
    for r in libs:
        lines.append(f"- {r.build} {r.target} library: {_shown(Path(r.library))} (+ .json sidecar)")
    lines += ["", "## Next: run a model on your own audio", ""]
    lines.append(
        "Any 16-bit PCM WAV works (other rates than 16 kHz are resampled), e.g. "
        '`espeak-ng -w hello.wav "hello world"`:'
    )
    lines.append("")
    best = next((r for r in libs if r.build == "bspc" and r.target == "host"), None)
    if best is not None:
        lines.append(
            f"    tvm-bsp deploy {_shown(Path(best.library))} --target host "
            "--out deploy-host --wav hello.wav"
        )
    arm = next((r for r in libs if r.build == "bspc" and r.target == "arm64"), None)
    if arm is not None:
        lines.append(
            f"    tvm-bsp deploy {_shown(Path(arm.library))} --target arm64 "
            "--out deploy-arm64 --wav hello.wav"
        )
    lines.append(
        f"    tvm-bsp deploy {_shown(pruned)} --target arm64 --out deploy-arm64 --wav hello.wav"
        "   # compile the model for a device"
    )
    lines.append(
        f"    tvm-bsp tune {_shown(pruned)} --db tuned   # tune its kernels on this machine"
    )
    return "\n".join(lines)
