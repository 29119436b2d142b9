"""Which package modules a stage script runs, read from the imports in the source (no import is
executed, so the Snakefile can call this at parse time without torch).

A rule lists these files as inputs, so editing a module reruns exactly the stages whose scripts
import it, directly or through other modules, including imports inside functions.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

PACKAGE = "vaegaps"
SRC = Path(__file__).resolve().parent


def _imported(tree: ast.AST, current: str | None) -> set[str]:
    """Names of the package modules imported anywhere in `tree` (`current`: the module's own
    name, for relative imports; None for a script outside the package)."""
    found = set()
    for node in _nodes(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: only inside the package, which is flat
                base = node.module
                names = [base] if base else [a.name for a in node.names]
                names = [f"{PACKAGE}.{n}" for n in names]
            else:
                base = node.module or ""
                names = [base] + ([f"{base}.{a.name}" for a in node.names] if base == PACKAGE else [])
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == PACKAGE and len(parts) > 1 and (SRC / f"{parts[1]}.py").is_file():
                found.add(parts[1])
    found.discard(current)
    return found


def _nodes(tree: ast.AST):
    """Every node of `tree` except the bodies of PEP 562 `__getattr__` functions: those import
    on attribute access (the package's lazy public API), not when the module runs."""
    todo = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.FunctionDef) and node.name == "__getattr__":
            continue
        yield node
        todo.extend(ast.iter_child_nodes(node))


@cache
def _module_imports(module: str) -> frozenset[str]:
    path = SRC / f"{module}.py"
    return frozenset(_imported(ast.parse(path.read_text(), str(path)), module))


def script_modules(script: str | Path) -> list[str]:
    """Every package module `script` imports, transitively, plus the package's __init__ (run by
    any import of the package), sorted."""
    script = Path(script)
    todo = ["__init__", *_imported(ast.parse(script.read_text(), str(script)), None)]
    seen: set[str] = set()
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(_module_imports(m))
    return sorted(seen)


def script_code(script: str | Path) -> list[str]:
    """The source files of `script_modules(script)`: a rule's code inputs."""
    return [str(SRC / f"{m}.py") for m in script_modules(script)]
