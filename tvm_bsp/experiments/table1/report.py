"""Render the Table I results: a Markdown table in RTMobile's form and a PER-vs-rate plot.

Both read the JSON document of :meth:`tvm_bsp.experiments.table1.run.RunSummary.to_json`
(``{"records": [...], "dense": {...}, "config": {...}}``, the ``.details.json`` sidecar of
``scripts/table1.py --json``) or the plain contract list of records that ``--json`` writes
(then the columns that need the details, such as kept parameters, show ``-``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

#: RTMobile Table I, PER loss of BSP per overall rate (TIMIT, 2x1024 GRU).
PAPER_PER_LOSS: dict[int, float] = {
    10: 0.0,
    19: 0.6,
    29: 0.8,
    43: 1.8,
    80: 2.7,
    103: 4.4,
    153: 5.4,
    245: 5.4,
    301: 6.7,
}

METHOD_NAMES = {"bsp": "BSP", "balanced": "ESE balanced", "magnitude": "magnitude"}


CONTRACT_KEYS = ("rate", "method", "per", "per_dense", "achieved_rate", "split")
"""The fields of a ``scripts/table1.py --json`` record (issue 5's contract)."""


def contract_records(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The contract fields of every record (:data:`CONTRACT_KEYS`), in the same order.

    Raises
    ------
    ValueError
        If a record lacks one of the fields.
    """
    out = []
    for i, rec in enumerate(records):
        missing = [k for k in CONTRACT_KEYS if k not in rec]
        if missing:
            raise ValueError(f"record {i} lacks {', '.join(missing)}")
        out.append({k: rec[k] for k in CONTRACT_KEYS})
    return out


def as_document(doc: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A full results document from either form (a contract list gets its dense PER back).

    Raises
    ------
    ValueError
        If ``doc`` is neither a document with ``records`` and ``dense`` nor a list of records.
    """
    if isinstance(doc, Mapping):
        if "records" not in doc or "dense" not in doc:
            raise ValueError("a results document needs 'records' and 'dense'")
        return dict(doc)
    if isinstance(doc, str | bytes) or not isinstance(doc, Sequence):
        raise ValueError(f"expected a results document or a list of records, got {type(doc)}")
    records = contract_records(doc)
    dense = {r["split"]: r["per_dense"] for r in records}
    return {"records": records, "dense": {"per": dense}, "config": {}}


def _kept(n: float | None) -> str:
    if n is None:
        return "-"
    if n >= 1e6:
        return f"{n / 1e6:.2f}M"
    if n >= 1e3:
        return f"{n / 1e3:.1f}K"
    return f"{n:.0f}"


def _rows(records: Sequence[Mapping[str, Any]], method: str, split: str) -> list[Mapping]:
    rows = [r for r in records if r["method"] == method and r["split"] == split]
    return sorted(rows, key=lambda r: r["rate"])


def _splits(records: Sequence[Mapping[str, Any]]) -> list[str]:
    order = ["test", "dev", "real"]
    seen = {r["split"] for r in records}
    return [s for s in order if s in seen] + sorted(seen - set(order))


def _schedule(config: Mapping[str, Any]) -> str:
    prune = config.get("prune") or {}
    if not prune:
        return ""
    per_row = (prune["admm_epochs"] + prune["retrain_epochs"]) * prune["utts_per_epoch"]
    longer = prune.get("first_retrain_epochs") or 0
    first = (
        f"; the first row of a chain, pruned from the dense model, retrains {longer} units"
        if longer > 0 and config.get("gradual")
        else ""
    )
    start = (
        "Gradual pruning: the rates of each method run in ascending order and every row "
        "starts from the previous rate's pruned model (the first from the dense model); each "
        "row gets"
        if config.get("gradual")
        else "Every row starts from the dense model:"
    )
    kd = prune.get("distill_weight") or 0
    distill = (
        f" Loss: {1 - kd:g} x cross-entropy + {kd:g} x distillation from the dense model "
        f"(KL of frame posteriors, temperature {prune.get('distill_temperature', 2.0):g})."
        if kd > 0
        else ""
    )
    return (
        f"{start} {prune['admm_epochs']} ADMM units + "
        f"{prune['retrain_epochs']} masked-retraining units of {prune['utts_per_epoch']} "
        f"utterances ({per_row} utterances in all{first}; the dense model saw "
        f"{config.get('dense_epochs', '?')} x {config.get('n_train', '?')}). BSP grid "
        f"{prune['row_blocks']}x{prune['col_blocks']} (input matrix "
        f"{prune['row_blocks']}x{prune['input_col_blocks']}); ESE {prune['balanced_groups']} "
        "groups. Row rate = achieved rate / column rate (the row rate bisection found)."
        + (
            f" All methods prune the 39-wide first-layer input matrix at rate^"
            f"{prune['input_rate_power']:g} and the other GRU matrices harder, so that the "
            "overall rate is the target."
            if prune.get("input_rate_power") is not None
            else ""
        )
        + distill
    )


def markdown_table(doc: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> str:
    """Markdown: Table I (BSP, test split), comparison rows, and every split.

    Parameters
    ----------
    doc : mapping or list
        The results document, or the contract list of records (:func:`as_document`).

    Returns
    -------
    str
    """
    doc = as_document(doc)
    records = doc["records"]
    dense = doc["dense"]
    config = doc.get("config", {})
    model = config.get("model", {})
    total = dense.get("params")
    splits = _splits(records) or ["test"]
    main = "test" if "test" in splits else splits[0]
    d_per = dense["per"][main]
    lines = [
        f"## Table I on the synthetic corpus ({main} split: held-out voices and words)",
        "",
        f"Model: {model.get('layers', '?')}x{model.get('hidden', '?')} "
        f"{model.get('cell', 'gru')} ({model.get('head', '?')} head), "
        f"{_kept(total)} GRU weights; dense PER {d_per:.2f}%. "
        "Compression counts the GRU matrices only.",
        "",
        _schedule(config),
        "",
        "| overall compression | column rate | row rate | kept params | PER | PER loss "
        "| RTMobile PER loss |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        f"| 1 | 1 | 1 | {_kept(total)} | {d_per:.2f} | 0 | 0 |",
    ]
    for r in _rows(records, "bsp", main):
        paper = PAPER_PER_LOSS.get(round(r["rate"]))
        row_rate = r.get("effective_row_rate") or r.get("row_rate")
        col = "-" if r.get("col_rate") is None else f"{r['col_rate']:g}"
        row = "-" if row_rate is None else f"{row_rate:.2f}"
        lines.append(
            f"| {r['rate']:g} (achieved {r['achieved_rate']:.1f}) | {col} | "
            f"{row} | {_kept(r.get('kept'))} | {r['per']:.2f} | "
            f"{r['per'] - r['per_dense']:.2f} | {'' if paper is None else f'{paper:.2f}'} |"
        )
    others = [m for m in ("balanced", "magnitude") if _rows(records, m, main)]
    if others:
        lines += [
            "",
            f"### Comparison rows ({main} split, same ADMM + retraining schedule)",
            "",
            "| method | compression | kept params | PER | PER loss |",
            "| --- | --- | --- | --- | --- |",
        ]
        for method in ("bsp", *others):
            for r in _rows(records, method, main):
                lines.append(
                    f"| {METHOD_NAMES.get(method, method)} | {r['achieved_rate']:.1f} | "
                    f"{_kept(r.get('kept'))} | {r['per']:.2f} | {r['per'] - r['per_dense']:.2f} |"
                )
    lines += ["", "### PER (%) on every split", ""]
    head = "| method | rate | " + " | ".join(f"{s} PER | {s} loss" for s in splits) + " |"
    lines += [head, "|" + " --- |" * (2 + 2 * len(splits))]
    lines.append(
        "| dense | 1 | "
        + " | ".join(f"{dense['per'].get(s, float('nan')):.2f} | 0" for s in splits)
        + " |"
    )
    methods = [
        m for m in ("bsp", "balanced", "magnitude") if any(r["method"] == m for r in records)
    ]
    for method in methods:
        for r in _rows(records, method, main):
            cells = []
            for s in splits:
                match = [x for x in _rows(records, method, s) if x["rate"] == r["rate"]]
                if match:
                    cells.append(
                        f"{match[0]['per']:.2f} | {match[0]['per'] - match[0]['per_dense']:.2f}"
                    )
                else:
                    cells.append(" | ")
            lines.append(f"| {method} | {r['rate']:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(doc: Mapping[str, Any] | Sequence[Mapping[str, Any]], path: str | os.PathLike) -> None:
    """PER vs compression (log axis), one line per method, the dense PER dashed; per split."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    doc = as_document(doc)
    records = doc["records"]
    splits = _splits(records) or ["test"]
    fig, axes = plt.subplots(1, len(splits), figsize=(4.6 * len(splits), 3.8), squeeze=False)
    styles = {"bsp": ("C0", "o"), "balanced": ("C1", "s"), "magnitude": ("C2", "^")}
    for ax, split in zip(axes[0], splits, strict=True):
        for method, (color, marker) in styles.items():
            rows = _rows(records, method, split)
            if rows:
                ax.plot(
                    [r["achieved_rate"] for r in rows],
                    [r["per"] for r in rows],
                    marker=marker,
                    color=color,
                    label=METHOD_NAMES[method],
                )
        dense = doc["dense"]["per"].get(split)
        if dense is not None:
            ax.axhline(dense, color="k", linestyle="--", linewidth=1, label="dense")
        ax.set_xscale("log")
        ax.set_xlabel("compression of the GRU matrices (x)")
        ax.set_ylabel("PER (%)")
        ax.set_title(f"{split} split")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
