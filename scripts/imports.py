"""The house's import graph: cycles among ops' modules, and private names used across them.

    python scripts/imports.py          # a summary; exit 1 if there is a cycle
    python scripts/imports.py --list   # every edge, and where each private name is used

Every import counts, the ones inside functions too (a deferred import is still a
dependency). A private name is one that starts with ``_`` (dunders excepted): used from
another module (``from ops.lab import _client`` or ``lab._client``), it is listed.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "ops"


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def read() -> tuple[dict[str, set[str]], list[str]]:
    """module -> the ops modules it imports; and each cross-module private use."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    edges: dict[str, set[str]] = {m: set() for m in modules}
    private: list[str] = []
    for mod, path in sorted(modules.items()):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        aliases: dict[str, str] = {}  # local name -> the ops module it stands for
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name in modules:
                        edges[mod].add(a.name)
                        aliases[(a.asname or a.name).split(".")[0]] = a.name
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]
                                    + ([base] if base else []))
                for a in node.names:
                    sub = f"{base}.{a.name}"
                    if sub in modules:
                        edges[mod].add(sub)
                        aliases[a.asname or a.name] = sub
                    elif base in modules:
                        edges[mod].add(base)
                        if _private(a.name):
                            private.append(f"{mod}: from {base} import {a.name}")
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in aliases and _private(node.attr)
                    and aliases[node.value.id] != mod):
                private.append(f"{mod}: {aliases[node.value.id]}.{node.attr}")
        edges[mod].discard(mod)
    return edges, sorted(set(private))


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--list", action="store_true", help="print every edge and private use")
    args = ap.parse_args()
    edges, private = read()
    found = cycles(edges)
    if args.list:
        for mod in sorted(edges):
            print(f"{mod} -> {', '.join(sorted(edges[mod])) or '-'}")
    print(f"{len(edges)} modules, {sum(map(len, edges.values()))} imports")
    print(f"import cycles: {len(found)}")
    for comp in found:
        print("  " + " <-> ".join(comp))
    print(f"private names used from another module: {len(private)}")
    for use in private:
        print("  " + use)
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
