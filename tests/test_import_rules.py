"""Package boundaries, checked on the source (an AST walk over every import, lazy ones included).

- ``align_core`` (the library) and ``analysis`` (statistics) never import the Dagster layer
  (``align_assets``), Dagster itself, or the demo package (``align_demo``);
- ``align_core`` never imports ``analysis`` (statistics sit on top of the library);
- ``analysis`` never imports torch;
- the Dagster layer (``align_assets``, the production CLIs ``align-backfill`` and ``align-import``
  included) and ``align-report`` never import demo code: the demo (``align_demo``: the
  ``align-demo`` CLI and the demo profile's ``Definitions``) builds on production, never the reverse.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NEVER_IN_CORE = (
    "align_assets",
    "dagster",
    "dagster_duckdb",
    "dagster_postgres",
    "dagster_k8s",
    "dagster_celery",
    "dagster_webserver",
    "align_demo",
)
PRODUCTION_CLIS = ("align_assets/backfill.py", "align_assets/register.py", "align_assets/runner.py", "analysis/cli.py")


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import statement in the file, at any depth (function-level too)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def violations(files: list[Path], forbidden: tuple[str, ...]) -> list[str]:
    bad = []
    for path in files:
        for line, module in imported_modules(path):
            if module.split(".")[0] in forbidden or any(module == f or module.startswith(f + ".") for f in forbidden):
                where = path.relative_to(REPO) if path.is_relative_to(REPO) else path
                bad.append(f"{where}:{line} imports {module}")
    return bad


def sources(package: str) -> list[Path]:
    files = sorted((REPO / package).rglob("*.py"))
    assert files, f"no Python files under {package}/"
    return files


@pytest.mark.parametrize("package", ["align_core", "analysis"])
def test_library_packages_never_import_dagster_the_asset_layer_or_the_demo(package: str) -> None:
    assert violations(sources(package), NEVER_IN_CORE) == []


def test_analysis_never_imports_torch() -> None:
    assert violations(sources("analysis"), ("torch", "diffusers", "transformers")) == []


def test_production_clis_never_import_demo_code() -> None:
    files = [REPO / name for name in PRODUCTION_CLIS]
    assert violations(files, ("align_demo",)) == []


def test_the_dagster_layer_never_imports_the_demo() -> None:
    """The demo profile's code location is loaded by its configured name (align_core.settings.CODE_LOCATIONS)."""
    assert violations(sources("align_assets"), ("align_demo",)) == []


def test_the_library_never_imports_dagster_or_the_statistics() -> None:
    assert violations(sources("align_core"), ("dagster", "analysis")) == []


def test_the_walk_sees_lazy_imports(tmp_path: Path) -> None:
    """The rule cannot pass vacuously: a function-level import is found."""
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from dagster import asset\n    import align_demo.corpus\n")
    assert [module for _, module in imported_modules(probe)] == ["dagster", "align_demo.corpus"]
    assert len(violations([probe], NEVER_IN_CORE)) == 2
