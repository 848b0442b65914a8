"""Live counters of a run (throughput, latency percentiles, drops, alarms), safe to read from any thread.

The pipeline writes; the status line, the MQTT status message and the web page's `/metrics` read
`RunStats.snapshot()`. Memory is bounded: latencies and sample times are kept in fixed-size rings.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

LATENCY_WINDOW = 2048  # latencies kept for the percentiles (most recent samples)
FPS_WINDOW_S = 5.0  # the fps figure is the rate over this many recent seconds
CORRUPT_EXAMPLES = 5  # malformed inputs kept verbatim for the report


@dataclass
class _StreamCounters:
    frames: int = 0
    drops: int = 0
    anomalies: int = 0
    corrupt: int = 0
    reconnects: int = 0
    gaps: int = 0
    drift_events: int = 0
    drift: bool = False
    alarm: bool = False
    last_score: float = float("nan")
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))
    times: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))


class RunStats:
    """Thread-safe counters of one `run`. Every figure in `snapshot()` is cheap to compute."""

    def __init__(self, backend: str = "", clock: Any = time.monotonic) -> None:
        self.backend = backend
        self._clock = clock
        self._start = clock()
        self._lock = threading.Lock()
        self._streams: dict[str, _StreamCounters] = {}
        self._latencies: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self._times: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self._frames = 0
        self.corrupt_examples: list[str] = []

    # --- writers (pipeline) ------------------------------------------------------------------------
    def add_stream(self, name: str) -> None:
        with self._lock:
            self._streams.setdefault(name, _StreamCounters())

    def record_sample(
        self,
        stream: str,
        latency_ms: float,
        *,
        score: float = float("nan"),
        flag: bool = False,
        started: int = 0,
    ) -> None:
        """One scored sample; `started` is how many alarm-start events it produced."""
        now = self._clock()
        with self._lock:
            s = self._streams.setdefault(stream, _StreamCounters())
            s.frames += 1
            s.anomalies += started
            s.alarm = bool(flag)
            s.last_score = float(score)
            s.latencies.append(float(latency_ms))
            s.times.append(now)
            self._frames += 1
            self._latencies.append(float(latency_ms))
            self._times.append(now)

    def record_drops(self, stream: str, count: int = 1) -> None:
        """Stale frames a live capture thread replaced before the pipeline took them."""
        if count <= 0:
            return
        with self._lock:
            self._streams.setdefault(stream, _StreamCounters()).drops += count

    def record_corrupt(self, stream: str, detail: str = "") -> None:
        """A frame that failed to decode or a malformed sensor line; the first few are kept verbatim."""
        with self._lock:
            self._streams.setdefault(stream, _StreamCounters()).corrupt += 1
            if detail and len(self.corrupt_examples) < CORRUPT_EXAMPLES:
                self.corrupt_examples.append(f"{stream}: {detail}")

    def record_reconnect(self, stream: str) -> None:
        with self._lock:
            self._streams.setdefault(stream, _StreamCounters()).reconnects += 1

    def record_drift(self, stream: str, drifting: bool) -> None:
        """A drift start (`drifting`) or end event of the adaptive stage."""
        with self._lock:
            s = self._streams.setdefault(stream, _StreamCounters())
            s.drift = bool(drifting)
            s.drift_events += int(drifting)

    def record_gap(self, stream: str) -> None:
        with self._lock:
            self._streams.setdefault(stream, _StreamCounters()).gaps += 1

    # --- readers (status line, MQTT, /metrics) -----------------------------------------------------
    @property
    def frames(self) -> int:
        return self._frames

    def snapshot(self) -> dict[str, Any]:
        """A plain dict (JSON-ready): totals plus one entry per stream under ``streams``."""
        now = self._clock()
        with self._lock:
            streams = {name: _summary(s, now) for name, s in self._streams.items()}
            total_lat = np.fromiter(self._latencies, dtype=np.float64, count=len(self._latencies))
            fps = _rate(self._times, now)
        p50, p99 = _percentiles(total_lat)
        return {
            "backend": self.backend,
            "uptime_s": round(now - self._start, 3),
            "fps": round(fps, 2),
            "fps_mean": round(self._frames / max(now - self._start, 1e-9), 2),
            "latency_ms_p50": p50,
            "latency_ms_p99": p99,
            "frames": sum(s["frames"] for s in streams.values()),
            "drops": sum(s["drops"] for s in streams.values()),
            "anomalies": sum(s["anomalies"] for s in streams.values()),
            "corrupt": sum(s["corrupt"] for s in streams.values()),
            "reconnects": sum(s["reconnects"] for s in streams.values()),
            "streams": streams,
        }


def _summary(s: _StreamCounters, now: float) -> dict[str, Any]:
    lat = np.fromiter(s.latencies, dtype=np.float64, count=len(s.latencies))
    p50, p99 = _percentiles(lat)
    return {
        "frames": s.frames,
        "drops": s.drops,
        "anomalies": s.anomalies,
        "corrupt": s.corrupt,
        "reconnects": s.reconnects,
        "gaps": s.gaps,
        "drift_events": s.drift_events,
        "drift": s.drift,
        "alarm": s.alarm,
        "last_score": None if s.last_score != s.last_score else s.last_score,
        "fps": round(_rate(s.times, now), 2),
        "latency_ms_p50": p50,
        "latency_ms_p99": p99,
    }


def _rate(times: deque[float], now: float) -> float:
    """Samples per second over the last FPS_WINDOW_S seconds (or since the first sample, if sooner)."""
    if len(times) < 2:
        return 0.0
    cutoff = now - FPS_WINDOW_S
    recent = [t for t in times if t >= cutoff]
    if len(recent) < 2:
        return 0.0
    span = max(now, recent[-1]) - recent[0]
    return (len(recent) - 1) / span if span > 0 else 0.0


def _percentiles(lat: np.ndarray) -> tuple[float, float]:
    if lat.size == 0:
        return 0.0, 0.0
    p50, p99 = np.percentile(lat, [50, 99])
    return round(float(p50), 3), round(float(p99), 3)
