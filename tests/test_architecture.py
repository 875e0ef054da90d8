"""The package's layering: no import cycles, and a core that knows neither AnnData nor scvi.

Read from the source with :mod:`ast` (no import side effects): every ``import`` and
``from ... import`` statement counts, also those inside functions (deferred imports hide
cycles rather than remove them).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "scvi_causal"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> tuple[set[str], set[str]]:
    """Package modules and top-level external packages imported by ``path``."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    internal, external = set(), set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [target] + [f"{target}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for n in names:
            if n in modules and n != name:
                internal.add(n)
            elif not n.startswith("scvi_causal"):
                external.add(n.split(".")[0])
    return internal, external


@pytest.fixture(scope="module")
def graph():
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    modules = set(paths)
    return {m: _imports(p, modules) for m, p in paths.items()}


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
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

    for v in edges:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles(graph):
    edges = {m: internal for m, (internal, _) in graph.items()}
    assert _cycles(edges) == []


def test_cycle_detection_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize(
    "layer", ["scvi_causal.core", "scvi_causal._constants", "scvi_causal._encoding"]
)
def test_lower_layers_import_neither_anndata_nor_scvi_nor_the_model(graph, layer):
    for module, (internal, external) in graph.items():
        if module != layer and not module.startswith(layer + "."):
            continue
        assert not external & {"anndata", "scvi", "scanpy"}, (module, external)
        upper = {
            m
            for m in internal
            if m.startswith(
                (
                    "scvi_causal.model",
                    "scvi_causal.module",
                    "scvi_causal.train",
                    "scvi_causal.images",
                )
            )
        }
        assert not upper, (module, upper)
