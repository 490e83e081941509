"""The package's import graph: no cycle anywhere, and arrows only one way (cli → render → views → sources →
engine/models/weights/families → configs), as docs/architecture.md draws it. Read from the source with `ast`, so a
new import that breaks the rule fails here rather than as a slow start or a cycle found in review.

Every import counts: at the top, inside functions, and under `if TYPE_CHECKING:` — an import only for
annotations is still an arrow a reader follows, and a circle hidden behind one is still a circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import unetinspect

ROOT = Path(unetinspect.__file__).parent
# Rooms by layer: a module imports only from its own layer or below.
LAYERS = {
    "errors": 0, "files": 0, "configs": 0, "presets": 0,
    "weights": 1, "families": 1, "models": 1, "engine": 1,
    "sources": 2,
    "views": 3,
    "render": 4,
    "cli": 5, "cli_runtime": 5, "cli_options": 5, "cli_signals": 5, "__main__": 5, "__init__": 5,
}


def module_name(path: Path) -> str:
    parts = ["unetinspect", *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, modules: set[str]) -> set[str]:
    """The unetinspect modules `path` imports anywhere: at the top, inside functions, for type checking."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("unetinspect"):
            for alias in node.names:
                name = f"{node.module}.{alias.name}"
                found.add(name if name in modules else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("unetinspect"))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return {m for m in found if m in modules}


def graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in ROOT.rglob("*.py")}
    return {name: imports(path, set(paths)) - {name} for name, path in paths.items()}


def room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_there_is_no_import_cycle():
    edges = graph()
    cycles = []
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def walk(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt):], nxt])
            elif nxt not in state:
                walk(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            walk(node, [node])
    assert not cycles, f"import cycles: {cycles}"


def test_imports_run_one_way_down_the_layers():
    wrong = [f"{a} → {b}" for a, deps in graph().items() for b in deps
             if a != "unetinspect" and LAYERS[room(a)] < LAYERS[room(b)]]
    assert not wrong, f"imports against the layers: {wrong}"


def test_every_room_has_a_layer():
    assert {room(m) for m in graph() if m != "unetinspect"} <= set(LAYERS)
