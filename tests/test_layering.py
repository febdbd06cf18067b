"""The package's layers, as its docstring lists them: no import cycle, no import that goes up.

Every module is parsed with ``ast``; imports inside functions count as much as those at the top
(an import hidden in a function is still a dependency, only a later one).
"""
import ast

from conftest import REPO

import fsyncstudy

PKG = REPO / "fsyncstudy"


def module_name(path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in PKG.rglob("*.py")}


def imports_of(name: str) -> set[str]:
    """The package's modules that ``name`` imports, anywhere in its source."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                mod = alias.name
                while mod and mod not in MODULES:
                    mod = mod.rpartition(".")[0]
                if mod:
                    out.add(mod)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                mod = ".".join(x for x in (base, node.module) if x)
            else:
                mod = node.module or ""
            if not mod.startswith("fsyncstudy"):
                continue
            for alias in node.names:
                sub = f"{mod}.{alias.name}"
                out.add(sub if sub in MODULES else mod)  # a submodule, or a name from the module
    out.discard(name)
    return {m for m in out if m in MODULES}


GRAPH = {m: imports_of(m) for m in MODULES}


def layers() -> dict[str, int]:
    """Each module's layer number, read from the numbered list in the package docstring."""
    return fsyncstudy.layers()


def layer_of(module: str, table: dict[str, int]) -> int | None:
    while module:
        if module in table:
            return table[module]
        module = module.rpartition(".")[0]
    return None


def cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in GRAPH[v]:
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

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    return out


def test_the_import_graph_was_read():
    # the graph is not empty by accident: a few edges every version has
    assert "fsyncstudy.engine" in GRAPH["fsyncstudy.trial"]
    assert "fsyncstudy.strategies" in GRAPH["fsyncstudy.engine"]
    assert "fsyncstudy.lab.core" in GRAPH["fsyncstudy.lab"]


def test_there_is_no_import_cycle():
    assert cycles() == []


def test_every_module_has_a_layer():
    table = layers()
    assert len(table) >= 20, table
    assert [m for m in MODULES if layer_of(m, table) is None] == []


def test_no_import_goes_up_the_layers():
    table = layers()
    up = sorted((m, d, layer_of(m, table), layer_of(d, table)) for m, deps in GRAPH.items() for d in deps
                if layer_of(d, table) > layer_of(m, table))
    assert up == [], "\n".join(f"{m} (layer {a}) imports {d} (layer {b})" for m, d, a, b in up)
