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
SRC = Path(__file__).resolve().parent.parent  # src/vaegaps


def _resolve(rel: list[str]) -> str | None:
    """The module name (dotted, inside the package; a package's own file is NAME.__init__) of the
    package path `rel`, or None where no such file is."""
    if (SRC.joinpath(*rel[:-1], f"{rel[-1]}.py") if rel else SRC / "__init__.py").is_file():
        return ".".join(rel) if rel else "__init__"
    if rel and (SRC.joinpath(*rel) / "__init__.py").is_file():
        return ".".join([*rel, "__init__"])
    return None


def _with_packages(name: str) -> list[str]:
    """`name` and the __init__ of every subpackage it lies in (importing it runs them)."""
    parts = name.split(".")
    return [name, *(".".join([*parts[:i], "__init__"]) for i in range(1, len(parts)) if parts[i] != "__init__")]


def _imported(tree: ast.AST, current: str | None) -> set[str]:
    """Names of the package modules imported anywhere in `tree` (`current`: the module's own
    dotted name, for relative imports; None for a script outside the package)."""
    found = set()
    package = current.split(".")[:-1] if current else []
    for node in _nodes(tree):
        if isinstance(node, ast.Import):
            paths = [a.name.split(".") for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: only inside the package
                base = [PACKAGE, *package[:len(package) - (node.level - 1)], *(node.module or "").split(".")]
                base = [b for b in base if b]
            else:
                base = (node.module or "").split(".")
            paths = [base] + [[*base, a.name] for a in node.names]
        else:
            continue
        for path in paths:
            if path[0] == PACKAGE and len(path) > 1 and (name := _resolve(path[1:])) is not None:
                found.update(_with_packages(name))
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


def _path(module: str) -> Path:
    return SRC.joinpath(*module.split(".")).with_suffix(".py")


@cache
def _module_imports(module: str) -> frozenset[str]:
    path = _path(module)
    return frozenset(_imported(ast.parse(path.read_text(), str(path)), module))


def script_modules(script: str | Path) -> list[str]:
    """Every package module `script` imports, transitively, plus the package's __init__ (run by
    any import of the package), sorted; a subpackage's module is dotted (pipeline.stage)."""
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
    return [str(_path(m)) for m in script_modules(script)]
