"""Time ``scripts/bench_gru.py`` from two checkouts, alternately, and report medians and ratios.

A change that should leave the generated code as it is (a refactor of the kernel generator,
a package move) is checked by timing the tree before it and the tree after it side by side,
in one run, on the same machine: rounds alternate the order (before-after, after-before, ...)
so that drift of the machine's load falls on both sides alike. Each record of the result is
one ``(mode, rate, impl, threads)`` of ``bench_gru``'s records, with the per-round times of
both trees, their medians and ``ratio = after / before`` (below 1: the after tree is faster).

Usage::

    git worktree add /tmp/before <rev>
    python scripts/bench_ab.py --before /tmp/before --rounds 4 --json results/ab.json \\
        -- --quick --no-peers
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KEY_FIELDS = ("mode", "rate", "impl", "threads")


def run_bench(tree: Path, bench_args: list[str]) -> list[dict]:
    """Run one tree's ``scripts/bench_gru.py`` with its own ``tvm_bsp`` first on the path.

    Parameters
    ----------
    tree : Path
        A checkout of this repository.
    bench_args : list of str
        Arguments of ``bench_gru.py`` (``--json`` is added here).

    Returns
    -------
    list of dict
        The records ``bench_gru.py`` wrote.
    """
    script = tree / "scripts" / "bench_gru.py"
    if not script.is_file():
        raise SystemExit(f"bench_ab: {tree} has no scripts/bench_gru.py")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "records.json"
        env = {**os.environ, "PYTHONPATH": str(tree)}
        cmd = [sys.executable, str(script), *bench_args, "--json", str(out)]
        subprocess.run(cmd, cwd=tree, env=env, check=True, stdout=subprocess.DEVNULL)
        return json.loads(out.read_text(encoding="utf-8"))


def describe_tree(tree: Path) -> str:
    """``git describe``-like label of a checkout: its short commit, ``+changes`` if dirty."""
    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(tree), *args], capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    rev = git("rev-parse", "--short", "HEAD") or str(tree)
    return rev + (" +changes" if git("status", "--porcelain", "--untracked-files=no") else "")


def pair_records(runs: dict[str, list[list[dict]]]) -> list[dict]:
    """Medians per record key of the ``before`` and ``after`` rounds, and their ratio.

    Parameters
    ----------
    runs : dict
        ``{"before": [records of round 1, ...], "after": [...]}``.

    Returns
    -------
    list of dict
        One record per key present on both sides, in the before tree's order.
    """
    times: dict[str, dict[tuple, list[float]]] = {"before": {}, "after": {}}
    order: list[tuple] = []
    for side, rounds in runs.items():
        for records in rounds:
            for rec in records:
                key = tuple(rec.get(f) for f in KEY_FIELDS)
                times[side].setdefault(key, []).append(float(rec["us_per_frame"]))
                if side == "before" and key not in order:
                    order.append(key)
    paired = []
    for key in order:
        before, after = times["before"].get(key), times["after"].get(key)
        if not before or not after:
            continue
        b, a = statistics.median(before), statistics.median(after)
        paired.append(
            {
                **dict(zip(KEY_FIELDS, key, strict=True)),
                "before_us": b,
                "after_us": a,
                "ratio": a / b,
                "before_runs": before,
                "after_runs": after,
            }
        )
    return paired


def format_table(paired: list[dict]) -> str:
    """A markdown table of :func:`pair_records`' records."""
    lines = [
        "| mode | rate | impl | threads | before us | after us | after / before |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in paired:
        lines.append(
            f"| {r['mode']} | {r['rate']} | {r['impl']} | {r['threads']} | "
            f"{r['before_us']:.1f} | {r['after_us']:.1f} | {r['ratio']:.3f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line: see the module docstring."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = "scripts/bench_ab.py " + " ".join(argv)
    bench_args: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, bench_args = argv[:cut], argv[cut + 1 :]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="checkout before the change")
    parser.add_argument("--after", type=Path, default=REPO, help="checkout after (this one)")
    parser.add_argument("--rounds", type=int, default=4, help="rounds per tree (default 4)")
    parser.add_argument("--json", type=Path, help="write the paired records here")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    runs: dict[str, list[list[dict]]] = {"before": [], "after": []}
    for i in range(args.rounds):
        order = ("before", "after") if i % 2 == 0 else ("after", "before")
        for side in order:
            start = time.perf_counter()
            runs[side].append(run_bench(trees[side], bench_args))
            print(
                f"round {i + 1}/{args.rounds} {side}: {time.perf_counter() - start:.0f} s",
                file=sys.stderr,
                flush=True,
            )
    paired = pair_records(runs)
    print(format_table(paired))
    if args.json:
        doc = {
            "command": command,
            "before_rev": describe_tree(trees["before"]),
            "after_rev": describe_tree(trees["after"]),
            "rounds": args.rounds,
            "bench_args": bench_args,
            "records": paired,
        }
        tmp = args.json.with_suffix(args.json.suffix + ".tmp")
        tmp.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
        tmp.replace(args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
