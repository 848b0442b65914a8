"""Optional packages a source or sink needs: one check for both tables (sources/registry, sinks/registry)."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from typing import Optional

from edgeanom.errors import EdgeanomError


def missing_package(name: str, needs: Sequence[str]) -> Optional[str]:
    """Why `name` cannot run here (the first of `needs` that cannot be imported), or None; imports nothing."""
    missing = [m for m in needs if importlib.util.find_spec(m) is None]
    return f"{name}: needs the Python package {missing[0]!r}" if missing else None


def require_packages(name: str, needs: Sequence[str]) -> None:
    reason = missing_package(name, needs)
    if reason:
        raise EdgeanomError(f"{reason} (install it with: pip install 'edgeanom[stream]')")
