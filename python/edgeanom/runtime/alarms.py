"""Alarm decisions for every stream: the C++ `AlarmFilter`, with its events told in the stream's own frame numbers.

The core counts each stream's samples 0, 1, 2, …; a stream's frame numbers can skip (dropped stale camera
frames, corrupt frames), so the last RING samples' frame numbers and times are kept to translate an event's
`index`, `start_index` and `peak_index` back into frames a user can seek to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from edgeanom.errors import EdgeanomError

RING = 1 << 15  # samples of history per stream for translating event indices
MAX_VOTE_WINDOW = 1 << 20  # the C++ AlarmFilter's limit on n


@dataclass
class AlarmSettings:
    """How scores become alarms. `threshold` None means the bundle's calibrated threshold."""

    threshold: Optional[float] = None
    k: int = 1
    n: int = 1
    ewma: Optional[float] = None  # smoothing factor alpha in (0, 1]
    hysteresis: Optional[float] = None  # clear below threshold * (1 - hysteresis)
    min_hold: int = 0
    adaptive: Optional[bool] = None  # None: the bundle's setting (on for sensor bundles trained by train)
    recalibrate: bool = False  # adaptive: a change that persists becomes the new normal (bounded rate)

    def validate(self) -> None:
        if self.k < 1 or self.n < 1 or self.k > self.n:
            raise EdgeanomError(f"--k/--n must satisfy 1 <= k <= n, got k={self.k} n={self.n}")
        if self.n > MAX_VOTE_WINDOW:
            raise EdgeanomError(f"--n must be <= {MAX_VOTE_WINDOW}, got {self.n}")
        if self.ewma is not None and not 0.0 < self.ewma <= 1.0:
            raise EdgeanomError(f"--ewma must be in (0, 1], got {self.ewma}")
        if self.hysteresis is not None and not 0.0 <= self.hysteresis < 1.0:
            raise EdgeanomError(f"--hysteresis must be in [0, 1), got {self.hysteresis}")
        if self.min_hold < 0:
            raise EdgeanomError(f"--min-hold must be >= 0, got {self.min_hold}")
        if self.threshold is not None and not np.isfinite(self.threshold):
            raise EdgeanomError(f"--threshold must be a finite number, got {self.threshold}")


class _History:
    """Frame numbers and times of a stream's recent samples, by the core's sample counter."""

    def __init__(self) -> None:
        self.index = np.zeros(RING, dtype=np.int64)
        self.time = np.zeros(RING, dtype=np.float64)
        self.count = 0

    def add(self, index: int, wall: float) -> None:
        slot = self.count % RING
        self.index[slot] = index
        self.time[slot] = wall
        self.count += 1

    def lookup(self, counter: int) -> tuple[Optional[int], Optional[float]]:
        if counter >= self.count:  # one past the last sample (an alarm ended by flush)
            if self.count == 0:
                return None, None
            last = (self.count - 1) % RING
            return int(self.index[last]) + 1, float(self.time[last])
        if counter < 0 or counter < self.count - RING:
            return None, None
        slot = counter % RING
        return int(self.index[slot]), float(self.time[slot])


class StreamAlarms:
    """One C++ AlarmFilter holding a state per stream id; events come back as JSON-ready dicts."""

    def __init__(self, threshold: float, settings: AlarmSettings, stream_names: list[str]) -> None:
        from edgeanom import scoring

        settings.validate()
        self.threshold = float(threshold)
        self.clear_threshold = (
            None if settings.hysteresis is None else self.threshold * (1.0 - float(settings.hysteresis))
        )
        self.names = list(stream_names)
        self._filter = scoring.AlarmFilter(
            self.threshold,
            ewma_alpha=settings.ewma,
            k=int(settings.k),
            n=int(settings.n),
            clear_threshold=self.clear_threshold,
            min_hold=int(settings.min_hold),
        )
        self._history = [_History() for _ in self.names]

    def update(
        self, scores: np.ndarray, stream_ids: np.ndarray, indices: list[int], walls: list[float]
    ) -> tuple[np.ndarray, np.ndarray, list[list[dict[str, Any]]]]:
        """Scores of one batch (in stream order per stream) -> flags, smoothed scores, events per sample."""
        for sid, index, wall in zip(stream_ids.tolist(), indices, walls):
            self._history[sid].add(index, wall)
        result = self._filter.update(
            np.ascontiguousarray(scores, dtype=np.float32), np.ascontiguousarray(stream_ids, dtype=np.int64)
        )
        if isinstance(result, tuple):  # the compiled class answers (flags, smoothed, events)
            flags, smoothed, raw_events = result
        else:
            flags, smoothed, raw_events = result.flags, result.smoothed, result.events
        per_sample: list[list[dict[str, Any]]] = [[] for _ in range(len(scores))]
        if raw_events:
            # Which batch position holds sample `counter` of stream `sid`: the batch's samples of a stream
            # are its most recent ones, in order.
            position: dict[tuple[int, int], int] = {}
            seen: dict[int, int] = {}
            ids = stream_ids.tolist()
            per_stream_total = {sid: ids.count(sid) for sid in set(ids)}
            for pos, sid in enumerate(ids):
                counter = self._history[sid].count - per_stream_total[sid] + seen.get(sid, 0)
                seen[sid] = seen.get(sid, 0) + 1
                position[(sid, counter)] = pos
            for raw in raw_events:
                event = self._translate(raw)
                pos = position.get((int(raw["stream"]), int(raw["index"])))
                if pos is None:
                    continue
                event["score"] = _finite_or_none(float(scores[pos]))
                per_sample[pos].append(event)
        return np.asarray(flags, dtype=bool), np.asarray(smoothed, dtype=np.float32), per_sample

    def flush(self) -> list[dict[str, Any]]:
        """End events for alarms still open (end of run)."""
        return [self._translate(raw) for raw in self._filter.flush()]

    def _translate(self, raw: dict[str, Any]) -> dict[str, Any]:
        sid = int(raw["stream"])
        hist = self._history[sid]
        index, wall = hist.lookup(int(raw["index"]))
        start_index, start_time = hist.lookup(int(raw["start_index"]))
        peak_index, _ = hist.lookup(int(raw["peak_index"]))
        event: dict[str, Any] = {
            "type": str(raw["type"]),
            "stream": self.names[sid],
            "stream_id": sid,
            "index": index,
            "time": wall,
            "threshold": self.threshold,
            "peak": _finite_or_none(float(raw["peak"])),
            "peak_index": peak_index,
            "start_index": start_index,
            "start_time": start_time,
        }
        if event["type"] == "end":
            event["samples"] = int(raw["index"]) - int(raw["start_index"])
            if wall is not None and start_time is not None:
                event["duration_s"] = round(wall - start_time, 3)
        return event


def _finite_or_none(x: float) -> Optional[float]:
    return x if np.isfinite(x) else None
