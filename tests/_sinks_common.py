"""Synthetic scored samples shared by the sink tests (no model needed: frames and error maps are drawn)."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from edgeanom.runtime.types import SampleResult

THRESHOLD = 0.02


def make_result(
    index: int,
    *,
    flagged: bool = False,
    stream: int = 0,
    stream_name: str = "video:synthetic.mp4",
    size: tuple[int, int] = (96, 128),
    map_size: tuple[int, int] = (32, 32),
    events: Optional[list[dict[str, Any]]] = None,
    with_frame: bool = True,
    score: Optional[float] = None,
) -> SampleResult:
    """A grey frame with a moving square; flagged samples get a hot spot in the error map."""
    h, w = size
    frame = None
    if with_frame:
        frame = np.full((h, w, 3), 110, np.uint8)
        x = (index * 3) % (w - 16)
        frame[h // 3 : h // 3 + 16, x : x + 16] = (60, 160, 200)
    emap = np.full(map_size, THRESHOLD * 0.1, np.float32)
    if flagged:
        emap[map_size[0] // 2 - 3 : map_size[0] // 2 + 3, map_size[1] // 2 - 3 : map_size[1] // 2 + 3] = (
            THRESHOLD * 3
        )
    if score is None:
        score = THRESHOLD * (3.0 if flagged else 0.3)
    return SampleResult(
        stream=stream,
        stream_name=stream_name,
        index=index,
        time=1_700_000_000.0 + index / 25.0,
        score=score,
        normalised=float(min(1.0, 0.5 * score / THRESHOLD)),
        threshold=THRESHOLD,
        flag=flagged,
        latency_ms=4.0 + index % 3,
        events=list(events or []),
        frame=frame,
        error_map=emap if with_frame else None,
    )


def alarm_sequence(n: int, start: int, end: int, **kw: Any) -> list[SampleResult]:
    """n samples; flagged for indices in [start, end); start/end events shaped as the pipeline's
    (`edgeanom.runtime.alarms`: stream name and id, time, threshold, peak, start index)."""
    out = []
    name = kw.get("stream_name", "video:synthetic.mp4")
    for i in range(n):
        sample = make_result(i, flagged=start <= i < end, **kw)
        common = {"stream": name, "stream_id": sample.stream, "index": i, "time": sample.time}
        common.update(threshold=THRESHOLD, peak=THRESHOLD * 3, start_index=start)
        if i == start:
            sample.events.append({"type": "start", **common, "peak_index": i, "score": sample.score})
        if i == end:
            sample.events.append({"type": "end", **common, "peak_index": start, "samples": end - start})
        out.append(sample)
    return out


class FakeStats:
    """Stands in for RunStats: a fixed snapshot with the same keys."""

    def __init__(self, frames: int = 0) -> None:
        self.frames = frames

    def snapshot(self) -> dict[str, Any]:
        per = {
            "frames": self.frames,
            "drops": 2,
            "anomalies": 1,
            "corrupt": 0,
            "reconnects": 0,
            "gaps": 0,
            "alarm": False,
            "last_score": 0.01,
            "fps": 25.0,
            "latency_ms_p50": 4.5,
            "latency_ms_p99": 9.0,
        }
        return {
            "backend": "onnxruntime:CPUExecutionProvider",
            "uptime_s": 12.5,
            "fps": 25.0,
            "latency_ms_p50": 4.5,
            "latency_ms_p99": 9.0,
            "frames": self.frames,
            "drops": 2,
            "anomalies": 1,
            "corrupt": 0,
            "reconnects": 0,
            "streams": {"video:synthetic.mp4": per},
        }
