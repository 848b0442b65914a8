"""CPU thread defaults shared by training, evaluation and the runtime."""

from __future__ import annotations

import os
from typing import Optional

MAX_THREADS = 1024


def resolve_threads(threads: Optional[int]) -> int:
    """CPU threads for torch and ONNX Runtime: as given, else min(2, cores) (a small board shares its CPU)."""
    if threads and not 1 <= int(threads) <= MAX_THREADS:
        from edgeanom.errors import EdgeanomError

        raise EdgeanomError(f"--threads must be in [1, {MAX_THREADS}], got {threads}")
    return int(threads) if threads else max(1, min(2, os.cpu_count() or 1))
