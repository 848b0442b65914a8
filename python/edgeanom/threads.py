"""CPU thread defaults shared by training, evaluation and the runtime."""

from __future__ import annotations

import os
from typing import Optional


def resolve_threads(threads: Optional[int]) -> int:
    """CPU threads for torch and ONNX Runtime: as given, else min(2, cores) (a small board shares its CPU)."""
    return int(threads) if threads else max(1, min(2, os.cpu_count() or 1))
