"""The package's shape: layers import downwards only, no import cycles (function-level imports included), and
no module grows past 400 lines."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "vtg_rl"
MAX_LINES = 400
#: package -> packages it must never import (the model families never import each other; the shared core
#: imports no family)
FORBIDDEN = {
    "heads": {"mllm"},
    "mllm": {"heads"},
    "data": {"mllm", "heads", "agents", "training"},
    "spans": {"mllm", "heads", "agents", "data"},
    "rewards": {"mllm", "heads", "agents"},
    "metrics": {"mllm", "heads", "agents"},
    "models": {"mllm", "heads", "agents"},
    "training": {"mllm", "heads", "agents"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def resolve(name: str):
    """The module a dotted import name lands in (a package's submodule, or the package itself)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(path: Path) -> set[str]:
    """Every vtg_rl module ``path`` imports, at any depth of the code (inside functions too)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(resolve(a.name) for a in node.names if a.name.startswith("vtg_rl"))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("vtg_rl"):
            for a in node.names:
                full = f"{node.module}.{a.name}"
                out.add(full if full in MODULES else resolve(node.module))
    out.discard(None)
    out.discard(module_name(path))
    return out


GRAPH = {m: imports_of(p) for m, p in MODULES.items()}


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_layers_import_downwards_only():
    upward = [f"{m} -> {t}" for m, targets in sorted(GRAPH.items()) for t in sorted(targets)
              if layer(t) in FORBIDDEN.get(layer(m), ())]
    assert not upward, "\n".join(upward)


def test_no_import_cycles():
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
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
            if len(component) > 1 or v in GRAPH[v]:
                cycles.append(sorted(component))

    for v in GRAPH:
        if v not in index:
            visit(v)
    assert not cycles, cycles


def test_no_module_over_400_lines():
    long = {str(p.relative_to(ROOT)): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, long
