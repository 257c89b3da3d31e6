"""Lazy attributes of a package: its ``__getattr__`` imports the module that defines a name
on first use, so importing the package stays cheap (no torch)."""

from __future__ import annotations

import importlib
from typing import Any


def lazy_attribute(package: str, module: str | None, name: str) -> Any:
    """``name`` from ``module`` (imported now), for ``package``'s ``__getattr__``; ``module``
    None: ``package`` has no such attribute. An AttributeError raised while ``module`` is
    imported (an API an old dependency lacks: Pillow 9.0's ``Image.Resampling``) becomes an
    ImportError that keeps its cause: Python reads an AttributeError out of ``__getattr__``
    as "cannot import name", and the cause was lost."""
    if module is None:
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    try:
        imported = importlib.import_module(module)
    except AttributeError as exc:
        raise ImportError(f"importing {module} for {package}.{name} failed: {exc}") from exc
    return getattr(imported, name)
