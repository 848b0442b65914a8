"""`--save-anomalies DIR`: evidence for each alarm — the frame, its annotated heatmap and a JSON sidecar.

What is saved (per stream, per alarm): the first flagged sample (``reason: "start"``), every ``every``-th
flagged sample while the alarm lasts (``"every"``), and when the alarm ends the sample with the highest
score (``"peak"``) unless it was already saved. A long alarm therefore costs a bounded number of files per
second, and the most anomalous frame is always kept. ``every=1`` saves every flagged sample.

Files, named ``<stream>_<index>``: ``.jpg`` (the frame as captured), ``_heatmap.jpg`` (annotated, see
`edgeanom.runtime.annotate`) and ``.json`` (the sample's fields, its events, the reason and the file names).
Sensor windows have no frame: the sidecar alone, plus ``.csv`` with the window's values when the pipeline
provides them (``SampleResult.window``). The sidecar is written last and atomically, so a sidecar on disk
means its images are complete.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import cv2
import numpy as np

from edgeanom.errors import EdgeanomError
from edgeanom.fileio import atomic_write_text
from edgeanom.runtime.annotate import annotate
from edgeanom.runtime.sinks.records import dumps, event_record, sample_record
from edgeanom.runtime.types import SampleResult

JPEG_QUALITY = 92


@dataclass
class _Alarm:
    start_index: int
    flagged: int = 0  # flagged samples seen so far in this alarm
    peak: Optional[SampleResult] = None  # highest-scoring sample not yet saved (one frame per stream)
    peak_score: float = float("-inf")


class AnomalySaver:
    """A Sink that saves flagged frames (or windows) with heatmaps and sidecars into ``directory``."""

    def __init__(self, directory: Path, every: int = 10, columns: Optional[list[str]] = None) -> None:
        self.directory = Path(directory)
        if every < 1:
            raise EdgeanomError(f"--save-anomalies: every must be >= 1, got {every}")
        self.every = int(every)
        self.columns = list(columns) if columns else None
        self.saved = 0  # samples saved (each is a sidecar plus its images)
        self._alarms: dict[int, _Alarm] = {}
        self._lock = threading.Lock()
        self._closed = False
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise EdgeanomError(f"--save-anomalies {self.directory}: exists and is not a directory") from None
        except OSError as exc:
            raise EdgeanomError(
                f"--save-anomalies {self.directory}: cannot create it ({exc.strerror})"
            ) from None

    def write(self, result: SampleResult) -> None:
        with self._lock:
            if self._closed:
                return
            types = {e.get("type") for e in result.events}
            alarm = self._alarms.get(result.stream)
            if alarm is not None and ("end" in types or not result.flag):
                self._finish(result.stream)
                alarm = None
            if not result.flag:
                return
            if alarm is None or "start" in types:
                if alarm is not None:
                    self._finish(result.stream)
                alarm = self._alarms[result.stream] = _Alarm(start_index=result.index)
            n = alarm.flagged
            alarm.flagged += 1
            saved = n % self.every == 0
            if saved:
                self._save(result, "start" if n == 0 else "every", alarm.start_index)
            if result.score > alarm.peak_score:  # the peak is kept only while it is not on disk yet
                alarm.peak, alarm.peak_score = (None if saved else result), result.score

    def write_event(self, event: dict[str, Any]) -> None:
        """An ``end`` event outside a sample (the pipeline's final flush) closes that stream's alarm."""
        if event.get("type") != "end":
            return
        with self._lock:
            stream = event.get("stream_id", event.get("stream"))  # the pipeline's events name both
            if isinstance(stream, (int, np.integer)) and int(stream) in self._alarms:
                self._finish(int(stream))

    def close(self) -> None:
        """Save the peak of every alarm still open; safe to call twice."""
        with self._lock:
            if self._closed:
                return
            for stream in list(self._alarms):
                self._finish(stream)
            self._closed = True

    # --- internals ---------------------------------------------------------------------------------
    def _finish(self, stream: int) -> None:
        alarm = self._alarms.pop(stream)
        if alarm.peak is not None:
            self._save(alarm.peak, "peak", alarm.start_index)

    def _save(self, result: SampleResult, reason: str, start_index: int) -> None:
        stem = f"{_slug(result.stream_name)}_{result.index:08d}"
        files: dict[str, str] = {}
        if result.frame is not None:
            files["frame"] = self._write_jpeg(f"{stem}.jpg", result.frame)
            annotated = annotate(result)
            if annotated is not None:
                files["heatmap"] = self._write_jpeg(f"{stem}_heatmap.jpg", annotated)
        window = getattr(result, "window", None)
        if window is not None:
            files["window"] = self._write_csv(f"{stem}.csv", np.asarray(window))
        record = sample_record(result)
        record.update(
            reason=reason,
            alarm_start_index=start_index,
            events=[event_record(e, result) for e in result.events],
            files=files,
        )
        if result.error_map is not None:
            emap = np.asarray(result.error_map, dtype=np.float64)
            record["error_map"] = {
                "shape": list(emap.shape),
                "max": float(np.max(emap)),
                "mean": float(np.mean(emap)),
            }
        atomic_write_text(self.directory / f"{stem}.json", dumps(record) + "\n")
        self.saved += 1

    def _write_jpeg(self, name: str, image: np.ndarray) -> str:
        path = self.directory / name
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise EdgeanomError(f"--save-anomalies: cannot encode {name} (image shape {image.shape})")
        path.write_bytes(buf.tobytes())
        return name

    def _write_csv(self, name: str, window: np.ndarray) -> str:
        values = window.reshape(window.shape[0], -1) if window.ndim > 1 else window.reshape(-1, 1)
        columns = self.columns if self.columns and len(self.columns) == values.shape[1] else None
        header = ",".join(columns or [f"c{i}" for i in range(values.shape[1])])
        lines = [header] + [",".join(repr(float(v)) for v in row) for row in values]
        atomic_write_text(self.directory / name, "\n".join(lines) + "\n")
        return name


def _slug(name: str) -> str:
    """A file-name-safe form of a stream name: ``camera:0`` -> ``camera-0``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "stream"
