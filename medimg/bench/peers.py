"""Importing the peer libraries a benchmark compares against, where they can be imported."""

from __future__ import annotations

import importlib
from types import ModuleType


def import_peer(name: str) -> ModuleType | None:
    """The module `name` of a peer, or None where it cannot be imported: not installed, or
    installed but unloadable here (PyPI's torchvision beside torch's CPU-only build raises a
    RuntimeError while it registers its ops; a library built against another NumPy may raise
    anything), so the suite runs without that peer."""
    try:
        return importlib.import_module(name)
    except Exception:
        return None
