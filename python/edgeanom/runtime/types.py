"""Records passed from the pipeline to the sinks. Kept tiny and dependency-free so sinks stay decoupled."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Protocol

import numpy as np


@dataclass
class SampleResult:
    """One scored frame or window of one stream."""

    stream: int  # index of the stream (order of --camera/--video/--sensor flags)
    stream_name: str  # e.g. "camera:0", "video:clip.mp4", "sensor:pump.csv"
    index: int  # 0-based frame/window counter of that stream
    time: float  # wall-clock UNIX time the frame/window was captured (or replayed)
    score: float  # raw anomaly score (+inf for non-finite input)
    normalised: float  # compared score mapped to [0, 1], threshold at 0.5, graded above (bundle.graded)
    threshold: float  # what the alarm compares against: on `score`, or on `surprise` when adaptive
    flag: bool  # alarm state after this sample (AlarmFilter)
    latency_ms: float  # capture -> scored
    events: list[dict[str, Any]] = field(default_factory=list)  # alarm start/end events this sample produced
    frame: Optional[np.ndarray] = None  # BGR uint8 frame as captured (images only)
    error_map: Optional[np.ndarray] = None  # float32 HxW at model resolution (images with map scoring)
    smoothed: Optional[float] = None  # score after EWMA smoothing (what the alarm compares), when --ewma
    ref: Optional[str] = None  # the source's own name for the sample (image file name), when it has one
    surprise: Optional[float] = None  # adaptive stage: what the alarm compares with `threshold` (else None)


class Sink(Protocol):
    """Receives every scored sample in order. `close()` must flush and be safe to call twice."""

    def write(self, result: SampleResult) -> None: ...

    def write_event(self, event: dict[str, Any]) -> None:
        """Out-of-band events (stream gap, reconnect, status) that belong to no sample."""
        ...

    def close(self) -> None: ...
