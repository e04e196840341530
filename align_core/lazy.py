"""Lazy re-exports for package ``__init__`` files (PEP 562).

A domain package lists its public API once, as ``{module: names}``; a name is imported from its
module on first use. Importing one module of a package then never drags in its siblings, so
the packages can name each other's public APIs without import cycles, and a light command
never pays for torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, modules: Mapping[str, Sequence[str]]
) -> tuple[list[str], Callable[[str], Any], Callable[[], list[str]]]:
    """``(__all__, __getattr__, __dir__)`` for ``package`` re-exporting ``modules``' names."""
    owner = {name: module for module, names in modules.items() for name in names}
    if len(owner) != sum(len(names) for names in modules.values()):
        raise ValueError(f"{package}: a name is exported by two modules")

    def __getattr__(name: str) -> Any:
        module = owner.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        globals_of_package = importlib.import_module(package).__dict__
        globals_of_package[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(owner)

    return sorted(owner), __getattr__, __dir__
