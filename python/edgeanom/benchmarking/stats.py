"""Summary statistics of a latency series, as trtexec reports them, plus a stability check.

All inputs are milliseconds per iteration (one batch). Percentiles use NumPy's default linear
interpolation between order statistics, so p50 is the usual median.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

import numpy as np

PERCENTILES = (50, 90, 95, 99)
# Spread between the medians of consecutive segments of one run above which the run is called unstable.
SPREAD_WARN_FRACTION = 0.10
STABILITY_SEGMENTS = 5


def summarize(samples_ms: Sequence[float]) -> Optional[dict[str, float]]:
    """count, mean, std, min, p50, p90, p95, p99 and max of a latency series (ms); None when empty."""
    x = np.asarray(samples_ms, dtype=np.float64).reshape(-1)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return None
    p = np.percentile(x, PERCENTILES)
    out: dict[str, float] = {
        "count": int(x.size),
        "mean": float(x.mean()),
        "std": float(x.std(ddof=1)) if x.size > 1 else 0.0,
        "min": float(x.min()),
    }
    for q, v in zip(PERCENTILES, p):
        out[f"p{q}"] = float(v)
    out["max"] = float(x.max())
    return out


def per_frame(stats: Optional[dict[str, float]], batch: int) -> Optional[dict[str, float]]:
    """Per-frame view of per-batch latency statistics: every time figure divided by the batch size."""
    if stats is None:
        return None
    return {k: (v if k == "count" else v / batch) for k, v in stats.items()}


def throughput(frames: int, wall_s: float) -> float:
    """Frames per second over the timed wall-clock span (trtexec: queries / total host walltime)."""
    return float(frames) / wall_s if wall_s > 0 else float("nan")


def stability(samples_ms: Sequence[float], segments: int = STABILITY_SEGMENTS) -> dict[str, Any]:
    """Run-to-run spread: medians of consecutive segments of the run and their relative spread.

    A run whose segment medians differ by more than SPREAD_WARN_FRACTION of the overall median was
    disturbed (clock changes, thermal throttling, other processes) and gets a warning. Also returns the
    coefficient of variation of the whole series (trtexec warns on it for GPU compute time).
    """
    x = np.asarray(samples_ms, dtype=np.float64).reshape(-1)
    x = x[np.isfinite(x)]
    result: dict[str, Any] = {"segment_medians": [], "spread": None, "cov": None, "warning": None}
    if x.size == 0:
        return result
    mean = float(x.mean())
    result["cov"] = float(x.std() / mean) if mean > 0 else None
    n_seg = min(segments, x.size)
    if n_seg < 2:
        return result
    medians = [float(np.median(part)) for part in np.array_split(x, n_seg)]
    overall = float(np.median(x))
    spread = (max(medians) - min(medians)) / overall if overall > 0 else 0.0
    result["segment_medians"] = medians
    result["spread"] = float(spread)
    if spread > SPREAD_WARN_FRACTION:
        result["warning"] = (
            f"unstable run: segment medians differ by {spread:.0%} of the median "
            f"({min(medians):.3g}..{max(medians):.3g} ms); close other programs, lock clocks "
            "(jetson_clocks / nvidia-smi -lgc) and run longer"
        )
    return result
