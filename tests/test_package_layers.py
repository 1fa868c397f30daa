"""The sub-packages of tvm_bsp form a layered graph: no import cycle among packages; the
device-side runtime imports nothing but numpy, the TVM runtime and itself.

A package ``A`` depends on ``B`` when any module of ``tvm_bsp/A`` imports from ``tvm_bsp/B``,
at module level or inside a function (every ``Import``/``ImportFrom`` node at any depth,
relative imports resolved). A function-level import hides a cycle from Python's import
machinery but not from the layering, so it counts here. Each top-level module is a node of
its own (``tvm_bsp.__main__``, ...); ``tvm_bsp`` is ``tvm_bsp/__init__.py`` and whatever
``from tvm_bsp import NAME`` takes from it.

``python tests/test_package_layers.py`` prints the graph and every cycle.
"""

from __future__ import annotations

import ast
import itertools
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "tvm_bsp"

# Packages whose cycles are tolerated while a layering change is under way (none: the last
# one, ops <-> schedules, was removed by putting targets and knob tables below the kernels).
EXEMPT_PACKAGES: frozenset[str] = frozenset()

Graph = dict[str, dict[str, list[str]]]


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _node_of(module: str, root: Path) -> str | None:
    """Graph node of a dotted module: its sub-package, ``<top>.<module>`` or ``<top>``."""
    top = root.name
    parts = module.split(".")
    if parts[0] != top:
        return None  # not ours (numpy, tvm, torch, ...)
    if len(parts) > 1 and (root / parts[1] / "__init__.py").is_file():
        return parts[1]
    if len(parts) > 1 and (root / f"{parts[1]}.py").is_file():
        return f"{top}.{parts[1]}"
    return top


def imported_modules(path: Path, root: Path = ROOT) -> list[tuple[str, int]]:
    """Absolute module names (with line numbers) that one file imports, at any depth.

    Parameters
    ----------
    path : Path
        A ``.py`` file under ``root``.
    root : Path
        The top-level package directory.

    Returns
    -------
    list of (str, int)
        For ``from M import a`` both ``M`` and ``M.a`` (``a`` may be a sub-module), except the
        bare top-level package of ``from tvm_bsp import speech``: the name decides there.
    """
    module = _module_name(path, root)
    anchor_parts = module.split(".")
    if path.name != "__init__.py":
        anchor_parts = anchor_parts[:-1]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = anchor_parts[: len(anchor_parts) - (node.level - 1)]
                base = ".".join([*anchor, node.module] if node.module else anchor)
            else:
                base = node.module or ""
            if base != root.name:
                found.append((base, node.lineno))
            found.extend((f"{base}.{alias.name}", node.lineno) for alias in node.names)
    return found


def package_graph(root: Path = ROOT) -> Graph:
    """Package dependency graph with the import sites behind each edge.

    Parameters
    ----------
    root : Path
        The top-level package directory (``tvm_bsp/``).

    Returns
    -------
    dict
        ``graph[a][b]`` lists the ``"path:line"`` sites where a module of ``a`` imports from
        ``b`` (``a != b``); every node is a key.
    """
    graph: Graph = {}
    files = sorted(root.rglob("*.py"))
    for path in files:
        source = _node_of(_module_name(path, root), root)
        assert source is not None
        deps = graph.setdefault(source, {})
        for target_module, line in imported_modules(path, root):
            target = _node_of(target_module, root)
            if target is None or target == source:
                continue
            graph.setdefault(target, {})
            site = f"{path.relative_to(root.parent)}:{line}"
            sites = deps.setdefault(target, [])
            if site not in sites:
                sites.append(site)
    return graph


def elementary_cycles(graph: Graph) -> list[list[str]]:
    """Every simple cycle once, starting at its smallest node (``[a, b, ..., a]``)."""
    cycles: list[list[str]] = []

    def walk(start: str, node: str, path: list[str]) -> None:
        for succ in sorted(graph[node]):
            if succ == start:
                cycles.append([*path, start])
            elif succ > start and succ not in path:
                walk(start, succ, [*path, succ])

    for start in sorted(graph):
        walk(start, start, [start])
    return sorted(cycles, key=lambda c: (len(c), c))


def describe(cycle: list[str], graph: Graph) -> str:
    """One cycle as ``a -> b -> a`` plus the first import site of every hop."""
    hops = []
    for a, b in itertools.pairwise(cycle):
        sites = graph[a][b]
        more = f" (+{len(sites) - 1} more)" if len(sites) > 1 else ""
        hops.append(f"    {a} -> {b}: {sites[0]}{more}")
    return " -> ".join(cycle) + "\n" + "\n".join(hops)


def offending_cycles(graph: Graph) -> list[list[str]]:
    """The cycles not covered by :data:`EXEMPT_PACKAGES`."""
    return [c for c in elementary_cycles(graph) if not EXEMPT_PACKAGES.intersection(c)]


def _write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_checker_finds_a_cycle_hidden_in_functions(tmp_path: Path) -> None:
    """A cycle made only of function-level and relative imports is found, with its path."""
    root = tmp_path / "tvm_bsp"
    _write(root, "__init__.py", "")
    _write(root, "tools.py", "from tvm_bsp.low import x\n")
    _write(root, "low/__init__.py", "from .core import x\n")
    _write(root, "low/core.py", "def x():\n    from ..mid import helpers\n")
    _write(root, "mid/__init__.py", "")
    _write(root, "mid/helpers.py", "def f():\n    if True:\n        from ..high.api import g\n")
    _write(root, "high/__init__.py", "")
    _write(
        root, "high/api.py", "import numpy\nfrom tvm_bsp import low\nfrom tvm_bsp import tools\n"
    )
    graph = package_graph(root)
    assert graph["low"] == {"mid": ["tvm_bsp/low/core.py:2"]}
    assert graph["mid"] == {"high": ["tvm_bsp/mid/helpers.py:3"]}
    assert graph["high"] == {
        "low": ["tvm_bsp/high/api.py:2"],
        "tvm_bsp.tools": ["tvm_bsp/high/api.py:3"],
    }
    assert elementary_cycles(graph) == [
        ["high", "low", "mid", "high"],
        ["high", "tvm_bsp.tools", "low", "mid", "high"],
    ]
    text = describe(elementary_cycles(graph)[0], graph)
    assert text.splitlines()[0] == "high -> low -> mid -> high"
    assert "low -> mid: tvm_bsp/low/core.py:2" in text


def test_checker_sees_the_real_tree() -> None:
    """Known edges of the real tree: a function-level one and relative ones (no self edges)."""
    graph = package_graph()
    assert "compiler" in graph["tvm_bsp"]  # tvm_bsp/__init__.py, inside __getattr__
    assert "cli" in graph["tvm_bsp.__main__"]
    assert all(node not in deps for node, deps in graph.items())


def test_no_package_cycles() -> None:
    """No import cycle among tvm_bsp's packages (function-level imports included)."""
    graph = package_graph()
    offending = offending_cycles(graph)
    shown = offending[:15]
    more = f"\n  ... and {len(offending) - len(shown)} more" if len(offending) > len(shown) else ""
    assert not offending, (
        f"{len(offending)} package import cycles (shortest first):\n"
        + "\n".join("  " + describe(c, graph) for c in shown)
        + more
    )


def _allowed_in_runtime(module: str, package: str) -> bool:
    """``module`` may be imported by ``tvm_bsp.runtime``: the standard library, numpy, the TVM
    runtime (``tvm``, ``tvm.runtime...``: a device may have TVM's runtime library only) and
    the runtime package itself."""
    top = module.split(".")[0]
    if top in sys.stdlib_module_names or top == "numpy":
        return True
    if top == "tvm":
        return module == "tvm" or module == "tvm.runtime" or module.startswith("tvm.runtime.")
    return module == package or module.startswith(package + ".")


def runtime_imports_outside(root: Path = ROOT) -> list[str]:
    """Imports of ``ROOT/runtime`` (at any depth) that a device with only the shipped files
    cannot satisfy, as ``"path:line: module"``."""
    package = f"{root.name}.runtime"
    bad = []
    for path in sorted((root / "runtime").rglob("*.py")):
        for module, line in imported_modules(path, root):
            if not _allowed_in_runtime(module, package):
                bad.append(f"{path.relative_to(root.parent)}:{line}: {module}")
    return bad


def test_runtime_checker_flags_function_level_imports(tmp_path: Path) -> None:
    """The check sees torch, other tvm_bsp packages and TVM's compiler inside functions."""
    root = tmp_path / "tvm_bsp"
    _write(root, "__init__.py", "")
    _write(root, "runtime/__init__.py", "from .load import load\nfrom tvm_bsp.runtime import x\n")
    _write(
        root,
        "runtime/load.py",
        "from __future__ import annotations\nimport json, os.path\nimport numpy as np\n"
        "import tvm\nfrom tvm.runtime.vm import VirtualMachine\n"
        "def load():\n    import torch\n    from tvm_bsp.compiler import compile_model\n"
        "    from tvm import relax\n    from .. import speech\n    import tvm_bsp\n",
    )
    assert runtime_imports_outside(root) == [
        "tvm_bsp/runtime/load.py:7: torch",
        "tvm_bsp/runtime/load.py:8: tvm_bsp.compiler",
        "tvm_bsp/runtime/load.py:8: tvm_bsp.compiler.compile_model",
        "tvm_bsp/runtime/load.py:9: tvm.relax",
        "tvm_bsp/runtime/load.py:10: tvm_bsp.speech",
        "tvm_bsp/runtime/load.py:11: tvm_bsp",
    ]


def test_runtime_imports_only_numpy_tvm_runtime_and_itself() -> None:
    """tvm_bsp.runtime (what a device gets) imports nothing else, function-level included."""
    bad = runtime_imports_outside()
    assert not bad, "tvm_bsp.runtime imports what a device does not have:\n  " + "\n  ".join(bad)


if __name__ == "__main__":  # a manual report of the graph
    g = package_graph()
    for node in sorted(g):
        print(node, "->", ", ".join(f"{b}({len(s)})" for b, s in sorted(g[node].items())))
    for cyc in elementary_cycles(g):
        print(("[exempt] " if EXEMPT_PACKAGES.intersection(cyc) else "") + describe(cyc, g))
