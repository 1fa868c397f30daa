"""The GRU benchmark's report: markdown tables like RTMobile's Table II, next to its figures.

:func:`table` turns the records of :func:`tvm_bsp.experiments.bench.gru.run` into one table per mode
(``stream``, ``utterance``), each row next to RTMobile's speedup. :data:`PAPER_CPU_SPEEDUP` and
:data:`PAPER_CPU_US` are the CPU column of RTMobile's Table II (Snapdragon 855, Kryo 485).
"""

from __future__ import annotations

__all__ = ["PAPER_CPU_SPEEDUP", "PAPER_CPU_US", "table"]

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


def table(records: list[dict]) -> str:
    """Markdown tables like RTMobile's Table II (this host), per mode.

    Our builds appear with 1 and with all threads; the speedup divides our dense time by
    the BSPC time at the same thread count, and "best" uses the faster of the two for each.
    The roofline columns (records with ``roofline_us``) give the time one thread needs to read
    the frame's bytes at this machine's measured bandwidth, and the 1-thread time over it.
    With several grids, each BSPC rate has one row per grid.

    Parameters
    ----------
    records : list of dict
        Records of :func:`tvm_bsp.experiments.bench.gru.run` (``mode``, ``rate``, ``impl``,
        ``us_per_frame``; our builds also ``threads`` and, for BSPC, ``grid``).

    Returns
    -------
    str
        The tables, one per mode, with a line of dense peers under each when timed.
    """
    ours: dict[tuple, float] = {}
    peers: dict[tuple, float] = {}
    bounds: dict[tuple, float] = {}
    for r in records:
        if r["impl"] in ("bspc", "tvm_dense"):
            ours[(r["mode"], r["rate"], r.get("grid", ""), r["threads"])] = r["us_per_frame"]
            if "roofline_us" in r:
                bounds[(r["mode"], r["rate"], r.get("grid", ""))] = r["roofline_us"]
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
            + " | speedup best | RTMobile CPU speedup | roofline us | 1t / roofline |",
            "| --- " * (len(heads) + 5 + several) + "|",
        ]
        for rate, grid in builds:
            us = {n: ours.get((mode, rate, grid, n)) for n in counts}
            cells = [f"{us[n]:.1f}" if us[n] else "-" for n in counts]
            cells += [f"{dense[n] / us[n]:.1f}" if us[n] and dense[n] else "-" for n in counts]
            fastest = min((v for v in us.values() if v), default=None)
            best = f"{best_dense / fastest:.1f}" if best_dense and fastest else "-"
            grid_cell = f"{grid or '-'} | " if several else ""
            bound = bounds.get((mode, rate, grid))
            one = us.get(1)
            roof = f"{bound:.1f} | {one / bound:.1f}" if bound and one else "- | -"
            lines.append(
                f"| {rate} | {grid_cell}"
                + " | ".join(cells)
                + f" | {best} | {PAPER_CPU_SPEEDUP[rate]} | {roof} |"
            )
        names = ("torch_dense_1t", "torch_dense_2t", "onnxruntime")
        if any((mode, n) in peers for n in names):
            lines.append(
                "dense peers: "
                + ", ".join(f"{n} {peers[(mode, n)]:.1f}" for n in names if (mode, n) in peers)
            )
    return "\n".join(lines)
