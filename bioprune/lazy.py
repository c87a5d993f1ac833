"""Lazy public surfaces for the stage packages (PEP 562): `bioprune.influence.merge_scores` imports
bioprune.influence.scores on first use, so importing a package costs nothing (a stage that needs no model
never imports torch) and a package's `__init__` adds no import edge between its modules."""
from __future__ import annotations

from importlib import import_module


def lazy_exports(package: str, surface: dict[str, str]):
    """(__getattr__, __dir__, __all__) for a package whose public names live in its modules:
    surface = module -> its public names, space-separated."""
    exports = {name: module for module, names in surface.items() for name in names.split()}

    def __getattr__(name: str):
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(import_module(f"{package}.{module}"), name)

    def __dir__() -> list[str]:
        return sorted(exports)

    return __getattr__, __dir__, sorted(exports)
