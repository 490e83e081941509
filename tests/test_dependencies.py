"""What the package imports is what pyproject declares, and the other way round.

A fresh `pip install -e .` holds the declared runtime dependencies and nothing else; the test extra brings many
more (diffusers pulls click, numpy, Pillow…), so an undeclared import passes every other test and fails only a
newcomer (`No module named 'click'`). Read from the source with `ast`, like test_import_graph.py: every import
counts — at the top, inside functions, under `if TYPE_CHECKING:` (a type checker needs those too).
"""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import tomllib

import unetinspect

ROOT = Path(unetinspect.__file__).parent
PYPROJECT = tomllib.loads((ROOT.parent / "pyproject.toml").read_text())["project"]


def normalized(requirement: str) -> str:
    """A requirement's distribution name as PEP 503 compares them: `Pillow>=10` → `pillow`."""
    name = re.split(r"[<>=!~\[;\s]", requirement, maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def third_party_imports() -> dict[str, set[str]]:
    """Top-level module name → the package modules that import it, for every module outside the standard library."""
    found: dict[str, set[str]] = {}
    for path in ROOT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names = [node.module]
            elif _imports_by_name(node):  # importlib.import_module("diffusers"): an import all the same
                names = [node.args[0].value]  # type: ignore[attr-defined]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in ("unetinspect", "__future__"):
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT.parent)))
    return found


def _imports_by_name(node: ast.AST) -> bool:
    return (isinstance(node, ast.Call) and ast.unparse(node.func) in ("importlib.import_module", "__import__")
            and bool(node.args) and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str))


def distributions_of(module: str) -> set[str]:
    """The installed distributions that provide a top-level module (`PIL` → pillow), or the module's own name."""
    return {normalized(d) for d in packages_distributions().get(module, [module])}


def test_every_import_is_declared():
    runtime = {normalized(r) for r in PYPROJECT["dependencies"]}
    extras = {name: {normalized(r) for r in requirements}
              for name, requirements in PYPROJECT.get("optional-dependencies", {}).items() if name != "test"}
    declared = runtime.union(*extras.values())
    undeclared = {module: sorted(users) for module, users in third_party_imports().items()
                  if not distributions_of(module) & declared}
    assert not undeclared, f"imported but not declared in pyproject (runtime or a feature's extra): {undeclared}"


def test_every_runtime_dependency_is_imported():
    imported = set().union(*(distributions_of(module) for module in third_party_imports()))
    unused = {normalized(r) for r in PYPROJECT["dependencies"]} - imported
    assert not unused, f"declared as runtime dependencies but imported nowhere in the package: {sorted(unused)}"


def test_the_walk_sees_function_level_and_type_checking_imports():
    """The checks above are only as good as the walk: diffusers is imported only by name, inside a function."""
    imports = third_party_imports()
    assert "diffusers" in imports and "torch" in imports and "typer" in imports
    assert "click" not in imports  # typer's own API (typer.Context) instead: typer ≥ 0.29 no longer needs click
