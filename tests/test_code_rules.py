"""Rules a newcomer can rely on, checked on the source (AST): short functions, no private imports.

Complexity (ruff C901 <= 20) and statement counts (PLR0915 <= 60) are checked by ``make lint``;
length is checked here because no linter counts a function's lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("align_core", "align_assets", "analysis", "align_demo")
MAX_FUNCTION_LINES = 80


def python_files(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (REPO / folder).rglob("*.py"))


def function_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines from ``def`` to the last line of the body, the docstring not counted."""
    body = node.body
    docstring = 0
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        if isinstance(body[0].value.value, str):
            docstring = (body[0].end_lineno or body[0].lineno) - body[0].lineno + 1
    return (node.end_lineno or node.lineno) - node.lineno + 1 - docstring


def long_functions(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return [
        f"{path.relative_to(REPO)}:{node.lineno} {node.name} has {function_lines(node)} lines"
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and function_lines(node) > MAX_FUNCTION_LINES
    ]


def private_imports(path: Path) -> list[str]:
    """``from project.module import _name``: a private name used outside its module."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return [
        f"{path.relative_to(REPO)}:{node.lineno} imports {node.module}.{alias.name}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
        if node.module.split(".")[0] in PACKAGES
        for alias in node.names
        if alias.name.startswith("_")
    ]


@pytest.mark.parametrize("package", PACKAGES)
def test_no_function_over_80_lines(package: str) -> None:
    offenders = [line for path in python_files(package) for line in long_functions(path)]
    assert offenders == [], "\n".join(offenders)


def test_no_private_name_is_imported_across_modules() -> None:
    offenders = [line for path in python_files(*PACKAGES, "tests", "bench") for line in private_imports(path)]
    assert offenders == [], "\n".join(offenders)


def test_the_rules_see_what_they_forbid(tmp_path: Path) -> None:
    """Neither check passes vacuously."""
    probe = REPO / "tests" / "_probe_code_rules.py"
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    probe.write_text(f'def f():\n    """Doc."""\n{body}\n\nfrom align_core.lazy import _hidden\n')
    try:
        assert len(long_functions(probe)) == 1
        assert len(private_imports(probe)) == 1
    finally:
        probe.unlink()


def test_every_package_init_declares_its_public_api() -> None:
    missing = [
        str(init.relative_to(REPO))
        for init in python_files(*PACKAGES)
        if init.name == "__init__.py" and "__all__" not in init.read_text()
    ]
    assert missing == []
