"""One capture thread per stream: read, decode, convert to model size, hand over through a bounded channel.

Live cameras keep only the newest sample (a one-slot channel: a stale frame is replaced and counted as a
drop), so latency never grows. Files and sensors fill a small blocking queue, so nothing is lost and the
reader simply waits when inference is busy. Decoding and resizing run here, in parallel with inference
(OpenCV releases the GIL). A live source that drops out is reopened with exponential backoff, and the
gap is reported as out-of-band events.
"""

from __future__ import annotations

import collections
import contextlib
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np

from edgeanom.errors import EdgeanomError
from edgeanom.runtime.sources.base import NOTHING, CorruptInput, Source, SourceLost
from edgeanom.runtime.sources.sensors import RowParser, Windower
from edgeanom.runtime.stats import RunStats


@dataclass
class Item:
    """One model-ready sample of a stream, as it leaves the capture thread."""

    index: int  # frame number in the source (video position, camera capture count) or window number
    captured: float  # time.monotonic() when read (latency is measured from here)
    wall: float  # time.time() when read
    data: np.ndarray  # float32 (C, H, W) model input for images, or float32 raw window/row for sensors
    frame: Optional[np.ndarray] = None  # the BGR frame as captured, only when a sink needs it
    ref: Optional[str] = None  # the source's own name for it (image file name)


class Channel:
    """A bounded hand-over between one capture thread and the pipeline; all channels share one condition."""

    def __init__(self, cond: threading.Condition, capacity: int, drop_stale: bool) -> None:
        self.cond = cond
        self.capacity = max(1, int(capacity))
        self.drop_stale = drop_stale
        self.items: collections.deque[Item] = collections.deque()
        self.finished = False  # the producer will put nothing more
        self.error: Optional[BaseException] = None  # a fatal problem to re-raise in the pipeline

    def put(self, item: Item, stop: threading.Event) -> int:
        """Hand over one item; returns how many stale items it replaced. Blocks while full (no-drop mode)."""
        with self.cond:
            dropped = 0
            if self.drop_stale:
                while len(self.items) >= self.capacity:
                    self.items.popleft()
                    dropped += 1
            else:
                while len(self.items) >= self.capacity and not stop.is_set():
                    self.cond.wait(0.1)
                if stop.is_set():
                    return 0
            self.items.append(item)
            self.cond.notify_all()
            return dropped

    def take(self, limit: int) -> list[Item]:
        """Up to `limit` items, oldest first (call with `cond` held)."""
        out = []
        while self.items and len(out) < limit:
            out.append(self.items.popleft())
        if out:
            self.cond.notify_all()
        return out

    def finish(self, error: Optional[BaseException] = None) -> None:
        with self.cond:
            self.finished = True
            self.error = error
            self.cond.notify_all()

    @property
    def exhausted(self) -> bool:
        return self.finished and not self.items


class FrameSampler:
    """Raw BGR frames -> model input tensors (one per frame), keeping the original frame when asked."""

    def __init__(self, convert: Callable[[np.ndarray], Optional[np.ndarray]], keep_frames: bool) -> None:
        self.convert = convert
        self.keep_frames = keep_frames

    def __call__(self, raw: Any, read_index: int) -> list[tuple[int, np.ndarray, Optional[np.ndarray]]]:
        if not isinstance(raw, np.ndarray):
            raise CorruptInput(f"frame {read_index}: not an image ({type(raw).__name__})")
        try:
            data = self.convert(raw)
        except (EdgeanomError, ValueError) as exc:
            raise CorruptInput(f"frame {read_index}: {exc} (shape {getattr(raw, 'shape', None)})") from None
        except Exception as exc:  # cv2.error for frames OpenCV cannot convert
            raise CorruptInput(f"frame {read_index}: cannot convert ({type(exc).__name__})") from None
        if data is None:  # the stream's preprocessing is still warming up (frame packing)
            return []
        return [(read_index, data, raw if self.keep_frames else None)]


class RowSampler:
    """Sensor text -> float rows -> sliding windows (window models) or one sample per row (vector models)."""

    def __init__(self, parser: RowParser, windower: Optional[Windower]) -> None:
        self.parser = parser
        self.windower = windower
        self.rows = 0

    def __call__(self, raw: Any, read_index: int) -> list[tuple[int, np.ndarray, None]]:
        out = []
        for row in self.parser.parse(raw):
            self.rows += 1
            if self.windower is None:
                out.append((self.rows - 1, row, None))
                continue
            window = self.windower.push(row)
            if window is not None:
                out.append((self.windower.windows - 1, window, None))
        return out


Sampler = Callable[[Any, int], list]


class CaptureThread(threading.Thread):
    """Owns one opened source: reads it, samples it, paces it, reconnects it, and feeds its channel."""

    def __init__(
        self,
        source: Source,
        channel: Channel,
        sampler: Sampler,
        stats: RunStats,
        emit: Callable[[dict[str, Any]], None],
        *,
        pace_hz: Optional[float] = None,
        backoff_s: tuple[float, float] = (0.5, 10.0),
        max_reconnects: Optional[int] = None,
    ) -> None:
        super().__init__(name=f"capture[{source.name}]", daemon=True)
        self.source = source
        self.channel = channel
        self.sampler = sampler
        self.stats = stats
        self.emit = emit
        self.pace_hz = pace_hz if pace_hz and pace_hz > 0 else None
        self.backoff_s = backoff_s
        self.max_reconnects = max_reconnects
        self.stop_event = threading.Event()
        self.read_count = 0

    def stop(self) -> None:
        self.stop_event.set()
        with self.channel.cond:
            self.channel.cond.notify_all()

    def run(self) -> None:
        error: Optional[BaseException] = None
        try:
            self._loop()
        except EdgeanomError as exc:
            error = exc
        except Exception as exc:  # a bug or an unexpected library error: surface it in the pipeline
            error = exc
        finally:
            with contextlib.suppress(Exception):  # closing a broken device must not mask the real outcome
                self.source.close()
            self.channel.finish(error)

    def _loop(self) -> None:
        name = self.source.name
        t0 = time.monotonic()
        paced = 0
        dropped_before = 0
        while not self.stop_event.is_set():
            if self.pace_hz is not None:
                delay = t0 + paced / self.pace_hz - time.monotonic()
                if delay > 0 and self.stop_event.wait(delay):
                    break
            try:
                raw = self.source.read()
            except CorruptInput as exc:
                self.read_count += 1
                paced += 1
                self.stats.record_corrupt(name, exc.detail)
                continue
            except SourceLost as exc:
                if not self.source.reconnect:
                    raise EdgeanomError(f"{name}: {exc}") from None
                if not self._reconnect(str(exc)):
                    break
                t0, paced = time.monotonic(), 0
                continue
            if raw is None:
                break  # end of the stream
            if raw is NOTHING:
                continue
            dropped = int(getattr(self.source, "dropped", 0))
            if dropped > dropped_before:
                self.stats.record_drops(name, dropped - dropped_before)
                dropped_before = dropped
            captured, wall = time.monotonic(), time.time()
            index = self.read_count
            self.read_count += 1
            paced += 1
            try:
                samples = self.sampler(raw, index)
            except CorruptInput as exc:
                self.stats.record_corrupt(name, exc.detail)
                continue
            ref = getattr(self.source, "last_ref", None)
            for sample_index, data, frame in samples:
                item = Item(sample_index, captured, wall, data, frame, ref)
                lost = self.channel.put(item, self.stop_event)
                if lost:
                    self.stats.record_drops(name, lost)

    def _reconnect(self, reason: str) -> bool:
        """Close and reopen with exponential backoff; False when stopped (or out of attempts)."""
        name = self.source.name
        lost_at = time.time()
        self.emit({"type": "disconnect", "stream": name, "time": lost_at, "reason": reason})
        with contextlib.suppress(Exception):  # the device is already gone
            self.source.close()
        delay, ceiling = self.backoff_s
        attempts = 0
        last_error = ""
        while not self.stop_event.is_set():
            if self.stop_event.wait(delay):
                return False
            attempts += 1
            try:
                self.source.open()
            except EdgeanomError as exc:
                last_error = str(exc)
                if self.max_reconnects is not None and attempts >= self.max_reconnects:
                    raise EdgeanomError(
                        f"{name}: gave up after {attempts} reconnect attempts: {last_error}"
                    ) from None
                delay = min(delay * 2.0, ceiling)
                continue
            now = time.time()
            self.stats.record_reconnect(name)
            self.stats.record_gap(name)
            self.emit(
                {
                    "type": "reconnect",
                    "stream": name,
                    "time": now,
                    "gap_start": lost_at,
                    "gap_s": round(now - lost_at, 3),
                    "attempts": attempts,
                }
            )
            return True
        return False
