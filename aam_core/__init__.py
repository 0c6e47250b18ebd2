"""Attention All Microbes (AAM): a PyTorch implementation for 16S amplicon tables."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__version__ = "0.1.0"


def lazy_attributes(package: str, homes: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` (PEP 562) that imports a package's public names from their
    modules on first use (``homes``: name -> module within ``package``), so that importing one
    light module of the package does not load all of them (scikit-bio, PyTorch)."""

    def __getattr__(name: str) -> Any:
        module = homes.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{module}"), name)

    return __getattr__
