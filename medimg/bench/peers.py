"""Importing the peer libraries a benchmark compares against, where they can be imported, and
saying which could not be, so that a missing row in a report is never a silent one."""

from __future__ import annotations

import importlib
from types import ModuleType

_unavailable: dict[str, str] = {}  # top-level package -> why it was not timed, in first-seen order


def import_peer(name: str) -> ModuleType | None:
    """The module `name` of a peer, or None where it cannot be imported: not installed, or
    installed but unloadable here (PyPI's torchvision beside torch's CPU-only build raises a
    RuntimeError while it registers its ops; a library built against another NumPy may raise
    anything), so the suite runs without that peer. The reason is kept for unavailable_peers."""
    try:
        return importlib.import_module(name)
    except Exception as error:
        package = name.partition(".")[0]
        missing = isinstance(error, ModuleNotFoundError) and error.name is not None and \
            error.name.partition(".")[0] == package
        first_line = (str(error).splitlines() or [""])[0][:120]
        _unavailable.setdefault(package, "not installed" if missing else
                                f"installed, import failed: {type(error).__name__}: {first_line}")
        return None


def unavailable_peers() -> str:
    """One line naming the peers a benchmark asked for but could not import, and why; "" if none."""
    if not _unavailable:
        return ""
    return "peers not timed: " + "; ".join(f"{package} ({why})" for package, why in _unavailable.items())
