"""The modules of genlab depend on each other in one direction: no import circle, not even through an import
inside a function (those only hide a circle until the day they run first)."""

import ast
from pathlib import Path

import genlab

PACKAGE = Path(genlab.__file__).parent


def import_graph() -> dict[str, set[str]]:
    """Module -> the genlab modules it imports, anywhere in its source (`from genlab.x import y` counts as
    genlab.x.y when that is a module, else as genlab.x)."""
    modules = {}
    for file in PACKAGE.rglob("*.py"):
        parts = file.relative_to(PACKAGE.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = file

    def owner(name: str) -> str:
        while name not in modules:
            name = name.rpartition(".")[0]
        return name

    graph = {}
    for name, file in modules.items():
        package = name if file.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.Import):
                targets |= {owner(a.name) for a in node.names if a.name.split(".")[0] == "genlab"}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join([*package.split(".")[: len(package.split(".")) - node.level + 1], base]).strip(".")
                if base.split(".")[0] == "genlab":
                    targets |= {f"{base}.{a.name}" if f"{base}.{a.name}" in modules else owner(base)
                                for a in node.names}
        graph[name] = targets - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The circles of a directed graph: each a path that returns to its start (depth-first search)."""
    found, done = [], set()

    def visit(node, path):
        if node in path:
            found.append(path[path.index(node):] + [node])
            return
        if node in done:
            return
        for target in sorted(graph.get(node, ())):
            visit(target, path + [node])
        done.add(node)

    for node in sorted(graph):
        visit(node, [])
    return found


def test_the_cycle_finder_finds_a_planted_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_imports_inside_functions():
    graph = import_graph()
    assert "genlab.metrics.quality" in graph["genlab.train"]  # the monitor, imported where it is used
    assert "genlab.data.core" in graph["genlab.data.load"]


def test_genlab_has_no_import_circle():
    assert cycles(import_graph()) == []
