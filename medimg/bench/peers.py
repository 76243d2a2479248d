"""Importing the peer libraries a benchmark compares against, where they can be imported."""

from __future__ import annotations

import importlib
from types import ModuleType


def import_peer(*modules: str) -> list[ModuleType] | None:
    """The named modules of one peer, or None where one of them cannot be imported: not
    installed, or installed but unloadable here (PyPI's torchvision beside torch's CPU-only
    build raises a RuntimeError while it registers its ops), so the suite runs without it."""
    try:
        return [importlib.import_module(name) for name in modules]
    except (ImportError, RuntimeError, OSError):
        return None
