#!/usr/bin/env python
"""PER of the shipped Table I models with int8 BSPC weights and int8 activations.

For the dense model and the shipped BSP rows (default 10x and 80x), it scores the test split
(the first ``--utterances`` test utterances of the shipped models' corpus, regenerated with
their corpus seed) with

- ``fp32``: the shipped model as it is (torch's GRU);
- ``fp32 loop``: the step-by-step GRU below with nothing quantized (shows the loop itself
  changes nothing);
- ``int8 weights``: the GRU's four weight matrices replaced by their int8 BSPC dequantized
  values, activations in float32;
- ``int8``: int8 weights and int8 activations, as an int8 BSPC kernel computes them;
- ``int8 block_row``: the same with one scale per kept block row instead of the
  ``--granularity`` choice (the measurement behind ``"auto"``'s rule).

What is simulated (in torch, float32): each GRU weight matrix ``W`` (``weight_ih_l*``,
``weight_hh_l*``; BSP ones in their BSPC block grid, dense ones as one block, i.e. per-row
scales of the dense matrix) is quantized by :func:`tvm_bsp.bspc.quantize_bspc` and replaced by
``s_w * q_w``. At every matrix product's input the activations are replaced by ``s_x * q_x``
with the rules of :mod:`tvm_bsp.bspc.quant_ops`: the layer input (features, or the layer
below's output) with a dynamic max-abs scale per frame, the state ``h`` with the fixed scale
``1 / 127``. The product ``(s_x q_x) @ (s_w q_w)^T`` in float32 equals the int32-accumulated
``s_w s_x (q_w @ q_x)`` of the kernel up to float32 rounding (checked against the numpy
reference in ``tests/test_int8_accuracy.py``). Biases, the gate math (sigmoid, tanh, the state
update) and the linear head stay float32, as in the planned kernels.

Usage::

    nice -n 19 python scripts/int8_accuracy.py [--utterances 400] [--rates 10,80]
        [--granularity auto] [--json results/int8_accuracy.json]
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tvm_bsp.bspc import BSPCMatrix, QuantizedBSPC, atomic_write, quantize_bspc
from tvm_bsp.bspc.quant import QMAX, relative_error
from tvm_bsp.bspc.quant_ops import AMAX_FLOOR, STATE_SCALE

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_JSON = ROOT / "results" / "int8_accuracy.json"
VARIANTS = ("fp32", "fp32_loop", "int8_weights", "int8", "int8_block_row")
_STATE_SCALE = float(STATE_SCALE)  # exact in float64: the same float32 in torch


def shipped_folder() -> Path:
    """The shipped Table I models (``tvm_bsp/pretrained/table1``)."""
    from tvm_bsp.experiments.table1.ship import shipped_dir

    return shipped_dir()


# ---------------------------------------------------------------------- activations (torch)
def fake_quant_input(x: torch.Tensor) -> torch.Tensor:
    """``s_x * q_x`` with a dynamic max-abs scale per frame (over the last axis)."""
    amax = x.abs().amax(dim=-1, keepdim=True)
    live = amax >= AMAX_FLOOR
    safe = torch.where(live, amax, torch.ones_like(amax))
    inv = torch.where(live, QMAX / safe, torch.zeros_like(amax))
    scale = torch.where(live, safe / QMAX, torch.ones_like(amax))
    return torch.round(x * inv).clamp_(-QMAX, QMAX) * scale


def fake_quant_state(h: torch.Tensor) -> torch.Tensor:
    """``s_h * q_h`` with the fixed state scale ``1 / 127``."""
    return torch.round(h * QMAX).clamp_(-QMAX, QMAX) * _STATE_SCALE


# ---------------------------------------------------------------------- weights
def gru_matrices(model: nn.Module, masks: dict, info: dict) -> dict[str, BSPCMatrix]:
    """The GRU weight matrices as BSPC: BSP ones in their grid, dense ones as a single block."""
    specs = info.get("row", {}).get("specs", {})
    out = {}
    for name, param in model.named_parameters():
        if not name.startswith("rnn.weight_"):
            continue
        w = param.detach().numpy()
        if name in masks:
            grid = (specs[name]["row_blocks"], specs[name]["col_blocks"])
            out[name] = BSPCMatrix.from_dense(w, masks[name].numpy(), *grid)
        else:
            out[name] = BSPCMatrix.from_dense(w, np.ones(w.shape, bool), 1, 1)
    return out


def quantize_matrices(
    matrices: dict[str, BSPCMatrix], granularity: str
) -> dict[str, QuantizedBSPC]:
    """Every matrix quantized with :func:`tvm_bsp.bspc.quantize_bspc`."""
    return {name: quantize_bspc(m, granularity) for name, m in matrices.items()}


# ---------------------------------------------------------------------- the simulated GRU
class SimulatedGRU(nn.Module):
    """A GRU acoustic model run step by step with optional int8 weights and activations.

    Parameters
    ----------
    model : AcousticModel
        A shipped model (``cell="gru"``); its biases and head are used as they are.
    weights : dict, optional
        ``{"rnn.weight_ih_l0": QuantizedBSPC, ...}``: replace those matrices by their
        dequantized values (``None``: the model's float32 weights).
    activations : bool
        Quantize the inputs of every matrix product (module docstring).
    """

    def __init__(
        self,
        model: nn.Module,
        weights: dict[str, QuantizedBSPC] | None = None,
        activations: bool = False,
    ) -> None:
        super().__init__()
        if model.config.cell != "gru":
            raise ValueError(f"only torch GRU models are simulated, got {model.config.cell!r}")
        self.config = model.config
        self.head = model.head
        self.activations = activations
        params = {n: p.detach() for n, p in model.named_parameters()}
        self.layers = []
        for k in range(model.config.layers):
            mats = {}
            for kind in ("ih", "hh"):
                name = f"rnn.weight_{kind}_l{k}"
                if weights is not None and name in weights:
                    mats[kind] = torch.from_numpy(weights[name].to_dense())
                else:
                    mats[kind] = params[name]
            bias = (params[f"rnn.bias_ih_l{k}"], params[f"rnn.bias_hh_l{k}"])
            self.layers.append((mats["ih"], mats["hh"], *bias))

    def input_projection(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        """``W_ih x + b_ih`` for frames ``x`` (..., input)."""
        w_ih, _, b_ih, _ = self.layers[layer]
        if self.activations:
            x = fake_quant_input(x)
        return x @ w_ih.T + b_ih

    def recurrent_projection(self, layer: int, h: torch.Tensor) -> torch.Tensor:
        """``W_hh h + b_hh`` for states ``h`` (B, hidden)."""
        _, w_hh, _, b_hh = self.layers[layer]
        if self.activations:
            h = fake_quant_state(h)
        return h @ w_hh.T + b_hh

    @staticmethod
    def cell(gi: torch.Tensor, gh: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """torch's GRU update from the two projections (gates in r, z, n order)."""
        i_r, i_z, i_n = gi.chunk(3, dim=-1)
        h_r, h_z, h_n = gh.chunk(3, dim=-1)
        r = torch.sigmoid(i_r + h_r)
        z = torch.sigmoid(i_z + h_z)
        n = torch.tanh(i_n + r * h_n)
        return (1 - z) * n + z * h

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scores ``(T, B, classes)`` for features ``(T, B, input)``."""
        for layer in range(len(self.layers)):
            gi = self.input_projection(layer, x)  # every frame at once: no recurrence
            h = x.new_zeros(x.shape[1], self.config.hidden)
            outs = []
            for t in range(x.shape[0]):
                h = self.cell(gi[t], self.recurrent_projection(layer, h), h)
                outs.append(h)
            x = torch.stack(outs)
        return self.head(x)


# ---------------------------------------------------------------------- evaluation
def test_utterances(n: int, seed: int, corpus_dir: Path) -> list:
    """The first ``n`` test utterances of the shipped models' corpus (generated if needed)."""
    from tvm_bsp.speech.corpus import generate_corpus, load_split

    root = corpus_dir / f"test-seed{seed}-n{n}"
    generate_corpus(root, 0, 0, n, seed=seed, progress=False)
    return load_split(root, "test")


def evaluate_model(
    name: str, utts: list, granularity: str = "auto", variants: tuple[str, ...] = VARIANTS
) -> dict[str, Any]:
    """PER of one shipped model under each variant (module docstring) and its weight stats."""
    from tvm_bsp.speech.pretrained import load_pretrained
    from tvm_bsp.speech.train import evaluate_per

    model, masks, info = load_pretrained(shipped_folder() / f"{name}.safetensors")
    model.eval()
    decode = info["decode"]
    matrices = gru_matrices(model, masks, info)
    quantized = quantize_matrices(matrices, granularity)
    runs = {
        "fp32": lambda: model,
        "fp32_loop": lambda: SimulatedGRU(model),
        "int8_weights": lambda: SimulatedGRU(model, quantized),
        "int8": lambda: SimulatedGRU(model, quantized, activations=True),
        "int8_block_row": lambda: SimulatedGRU(
            model, quantize_matrices(matrices, "block_row"), activations=True
        ),
    }
    row = info.get("row")
    record: dict[str, Any] = {
        "model": name,
        "rate": row["rate"] if row else 1,
        # the PER Table I recorded on the whole test split (the fp32 column reproduces it
        # when all of the split's utterances are scored)
        "table1_test_per": (row or info["eval"])["per"]["test"],
    }
    for variant in variants:
        start = time.perf_counter()
        record[f"{variant}_per"] = evaluate_per(runs[variant](), utts, **decode)
        record[f"{variant}_seconds"] = round(time.perf_counter() - start, 1)
    if "fp32" in variants and "int8" in variants:
        record["difference"] = record["int8_per"] - record["fp32_per"]
    record["matrices"] = {
        n: {
            "granularity": quantized[n].granularity,
            "relative_error": relative_error(matrices[n], quantized[n]),
            "fp32_bspc_bytes": matrices[n].nbytes,
            "int8_bspc_bytes": quantized[n].nbytes,
        }
        for n in matrices
    }
    record["fp32_bspc_bytes"] = sum(m.nbytes for m in matrices.values())
    record["int8_bspc_bytes"] = sum(q.nbytes for q in quantized.values())
    return record


def format_table(records: list[dict[str, Any]]) -> str:
    """Markdown table of the records."""
    lines = [
        "| model | rate | fp32 PER | fp32 loop PER | int8 weights PER | int8 PER | int8 - fp32 "
        "| int8 block_row PER | GRU weights fp32 BSPC KiB | int8 BSPC KiB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        lines.append(
            f"| {r['model']} | {r['rate']:g} | {r['fp32_per']:.2f} | {r['fp32_loop_per']:.2f} "
            f"| {r['int8_weights_per']:.2f} | {r['int8_per']:.2f} | {r['difference']:+.2f} "
            f"| {r['int8_block_row_per']:.2f} | {r['fp32_bspc_bytes'] / 1024:.0f} "
            f"| {r['int8_bspc_bytes'] / 1024:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the measurement (module docstring); returns an exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--utterances", type=int, default=400, help="test utterances scored")
    parser.add_argument("--rates", default="10,80", help="shipped BSP rows (comma-separated)")
    parser.add_argument("--granularity", default="auto", choices=("auto", "row", "block_row"))
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    parser.add_argument("--corpus", type=Path, default=ROOT / ".cache" / "int8_accuracy")
    args = parser.parse_args(argv)
    if args.utterances < 1:
        parser.error("--utterances must be positive")
    try:
        rates = [int(r) for r in args.rates.split(",") if r]
    except ValueError:
        parser.error(f"--rates must be integers, got {args.rates!r}")
    names = ["dense", *(f"bsp-{r}" for r in rates)]
    missing = [n for n in names if not (shipped_folder() / f"{n}.safetensors").exists()]
    if missing:
        parser.error(f"no shipped model {missing} in {shipped_folder()}")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a shared machine: one core
    try:
        return _measure(args, names, argv)
    finally:
        torch.set_num_threads(threads)


def _measure(args: argparse.Namespace, names: list[str], argv: list[str] | None) -> int:
    from tvm_bsp.experiments.table1.ship import TEST_SLICE
    from tvm_bsp.speech.pretrained import read_meta

    info = read_meta(shipped_folder() / "dense.safetensors")["info"]
    seed = int(info["settings"]["corpus_seed"])
    start = time.perf_counter()
    utts = test_utterances(args.utterances, seed, args.corpus)
    recorded = info["test_slice"]["utterances"]
    shared = min(len(recorded), len(utts), TEST_SLICE)
    if [u.id for u in utts[:shared]] != recorded[:shared]:
        print(
            "error: the regenerated test split differs from the shipped test slice", file=sys.stderr
        )
        return 1
    records = []
    for name in names:
        records.append(evaluate_model(name, utts, args.granularity))
        print(f"{name}: done ({time.perf_counter() - start:.0f} s)", file=sys.stderr)
    result = {
        "command": shlex.join(
            ["python", "scripts/int8_accuracy.py", *(sys.argv[1:] if argv is None else argv)]
        ),
        "seed": seed,
        "utterances": len(utts),
        "frames": int(sum(len(u.features) for u in utts)),
        "phones": int(sum(len(u.phones) for u in utts)),  # reference phones: PER's denominator
        "test_split": int(info["settings"]["n_test"]),
        "granularity": args.granularity,
        "decode": info["decode"],
        "simulated": " ".join(__doc__.split("What is simulated ")[1].split("Usage::")[0].split()),
        "torch_threads": torch.get_num_threads(),
        "wall_seconds": round(time.perf_counter() - start, 1),
        "models": records,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, indent=1) + "\n"
    atomic_write(args.json, lambda f: f.write(text.encode()))
    print(format_table(records))
    print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
