"""The import picture of splitopt at a git revision (or the working tree): circles and arrows.

    python tools/import_graph.py [REV ...]

For each revision: every ``import`` of a splitopt module (function-level imports included: a lazy
import is still a dependency; ``if TYPE_CHECKING:`` blocks excluded), grouped by package
(``splitopt.X``; ``formulations/`` is ``splitopt.formulations``, ``benchmarks/`` is
``splitopt.benchmarks``). Prints the module circles (strongly connected components), the package
circles, and private modules (``_x.py``) imported from another package.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import networkx as nx

ROOTS = {"splitopt": "splitopt", "formulations": "splitopt.formulations",
         "benchmarks": "splitopt.benchmarks"}


def _files(rev: str | None) -> dict[str, str]:
    """{module name: source} at ``rev`` (None: the working tree)."""
    out = {}
    if rev is None:
        paths = [str(p) for root in ROOTS for p in Path(root).rglob("*.py")]
    else:
        paths = subprocess.run(["git", "ls-tree", "-r", "--name-only", rev, *ROOTS],
                               capture_output=True, text=True, check=True).stdout.split()
    for path in paths:
        if not path.endswith(".py"):
            continue
        parts = Path(path).with_suffix("").parts
        mod = ".".join([ROOTS[parts[0]], *parts[1:]]).removesuffix(".__init__")
        src = (Path(path).read_text() if rev is None else
               subprocess.run(["git", "show", f"{rev}:{path}"], capture_output=True, text=True,
                              check=True).stdout)
        out[mod] = src
    return out


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for sub in node.body:
                lines.update(range(sub.lineno, (sub.end_lineno or sub.lineno) + 1))
    return lines


def module_graph(rev: str | None) -> nx.DiGraph:
    """Module -> imported splitopt module (the longest known prefix of each import)."""
    files = _files(rev)
    g = nx.DiGraph()
    g.add_nodes_from(files)
    for mod, src in files.items():
        tree = ast.parse(src)
        skip = _type_checking_lines(tree)
        pkg = mod if src and mod in files and any(
            k.startswith(mod + ".") for k in files) else mod.rpartition(".")[0]
        for node in ast.walk(tree):
            if getattr(node, "lineno", None) in skip:
                continue
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                                    + ([base] if base else []))
                names = [f"{base}.{a.name}" for a in node.names] + [base]
            for name in names:
                while name and name not in files:
                    name = name.rpartition(".")[0]
                if name and name != mod:
                    g.add_edge(mod, name)
    return g


def package(mod: str) -> str:
    """``splitopt.X`` of a module (top-level modules are their own package)."""
    return ".".join(mod.split(".")[:2])


def report(rev: str | None, facade: bool = True) -> str:
    """The circles and cross-package private imports, as text.

    ``facade=False`` drops the imports of the root package ``splitopt`` itself (its
    ``__init__`` re-exports the public API, so any ``from splitopt import X`` inside the package
    closes a circle through it): what is left are the circles between the packages themselves.
    """
    g = module_graph(rev)
    if not facade:
        g.remove_edges_from([(a, b) for a, b in g.edges if b == "splitopt"])
    lines = [f"## {rev or 'working tree'}{'' if facade else ' (without the root facade)'}: "
             f"{g.number_of_nodes()} modules, {g.number_of_edges()} imports"]
    circles = [sorted(c) for c in nx.strongly_connected_components(g) if len(c) > 1]
    lines.append(f"module circles: {len(circles)}")
    for c in sorted(circles, key=len, reverse=True):
        pk = sorted({package(m) for m in c})
        shown = ", ".join(c) if len(c) <= 8 else f"{', '.join(c[:8])}, ... ({len(c) - 8} more)"
        lines.append(f"  {len(c)} modules over {len(pk)} package(s): {shown}")
    pg = nx.DiGraph()
    pg.add_edges_from((package(a), package(b)) for a, b in g.edges if package(a) != package(b))
    pcircles = [sorted(c) for c in nx.strongly_connected_components(pg) if len(c) > 1]
    lines.append(f"package circles: {len(pcircles)}")
    for c in pcircles:
        back = sorted(f"{a} -> {b}" for a, b in g.edges
                      if package(a) in c and package(b) in c and package(a) != package(b))
        lines.append(f"  {' <-> '.join(c)}  ({len(back)} module imports inside it)")
    private = sorted(f"{a} -> {b}" for a, b in g.edges
                     if b.rpartition(".")[2].startswith("_") and not b.endswith("__init__")
                     and b.rpartition(".")[0] != a.rpartition(".")[0]
                     and b.rpartition(".")[0] != a)
    lines.append(f"private modules imported from another package: {len(private)}")
    lines += [f"  {p}" for p in private]
    return "\n".join(lines)


if __name__ == "__main__":
    revs = sys.argv[1:] or [None]
    print("\n\n".join(report(None if r == "." else r, facade) for r in revs
                        for facade in (True, False)))
