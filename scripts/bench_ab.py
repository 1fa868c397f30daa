"""Time ``scripts/bench_gru.py`` from two checkouts, alternately, and report medians and ratios.

A change that should leave the generated code as it is (a refactor of the kernel generator,
a package move) is checked by timing the tree before it and the tree after it side by side,
in one run, on the same machine: rounds alternate the order (before-after, after-before, ...)
so that drift of the machine's load falls on both sides alike. Each record of the result is
one ``(mode, rate, impl, threads)`` of ``bench_gru``'s records, with the per-round times of
both trees, their medians and ``ratio = after / before`` (below 1: the after tree is faster).

``--libraries`` times the compiled code itself more closely: each tree compiles the
benchmark's builds (the reference GRU dense and BSPC at ``--rates``, 1 and 2 TVM threads) and
exports them as ``.so`` files; one process then loads both trees' libraries with the TVM
runtime alone and times them interleaved (a call of one, a call of the other, ...), so
that the machine's load falls on both alike within milliseconds. Its records carry the
medians and the minima of the calls.

Usage::

    git worktree add /tmp/before <rev>
    python scripts/bench_ab.py --before /tmp/before --rounds 4 --json results/ab.json \\
        -- --quick --no-peers
    python scripts/bench_ab.py --before /tmp/before --libraries --json results/ab.json
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


EXPORTER = """
import importlib, json, sys
import tvm_bsp
try:
    gru = importlib.import_module("tvm_bsp.experiments.bench.gru")
except ImportError:  # a tree from before the experiments package
    gru = importlib.import_module("tvm_bsp.bench.gru")
out, rates, threads = sys.argv[1], [int(r) for r in sys.argv[2].split(",")], sys.argv[3]
model, built = gru.reference_gru(), []
for rate in rates:
    if rate == 1:
        pmodel, kwargs = model, {}
    else:
        pmodel, masks, by_name, _ = gru.pruned(model, rate)
        kwargs = {"bspc": masks, "grid": by_name}
    for t in [int(t) for t in threads.split(",")]:
        cm = tvm_bsp.compile_model(pmodel, knobs={"threads": t}, **kwargs)
        path = f"{out}/gru-{rate}-{t}.so"
        cm.export(path)
        built.append({"rate": rate, "threads": t, "path": path})
print(json.dumps(built))
"""


def export_builds(tree: Path, out: Path, rates: list[int], threads: list[int]) -> list[dict]:
    """Compile the benchmark's builds with one tree's ``tvm_bsp`` and export them.

    Returns
    -------
    list of dict
        ``{"rate", "threads", "path"}`` per exported library.
    """
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(tree)}
    cmd = [sys.executable, "-c", EXPORTER, str(out), ",".join(map(str, rates)),
           ",".join(map(str, threads))]  # fmt: skip
    done = subprocess.run(cmd, cwd=tree, env=env, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def time_libraries(
    pairs: list[tuple[dict, str, str]], frames: int, calls: int
) -> list[dict]:
    """Time the ``before`` / ``after`` libraries of each build interleaved, in this process.

    Parameters
    ----------
    pairs : list of (dict, str, str)
        ``(build, before .so, after .so)``; ``build`` has ``rate`` and ``threads``.
    frames : int
        Frames of the utterance (``forward``) and of the streamed run (``step`` per frame).
    calls : int
        Timed calls of each library per mode, alternating with the other's.

    Returns
    -------
    list of dict
        Per build and mode: medians and minima of both (µs per frame) and ``ratio`` of the
        medians, after / before.
    """
    import numpy as np
    import tvm
    from tvm import relax

    config = tvm.get_global_func("runtime.config_threadpool")
    config(-3, 2, ["0", "1"])  # the pool gets its workers once: create it with the most
    rng = np.random.default_rng(1)
    records = []
    for build, before_so, after_so in pairs:
        config(-3, build["threads"], [str(i) for i in range(build["threads"])])
        vms = [relax.VirtualMachine(tvm.runtime.load_module(p), tvm.cpu()) for p in
               (before_so, after_so)]  # fmt: skip
        x_np = rng.standard_normal((frames, 1, 39)).astype(np.float32)
        x = tvm.runtime.tensor(x_np)
        steps = [tvm.runtime.tensor(f) for f in x_np]
        state0 = tvm.runtime.tensor(np.zeros((2, 1, 1024), np.float32))

        def utterance(vm, x=x, state0=state0):
            vm["forward"](x, state0)

        def stream(vm, steps=steps, state0=state0):
            state, step = state0, vm["step"]
            for frame in steps:
                _, state = step(frame, state)

        for mode, run in (("utterance", utterance), ("stream", stream)):
            for vm in vms:
                run(vm)  # warm up
            times: list[list[float]] = [[], []]
            for i in range(calls):
                for side in ((0, 1) if i % 2 == 0 else (1, 0)):
                    start = time.perf_counter()
                    run(vms[side])
                    times[side].append((time.perf_counter() - start) / frames * 1e6)
            b, a = statistics.median(times[0]), statistics.median(times[1])
            records.append({
                "mode": mode, "rate": build["rate"], "impl": "tvm_dense" if build["rate"] == 1
                else "bspc", "threads": build["threads"], "before_us": b, "after_us": a,
                "ratio": a / b, "before_min_us": min(times[0]), "after_min_us": min(times[1]),
                "min_ratio": min(times[1]) / min(times[0]), "calls": calls,
            })  # fmt: skip
        print(f"rate {build['rate']} threads {build['threads']}: done", file=sys.stderr)
    return records


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


def write_result(path: Path, trees: dict[str, Path], command: str, **fields: object) -> None:
    """Write the result document (command, both trees' revisions, ``fields``) atomically."""
    from tvm_bsp.bspc import atomic_write

    doc = {"command": command, "before_rev": describe_tree(trees["before"]),
           "after_rev": describe_tree(trees["after"]), **fields}  # fmt: skip
    atomic_write(path, lambda f: f.write((json.dumps(doc, indent=1) + "\n").encode()))


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
    parser.add_argument("--libraries", action="store_true",
                        help="export both trees' builds and time them interleaved in one process")
    parser.add_argument("--rates", default="1,10,103,301", help="--libraries: rates")
    parser.add_argument("--calls", type=int, default=40, help="--libraries: calls per mode")
    parser.add_argument("--frames", type=int, default=200, help="--libraries: frames per call")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    if args.libraries:
        return libraries_main(args, trees, command)
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
        write_result(args.json, trees, command, rounds=args.rounds, bench_args=bench_args,
                     records=paired)  # fmt: skip
    return 0


def libraries_main(args: argparse.Namespace, trees: dict[str, Path], command: str) -> int:
    """``--libraries``: export both trees' builds, then time them interleaved."""
    rates = [int(r) for r in args.rates.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        built = {side: export_builds(tree, Path(tmp) / side, rates, [1, 2])
                 for side, tree in trees.items()}  # fmt: skip
        print("exported", len(built["before"]), "+", len(built["after"]), file=sys.stderr)
        after = {(b["rate"], b["threads"]): b["path"] for b in built["after"]}
        pairs = [(b, b["path"], after[(b["rate"], b["threads"])]) for b in built["before"]]
        records = time_libraries(pairs, args.frames, args.calls)
    print(format_table(records))
    if args.json:
        write_result(args.json, trees, command, rounds=args.calls,
                     bench_args=["(libraries)", f"--rates {args.rates}"], frames=args.frames,
                     records=records)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
