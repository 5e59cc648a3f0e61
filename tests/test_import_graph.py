"""No import cycles among napari_fibsem modules.

A cycle makes import order matter and hides which module owns a concept, so the whole package graph
must be acyclic. grimp records every import statement, including those inside functions and under
``TYPE_CHECKING`` (both still tie the modules together), and a package ``__init__`` counts as its
own module: ``pkg/__init__`` importing ``pkg.a`` is fine, but ``pkg.a`` importing back from ``pkg``
then closes a cycle.
"""

from __future__ import annotations

import grimp

PACKAGE = "napari_fibsem"


def _strongly_connected(adjacency: dict[str, list[str]]) -> list[list[str]]:
    """Components with more than one module (or a self-import): Tarjan's algorithm, iterative."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in adjacency:
        if root in index:
            continue
        work = [(root, iter(adjacency[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(adjacency[child])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in adjacency[node]:
                    found.append(sorted(component))
    return found


def _describe(graph: grimp.ImportGraph, component: list[str]) -> str:
    """One readable chain per import inside the component: ``a:12 -> b``."""
    members = set(component)
    lines = []
    for importer in component:
        for imported in sorted(graph.find_modules_directly_imported_by(importer) & members):
            details = graph.get_import_details(importer=importer, imported=imported)
            where = ",".join(str(d["line_number"]) for d in details)
            lines.append(f"    {importer}:{where} -> {imported}")
    return "\n".join(lines)


def find_cycles() -> list[str]:
    """Every cycle in the package's import graph, each as a readable block."""
    graph = grimp.build_graph(
        PACKAGE, include_external_packages=False, exclude_type_checking_imports=False, cache_dir=None
    )
    adjacency = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in sorted(graph.modules)}
    return [f"cycle among {', '.join(c)}:\n{_describe(graph, c)}" for c in _strongly_connected(adjacency)]


def test_strongly_connected_finds_cycles_and_self_imports():
    graph = {"a": ["b"], "b": ["c"], "c": ["a"], "d": ["d"], "e": ["a"]}
    assert sorted(_strongly_connected(graph)) == [["a", "b", "c"], ["d"]]


def test_no_import_cycles():
    cycles = find_cycles()
    assert not cycles, "import cycles:\n" + "\n".join(cycles)
