"""Turning NumPy-laden records into JSON values, in one place for bundles, events, sinks and reports."""

from __future__ import annotations

import math
from pathlib import PurePath
from typing import Any

import numpy as np


def to_jsonable(value: Any, *, strict: bool = True) -> Any:
    """Recursively convert NumPy arrays/scalars and paths to plain Python values.

    With `strict` (the default), non-finite floats become None, because strict JSON has no inf/NaN
    (an infinite anomaly score is written as null); otherwise they are kept for `json.dump`'s extensions.
    """
    if isinstance(value, dict):
        return {str(k): to_jsonable(v, strict=strict) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v, strict=strict) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist(), strict=strict)
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return f if math.isfinite(f) or not strict else None
    if isinstance(value, PurePath):
        return str(value)
    return value
