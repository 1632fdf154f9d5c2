"""The product's import graph, read from its source with `ast` (nothing is imported).

Every import statement counts, also those inside functions: a deferred import that dodges
a cycle at load time is still a cycle in the design. Only `if TYPE_CHECKING:` blocks are
left out (they never run)."""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

SRC = Path(__file__).resolve().parents[3] / "src"


@dataclass(frozen=True)
class Import:
    target: str          # dotted module name as written (relative imports resolved)
    line: int
    deferred: bool       # inside a function: runs when called, not at import time


@dataclass
class Module:
    name: str
    path: Path
    is_package: bool
    imports: list[Import] = field(default_factory=list)
    calls: list[tuple[str, int]] = field(default_factory=list)   # dotted callee names, line


def _is_type_checking(test: ast.expr) -> bool:
    return "TYPE_CHECKING" in ast.unparse(test)


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else f"?.{node.attr}"
    if isinstance(node, ast.Call):          # datetime.datetime.now(tz).isoformat() -> ?.now
        return "?"
    return None


def _read(module: Module, known: set[str]) -> None:
    package = module.name if module.is_package else module.name.rpartition(".")[0]

    def visit(nodes: Iterable[ast.AST], deferred: bool) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and _is_type_checking(node.test):
                visit(node.orelse, deferred)
                continue
            if isinstance(node, ast.Import):
                module.imports += [Import(a.name, node.lineno, deferred) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    parts = parts[: len(parts) - (node.level - 1)]
                    base = ".".join(parts + ([node.module] if node.module else []))
                module.imports.append(Import(base, node.lineno, deferred))
                # `from pkg import sub` imports the submodule pkg.sub
                module.imports += [Import(f"{base}.{a.name}", node.lineno, deferred)
                                   for a in node.names if f"{base}.{a.name}" in known]
            elif isinstance(node, ast.Call):
                name = _dotted(node.func)
                if name:
                    module.calls.append((name, node.lineno))
            inner = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            visit(ast.iter_child_nodes(node), deferred or inner)

    visit(ast.parse(module.path.read_text(), str(module.path)).body, False)


def read_package(root: Path, name: str) -> dict[str, Module]:
    """Every module of the package `name` found under `root`, with its imports and calls."""
    modules: dict[str, Module] = {}
    for path in sorted((root / name.replace(".", "/")).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        modules[".".join(parts)] = Module(".".join(parts), path, is_package)
    for module in modules.values():
        _read(module, set(modules))
    return modules


def internal_edges(modules: dict[str, Module]) -> dict[str, set[str]]:
    """module -> the package modules it imports. Importing a.b.c also runs a and a.b, so
    those count too, except a module's own enclosing packages (already being imported)."""
    edges: dict[str, set[str]] = {}
    for name, module in modules.items():
        targets = set()
        for imp in module.imports:
            parts = imp.target.split(".")
            for i in range(1, len(parts) + 1):
                candidate = ".".join(parts[:i])
                if candidate in modules and candidate != name and not name.startswith(candidate + "."):
                    targets.add(candidate)
        edges[name] = targets
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                connect(w)
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

    for v in sorted(edges):
        if v not in index:
            connect(v)
    return sorted(found)


def reachable(edges: dict[str, set[str]], start: str, modules: dict[str, Module]) -> Iterator[str]:
    """`start` and every package module loaded when it is imported (import-time edges only:
    a deferred import in a module the pure code uses does not run with it)."""
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        yield name
        eager = {i.target for i in modules[name].imports if not i.deferred}
        todo += [t for t in edges[name]
                 if any(e == t or e.startswith(t + ".") for e in eager)]
