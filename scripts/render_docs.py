"""Fill the figure blocks of README.md and docs/*.md with tables rendered from results/*.json.

A block is ``<!-- figures:NAME -->`` ... ``<!-- /figures:NAME -->`` (NAME a key of
:data:`RENDERERS`); everything between the two comments is generated. ``python
scripts/render_docs.py`` rewrites the files whose blocks are stale (atomically); ``--check``
writes nothing and exits 1 naming each stale block (``README.md: demo``). An unknown block
name, an unclosed block or a missing results file exits 1 with a message.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tvm_bsp.experiments.bench.gru import PAPER_CPU_SPEEDUP  # noqa: E402
from tvm_bsp.experiments.table1 import report  # noqa: E402
from tvm_bsp.speech.storage import atomic_write_text  # noqa: E402

PAPER_LOSS = report.PAPER_PER_LOSS

BLOCK = re.compile(
    r"<!-- figures:(?P<name>[a-z0-9-]+) -->\n(?P<body>.*?)<!-- /figures:(?P=name) -->", re.S
)
OPENER = re.compile(r"<!-- figures:(\S*) -->")
MODES = ("stream", "utterance")


def _load(results: Path, name: str) -> Any:
    path = results / name
    if not path.is_file():
        raise ValueError(f"{path} is missing")
    return json.loads(path.read_text())


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def _num(value: float | None, digits: int = 1) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _plural(n: Any, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def demo(results: Path) -> str:
    """``tvm-bsp demo --json``: PER and streaming latency per target and build."""
    recs = _load(results, "demo.json")
    dense = {r["target"]: r for r in recs if r["build"] == "dense"}
    rows = [
        [f"{r['target']} (qemu)" if r.get("emulated") else r["target"], r["build"],
         "1x" if r["build"] == "dense" else f"{r['rate']:g}x", f"{r['per']:.2f}",
         f"{r['us_per_frame']:.1f}", f"{r['rtf']:.4f}",
         _num(dense[r["target"]]["us_per_frame"] / r["us_per_frame"] if r["target"] in dense
              else None, 2)]
        for r in recs
    ]
    head = ["target", "build", "compression", "PER %", "us / frame", "real-time factor", "speedup"]
    text = _table(head, rows)
    host = {r["build"]: r for r in recs if r["target"] == "host"}
    if {"dense", "bspc"} <= set(host):
        d, s = host["dense"], host["bspc"]
        gap = s["per"] - d["per"]
        text += (
            f"\n\nOn the host the BSPC build ({s['rate']:g}x) streams a frame "
            f"**{d['us_per_frame'] / s['us_per_frame']:.1f}x faster** than the dense build "
            f"and is **{abs(gap):.2f} PER points {'worse' if gap > 0 else 'better'}** "
            f"({s['test_utterances']} test utterances, {_plural(s['threads'], 'TVM thread')})."
        )
    emulated = [r["test_utterances"] for r in recs if r.get("emulated")]
    return text + (f" The arm64 rows run under qemu-user (emulated time, not a phone's) and "
                   f"score the first {emulated[0]} utterances." if emulated else "")


def _table1_records(results: Path) -> tuple[list[dict], dict | None]:
    """The contract records and the details document, if it belongs to the same run."""
    records = report.contract_records(_load(results, "table1.json"))
    path = results / "table1.details.json"
    details = json.loads(path.read_text()) if path.is_file() else {}
    same = report.contract_records(details.get("records", [])) == records
    return records, details if same else None


def table1(results: Path) -> str:
    """RTMobile's Table I (test split): PER per method and rate, BSP loss against the paper."""
    records, details = _table1_records(results)
    test = [r for r in records if r["split"] == "test"]
    if not test:
        raise ValueError("results/table1.json has no test-split record")
    methods = [m for m in ("bsp", "balanced", "magnitude") if any(r["method"] == m for r in test)]
    cell = {(r["method"], r["rate"]): r for r in test}
    dense = test[0]["per_dense"]
    head = ["rate", *(report.METHOD_NAMES[m] for m in methods), "BSP PER loss",
            "RTMobile's BSP PER loss"]
    rows = [["1 (dense)", f"{dense:.2f}", *[""] * (len(methods) - 1), "0", "0"]]
    losses = []
    for rate in sorted({r["rate"] for r in test}):
        bsp = cell.get(("bsp", rate))
        loss = None if bsp is None else bsp.get("per_loss", bsp["per"] - bsp["per_dense"])
        if loss is not None:
            losses.append((rate, loss))
        pers = [_num(cell[(m, rate)]["per"], 2) if (m, rate) in cell else "" for m in methods]
        rows.append([f"{rate:g}", *pers, _num(loss, 2), _num(PAPER_LOSS.get(round(rate)))])
    m = (details or {}).get("config", {}).get("model")
    model = f"; {m['layers']}x{m['hidden']} {m.get('cell', 'gru').upper()}" if m else ""
    text = f"Test split PER % (`results/table1.json`{model}; dense {dense:.2f} %):\n\n"
    text += _table(head, rows)
    if losses:
        text += (f"\n\nBSP loses {min(v for _, v in losses):.2f}-{max(v for _, v in losses):.2f}"
                 f" points at {', '.join(f'{r:g}' for r, _ in losses)}x (RTMobile, TIMIT: last"
                 " column).")
    return text


def table1_full(results: Path) -> str:
    """:func:`tvm_bsp.experiments.table1.report.markdown_table`, its headings one level deeper."""
    records, details = _table1_records(results)
    text = report.markdown_table(details if details is not None else records)
    return re.sub(r"^(#+) ", r"#\1 ", text.strip(), flags=re.M)


def _fastest(records: list[dict], impls: tuple[str, ...]) -> dict[tuple, float]:
    """``{(mode, rate, grid): fastest us_per_frame over the thread counts}``."""
    best: dict[tuple, float] = {}
    for r in records:
        if r["impl"] in impls:
            key = (r["mode"], r["rate"], r.get("grid", ""))
            best[key] = min(best.get(key, float("inf")), r["us_per_frame"])
    return best


def bench_gru(results: Path) -> str:
    """Reference GRU per frame: our dense build against its peers, then BSPC speedups."""
    recs = _load(results, "bench_gru.json")
    ours = {(r["mode"], r["threads"]): r["us_per_frame"] for r in recs if r["impl"] == "tvm_dense"}
    peers = {(r["mode"], r["impl"]): r["us_per_frame"] for r in recs
             if r["impl"] not in ("bspc", "tvm_dense")}
    rows = [[f"our dense build, {_plural(n, 'thread')}", *(_num(ours.get((m, n))) for m in MODES)]
            for n in sorted({n for _, n in ours}, reverse=True)]
    names = {"torch_dense_1t": "torch.nn.GRU, 1 thread", "torch_dense_2t": "torch.nn.GRU, "
             "2 threads", "onnxruntime": "ONNX Runtime GRU"}
    rows += [[label, *(_num(peers.get((m, impl))) for m in MODES)]
             for impl, label in names.items() if ("stream", impl) in peers]
    text = _table(["build", "stream µs/frame", "utterance µs/frame"], rows) + "\n\n"
    dense, sparse = _fastest(recs, ("tvm_dense",)), _fastest(recs, ("bspc",))
    torch = {m: min(v for (mode, i), v in peers.items() if mode == m and i.startswith("torch"))
             for m in MODES if any(i.startswith("torch") for _, i in peers)}
    if torch:
        text += "Our dense build against the faster torch configuration: " + ", ".join(
            f"{torch[m] / dense[(m, 1, '')]:.1f}x faster ({m})" for m in torch) + ". "
    text += ("BSPC builds (best of the thread counts) against our dense build and RTMobile's "
             "CPU speedup (Table II, Kryo 485):\n\n")
    rows = []
    grids = {k[2] for k in sparse}
    grid = next(iter(grids)) if len(grids) == 1 else ""
    roof = {(r["mode"], r["rate"]): r for r in recs if r["impl"] in ("bspc", "tvm_dense")
            and "roofline_us" in r and r.get("grid", "") == grid and r["threads"] == 1}  # fmt: skip
    for rate in sorted({k[1] for k in sparse}):
        us = [sparse.get((m, rate, grid)) for m in MODES]
        cells = [c for m, u in zip(MODES, us, strict=True)
                 for c in (_num(u), _num(u and dense[(m, 1, "")] / u))]
        r = roof.get(("stream", rate))
        extra = [_num(r["bytes_per_frame"] / 1e6, 2), _num(r["roofline_us"]),
                 _num(r["roofline_ratio"], 1)] if r else ["", "", ""]  # fmt: skip
        rows.append([f"{rate:g}", *cells, f"{PAPER_CPU_SPEEDUP.get(rate, '')}", *extra])
    head = ["rate", "stream µs", "stream speedup", "utterance µs", "utterance speedup",
            "RTMobile CPU speedup", "MB per frame", "roofline µs", "1 thread / roofline"]
    note = (f"Grid {grid}. Roofline: the weights and state a streamed frame reads over this "
            "machine's measured read bandwidth (`tvm_bsp.experiments.bench.roofline`); the last "
            "column is the 1-thread stream time over it.\n\n") if roof else ""
    return text + note + _table(head, rows)


def _spmv(results: Path, name: str) -> str:
    every = _load(results, name)
    pick = {(r["impl"], r["batch"], r["rate"]): r for r in every
            if r.get("matrix") == "3072x1024"}
    frame_major = any(k[0] == "bspc_nb" for k in pick)  # runs before the kernels were merged
    rows = []
    for rate in sorted({k[2] for k in pick if k[0] == "bspc" and k[2] > 1}):
        one, row, nb = (pick.get((i, b, rate)) for i, b in (("bspc", 1), ("bspc", 32),
                                                              ("bspc_nb", 32)))
        rows.append([
            f"{rate:g}", f"{one['speedup_vs_tvm_dense']:.1f} ({one.get('paper_cpu_speedup', '')})",
            f"{one['median_us']:.2f}", f"{one['speedup_vs_torch_csr']:.1f}",
            _num(row and row["speedup_vs_tvm_dense"]), _num(nb and nb["speedup_vs_tvm_dense"]),
        ][: 6 if frame_major else 5])
    machine = next((r for r in every if r.get("impl") == "machine"), {})
    d1, t1 = pick.get(("tvm_dense", 1, 1), {}), pick.get(("torch_dense", 1, 1), {})
    text = (
        f"`results/{name}` ({machine.get('cpu', '?')}, "
        f"{_plural(machine.get('threads', '?'), 'thread')} for TVM and torch): our dense kernel "
        f"{_num(d1.get('median_us'))} µs at batch 1, torch dense {_num(t1.get('median_us'))} µs."
        " BSPC speedup over our dense kernel (RTMobile's CPU speedup in brackets):\n\n"
    )
    head = ["rate", "batch 1 speedup", "batch 1 µs", "vs torch CSR", "batch 32 row-major",
            "batch 32 frame-major (`nb`)"][: 6 if frame_major else 5]
    return text + _table(head, rows)


def matmat_families(results: Path) -> str:
    """``scripts/bench_matmat_families.py``: the two former mat-mat kernels side by side."""
    doc = _load(results, "bench_matmat_families.json")
    before_path = results / "bench_matmat_families.before.json"
    before = json.loads(before_path.read_text()) if before_path.is_file() else {"cases": []}
    old = {(c["threads"], c["rate"], c["batch"]): c["kernels"] for c in before["cases"]}

    def us(kernels: dict | None, name: str) -> str:
        return _num(kernels[name]["median_us"]) if kernels and name in kernels else ""

    rows = []
    for c in doc["cases"]:
        k, b = c["kernels"], old.get((c["threads"], c["rate"], c["batch"]))
        ratio = k["B*"]["median_us"] / k["A*"]["median_us"] if {"A*", "B*"} <= set(k) else None
        rows.append([str(c["threads"]), "dense" if c["rate"] == 1 else f"{c['rate']}x",
                     str(c["batch"]), us(k, "A"), us(k, "A*"), us(k, "A-nb"), us(b, "B"),
                     us(b, "B*"), us(k, "B"), us(k, "B*"), _num(ratio, 2)])  # fmt: skip
    machine = doc.get("machine", {})
    ok = [r for r in doc.get("opencl", []) if "ok" in r]
    text = (
        f"`results/bench_matmat_families.json` ({machine.get('cpu', '?')}, 3072x1024, grid "
        "96x16, TVM threads per row; medians in µs, `*` the best of a small knob set, "
        "before/after: family B before and after the two details of A were ported; "
        "`results/bench_matmat_families.before.json`):\n\n"
    )
    head = ["threads", "matrix", "batch", "A", "A*", "A frame-major*", "B before",
            "B* before", "B (shipped)", "B* (shipped)", "B* / A*"]
    text += _table(head, rows)
    if ok:
        good = sum(r["ok"] for r in ok)
        text += (f"\n\nOpenCL (POCL, correctness only: POCL runs on this CPU, its times say "
                 f"nothing about a GPU): {good} of {len(ok)} cases (Mali and Adreno defaults, "
                 "every matrix and batch) match numpy for both families.")
    return text


def refactor_ab(results: Path) -> str:
    """``scripts/bench_ab.py --libraries``: ``bench_gru``'s builds before and after a redesign."""
    doc = _load(results, "bench_ab_redesign.json")
    rows = [[r["mode"], "dense" if r["rate"] == 1 else f"{r['rate']}x", r["impl"],
             str(r["threads"]), _num(r["before_us"]), _num(r["after_us"]), _num(r["ratio"], 3),
             _num(r["min_ratio"], 3)] for r in doc["records"]]  # fmt: skip
    ratios = [r["ratio"] for r in doc["records"]]
    text = (
        f"`results/bench_ab_redesign.json` (`scripts/bench_ab.py --libraries`): the builds of "
        f"`bench_gru --quick` compiled by the tree before ({doc['before_rev']}) and after "
        f"({doc['after_rev']}), exported, loaded in one process and called alternately, "
        f"{doc['rounds']} calls of {doc['frames']} frames each per mode; µs per frame, medians; "
        f"after / before from {min(ratios):.3f} to {max(ratios):.3f}:\n\n"
    )
    head = ["mode", "rate", "impl", "threads", "before", "after", "after / before",
            "minima after / before"]
    text += _table(head, rows)
    rounds = results / "bench_ab_redesign.rounds.json"
    if rounds.is_file():
        other = json.loads(rounds.read_text())
        r = [x["ratio"] for x in other["records"]]
        text += (
            f"\n\nThe same builds timed by whole `bench_gru {' '.join(other['bench_args'])}` runs "
            f"of each tree, {other['rounds']} alternating rounds "
            f"(`results/bench_ab_redesign.rounds.json`): after / before of the medians "
            f"{min(r):.2f}-{max(r):.2f}, within the rounds' own spread (a build's rounds differ "
            "by up to 2x on this shared VM), which is why the interleaved calls above are the "
            "measurement."
        )
    return text


PADDING_LABELS = {"old": "plain, old lane rule", "grouped/suggested": "grouped, chosen lanes",
                  "grouped/4": "grouped, 4 lanes"}  # fmt: skip


def padding(results: Path) -> str:
    """``scripts/bench_padding.py``: multiply-adds / non-zeros and stream time per panel order."""
    doc = _load(results, "bench_padding.json")
    by_rate: dict[int, dict[str, dict]] = {}
    for r in doc["records"]:
        by_rate.setdefault(r["rate"], {})[r["label"]] = r
    labels = [k for k in PADDING_LABELS if any(k in v for v in by_rate.values())]

    def cell(r: dict | None) -> str:
        if r is None:
            return ""
        lanes = "/".join(str(x) for x in sorted(set(r["lanes"])))
        return f"{r['ratio_all']:.2f} ({lanes}) · {r['stream_us']:.1f}"

    rows = [[f"{rate}x", *(cell(v.get(k)) for k in labels)] for rate, v in sorted(by_rate.items())]
    meta = doc["meta"]
    return (
        f"`results/bench_padding.json` ({meta['model']}, {meta['threads']} thread, one "
        "process, builds side by side): multiply-adds per frame / stored values of the whole "
        "model (lanes) · streamed µs per frame (median):\n\n"
        + _table(["rate", *(PADDING_LABELS[k] for k in labels)], rows)
    )


INT8_KERNEL_HEAD = ["rate", "batch", "threads", "float32 BSPC", "int8", "instruction",
                    "int8 plain TIR", "quantize x", "float32 / int8"]  # fmt: skip


def int8_kernel(results: Path) -> str:
    """``scripts/bench_int8.py``: the int8 BSPC kernel against the float32 one, side by side."""
    doc = _load(results, "bench_int8.json")
    rows = []
    for r in doc["records"]:
        t = r["timings"]
        int8 = t.get(f"int8_{r['dot']}", {}).get("median_us")
        rows.append([f"{r['rate']}x", str(r["batch"]), str(r["threads"]),
                     _num(t["fp32"]["median_us"]), _num(int8), r["dot"],
                     _num(t.get("int8_generic", {}).get("median_us")),
                     _num(t["quantize"]["median_us"]),
                     _num(t["fp32"]["median_us"] / int8, 2) if int8 else ""])  # fmt: skip
    first = doc["records"][0]
    return (
        f"`results/bench_int8.json` ({first['matrix']}, grid {first['grid']}, {doc['cpus']} "
        f"CPUs, nice {doc['niceness']}; {doc['note']}); µs per call:\n\n"
        + _table(INT8_KERNEL_HEAD, rows)
    )


INT8_HEAD = ["model", "float32", "int8 weights", "int8 weights + activations", "int8 - float32"]


def int8_accuracy(results: Path) -> str:
    """``scripts/int8_accuracy.py``: test PER of the shipped models, float32 and int8."""
    doc = _load(results, "int8_accuracy.json")
    rows = [[m["model"], _num(m["fp32_per"], 2), _num(m["int8_weights_per"], 2),
             _num(m["int8_per"], 2), f"{m['int8_per'] - m['fp32_per']:+.2f}"]
            for m in doc["models"]]  # fmt: skip
    return (
        f"`results/int8_accuracy.json` (`{doc['command']}`): {doc['utterances']} test "
        f"utterances ({doc['phones']} phones), scales `{doc['granularity']}`; PER %:\n\n"
        + _table(INT8_HEAD, rows)
    )


TRAINING_NAMES = {
    "utterances fp32": "dense training: whole utterances, float32 (the old way)",
    "chunks fp32": "chunks, float32",
    "utterances bf16": "whole utterances, bf16",
    "chunks bf16": "**chunks, bf16 (the default)**",
    "chunks bf16, 24k frames/batch": "chunks, bf16, 24,000 frames a batch",
    "distill: utterances fp32, teacher per batch": "pruning unit with distillation: whole "
    "utterances, float32, teacher run per batch (the old way)",
    "distill: chunks bf16, teacher per batch": "chunks, bf16, teacher run per batch",
    "distill: chunks bf16, cached teacher": "**chunks, bf16, cached teacher (the default)**",
}


def training(results: Path) -> str:
    """Training speed of ``scripts/bench_training.py``'s variants, then its accuracy check."""
    doc, acc = _load(results, "bench_training.json"), _load(results, "bench_training_accuracy.json")
    rows = [[TRAINING_NAMES.get(r["variant"], r["variant"]), f"{r['frames_per_s']:.0f}",
             f"{r['ratio']:.2f}"] for r in doc["records"]]
    first, other = doc["records"][0], (acc.get("records") or [{}])[0]
    short = {"utterances fp32": "whole utterances, float32", "chunks bf16": "chunks, bf16"}
    accuracy = [[short.get(r["variant"], r["variant"]), str(r["epochs"]), f"{r['dev_per']:.2f}",
                 f"{r['train_s']:.0f}"] for r in acc["accuracy"]]
    return (
        f"{first['layers']}x{first['hidden']} GRU, {doc.get('utterances')} training utterances "
        f"({doc.get('frames')} frames), {_plural(first['threads'], 'torch thread')}, median of "
        f"{len(first.get('runs', []))} passes, bf16 native: "
        f"{'yes' if doc.get('bf16_native') else 'no'} (`results/bench_training.json`):\n\n"
        + _table(["variant", "frames/s", "ratio"], rows)
        + f"\n\nSame results: {other.get('layers')}x{other.get('hidden')} GRU, same start, "
        f"{acc.get('utterances')} training utterances each way, dev PER after training "
        "(`results/bench_training_accuracy.json`):\n\n"
        + _table(["variant", "epochs", "dev PER %", "training s"], accuracy)
    )


RENDERERS: dict[str, Callable[[Path], str]] = {
    "demo": demo,
    "table1": table1,
    "table1-full": table1_full,
    "bench-gru": bench_gru,
    "spmv": lambda results: _spmv(results, "bench_spmv.json"),
    "spmv-2t": lambda results: _spmv(results, "bench_spmv_2t.json"),
    "matmat-families": matmat_families,
    "refactor-ab": refactor_ab,
    "int8-accuracy": int8_accuracy,
    "int8-kernel": int8_kernel,
    "padding": padding,
    "training": training,
}


def render_text(text: str, results: Path, where: str = "text") -> tuple[str, list[str]]:
    """Fill every block of ``text``: the new text and the names of the changed blocks."""
    closed = [m["name"] for m in BLOCK.finditer(text)]
    opened = OPENER.findall(text)
    if len(opened) != len(closed):
        raise ValueError(f"{where}: unclosed block(s) {sorted(set(opened) - set(closed))}")
    changed: list[str] = []

    def fill(match: re.Match) -> str:
        name = match["name"]
        if name not in RENDERERS:
            raise ValueError(f"{where}: unknown block {name!r}; known: {sorted(RENDERERS)}")
        body = "\n" + RENDERERS[name](results).strip() + "\n\n"
        if body != match["body"]:
            changed.append(name)
        return f"<!-- figures:{name} -->\n{body}<!-- /figures:{name} -->"

    return BLOCK.sub(fill, text), changed


def render(root: Path, write: bool) -> list[str]:
    """Render README.md and docs/*.md, writing the changed ones when ``write``.

    Returns the stale blocks as ``"file: block"``.
    """
    stale, new = [], {}
    for path in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        rel = path.relative_to(root).as_posix()
        text, changed = render_text(path.read_text(), root / "results", rel)
        stale += [f"{rel}: {name}" for name in changed]
        new.update({path: text} if changed else {})
    for path, text in new.items() if write else ():  # after all rendered: none on an error
        atomic_write_text(path, text)
    return stale


def main(argv: Sequence[str] | None = None) -> int:
    """Command line; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if stale")
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root")
    args = parser.parse_args(argv)
    try:
        stale = render(args.root, write=not args.check)
    except (ValueError, KeyError, TypeError) as exc:  # JSONDecodeError is a ValueError
        what = f"a results record lacks {exc}" if isinstance(exc, KeyError) else exc
        print(f"render_docs: {what}", file=sys.stderr)
        return 1
    for item in stale:
        print(f"{'stale' if args.check else 'rendered'}: {item}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
