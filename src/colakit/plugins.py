"""Built-in extensions register themselves: importing a package's modules is all it takes.

Compression methods, evaluation tasks and curation methods each live in a package with one file
per extension; each file registers its classes with a decorator when it is imported. A package's
``__init__`` calls ``import_all`` so that adding a built-in is adding a file, with no list of
names to keep in step. Extensions outside colakit call the same decorators from their own code.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Iterable


def import_all(package: str, path: Iterable[str], skip: tuple[str, ...] = ("base",)) -> None:
    """Import every module of ``package`` (its ``__name__`` and ``__path__``) except ``skip``, in name order."""
    for info in sorted(pkgutil.iter_modules(path), key=lambda m: m.name):
        if info.name not in skip and not info.name.startswith("_"):
            importlib.import_module(f"{package}.{info.name}")
