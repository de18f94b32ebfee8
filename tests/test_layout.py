"""
The house rules a reader relies on: modules of one idea, short functions, and private modules
that never import the public API.
"""

from __future__ import annotations

import ast
from pathlib import Path

import async_consumer

SOURCE = Path(async_consumer.__file__).parent
MAX_MODULE_LINES = 600
"""A sanity bound, not a target: cohesion decides where a module splits, not its length."""
MAX_FUNCTION_LINES = 40
PUBLIC_ENTRY_POINTS = {"Consumer.__init__", "Worker.__init__"}
"""Documented public entry points allowed to be longer (one parameter a line)."""


def _modules() -> list[Path]:
    return sorted(SOURCE.rglob("*.py"))


def _functions(tree: ast.AST, prefix: str = "") -> list[tuple[str, int]]:
    found = []
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.ClassDef):
            found += _functions(node, f"{prefix}{node.name}.")
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            assert node.end_lineno is not None
            found.append((f"{prefix}{node.name}", node.end_lineno - node.lineno + 1))
            found += _functions(node, f"{prefix}{node.name}.")
    return found


def test_no_module_is_over_600_lines() -> None:
    """A module over the sanity bound has grown past one idea."""
    long = {
        str(path.relative_to(SOURCE)): n
        for path in _modules()
        if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}


def test_no_function_is_over_40_lines() -> None:
    """Functions are short, but for the documented public entry points."""
    long = {}
    for path in _modules():
        for name, length in _functions(ast.parse(path.read_text())):
            if length > MAX_FUNCTION_LINES and name not in PUBLIC_ENTRY_POINTS:
                long[f"{path.relative_to(SOURCE)}:{name}"] = length
    assert long == {}


def test_private_modules_never_import_the_package() -> None:
    """The public API imports the modules, never the other way round (no cycle through it)."""
    offenders = []
    for path in _modules():
        if path.name == "__init__.py" and path.parent == SOURCE:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module is None and node.level > 0:
                package = path.parent
                for _ in range(node.level - 1):
                    package = package.parent
                if package == SOURCE:
                    offenders.append(str(path.relative_to(SOURCE)))
            if isinstance(node, ast.Import) and any(a.name == "async_consumer" for a in node.names):
                offenders.append(str(path.relative_to(SOURCE)))
    assert offenders == []
