"""Two structural checks on the first-party packages, run by tests/test_codebase.py.

    python tools/codebase.py cycles     # import cycles, counting function-level imports
    python tools/codebase.py long [N]   # functions longer than N lines (default 60)

Both read source with `ast`; nothing is imported, so a check cannot be fooled by an
import that only happens at run time.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bench", "baselines", "diffsit")
LIMIT = 60


def modules() -> dict[str, Path]:
    """Every first-party module by dotted name (a package by its __init__)."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _resolve(name: str, node: ast.ImportFrom, known: dict[str, Path]) -> list[str]:
    """The first-party modules one `from ... import ...` statement loads."""
    if node.level:
        base = name.split(".")
        if not known[name].name == "__init__.py":
            base = base[:-1]
        base = base[: len(base) - node.level + 1]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    hits = [f"{target}.{alias.name}" for alias in node.names]
    return [h for h in hits if h in known] or ([target] if target in known else [])


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """First-party modules `name` imports anywhere in its body, function level included.

    Imports under `if TYPE_CHECKING:` are left out: they never run.
    """
    tree = ast.parse(path.read_text(), filename=str(path))
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    out = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name in known)
        elif isinstance(node, ast.ImportFrom):
            out.update(_resolve(name, node, known))
    # a submodule import also runs its parent packages' __init__
    closed = set()
    for target in out:
        parts = target.split(".")
        closed.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    closed.discard(name)
    return {t for t in closed if t in known and not name.startswith(t + ".")}


def cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    known = modules()
    graph = {name: imports(name, path, known) for name, path in known.items()}
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            visit(v)
    return found


def long_functions(limit: int = LIMIT) -> list[tuple[str, int, str, int]]:
    """(file, line, qualified name, length) of every function over `limit` lines.

    Length runs from the `def` (decorators excluded) to the last line of the body,
    docstring included.
    """
    out = []
    for path in modules().values():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node, qual in _functions(tree, ""):
            length = node.end_lineno - node.lineno + 1
            if length > limit:
                out.append((str(path.relative_to(ROOT)), node.lineno, qual, length))
    return sorted(out)


def _functions(tree: ast.AST, prefix: str):
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node, prefix + node.name
            yield from _functions(node, prefix + node.name + ".")
        elif isinstance(node, ast.ClassDef):
            yield from _functions(node, prefix + node.name + ".")


def main(argv: list[str]) -> int:
    if argv[:1] == ["cycles"]:
        found = cycles()
        for component in found:
            print("cycle:", " <-> ".join(component))
        return 1 if found else 0
    if argv[:1] == ["long"]:
        limit = int(argv[1]) if len(argv) > 1 else LIMIT
        found = long_functions(limit)
        for path, line, name, length in found:
            print(f"{path}:{line}: {name} is {length} lines (limit {limit})")
        return 1 if found else 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
