"""`--record OUT.mp4`: the annotated stream as video files that play after Ctrl-C, SIGTERM, kill -9 or a power cut.

An MP4 is playable only once its index is written at the end, so a long recording is cut into segments of
`segment_s` seconds (of video, default 10): each finished segment is a complete file, and a hard kill loses at
most the segment being written. Stream 0's first segment is ``OUT.mp4``, the next ``OUT.0001.mp4``, ...; with
``segment_s`` 0 everything goes to one file (playable only after a clean stop).

Codec: MPEG-4 Part 2 (``mp4v``) in ``.mp4`` — every OpenCV build with FFmpeg writes it and every player reads
it. If the build cannot, ``avc1`` (H.264) is tried, and as a last resort Motion-JPEG in an ``.avi`` next to
the requested path; ``VideoRecorder.codec`` and ``.paths`` say what was written. The frame size of each
file is fixed by its first frame (later frames of another size are resized to it). With several streams,
stream 0 goes to ``OUT.mp4`` and stream *i* to ``OUT.stream<i>.mp4``. Sensor windows (no frame) are skipped.
"""

from __future__ import annotations

import logging
import shutil
import threading
from pathlib import Path
from typing import Any, Callable, Optional

import cv2
import numpy as np

from edgeanom.errors import EdgeanomError
from edgeanom.runtime.annotate import annotate
from edgeanom.runtime.types import SampleResult

log = logging.getLogger(__name__)

MIN_FREE_BYTES = 8 << 20  # a new segment is not started with less free space (nor under twice the last one)

# (fourcc, suffix) in order of preference; None keeps the requested suffix.
CODECS: tuple[tuple[str, Optional[str]], ...] = (("mp4v", None), ("avc1", None), ("MJPG", ".avi"))


class VideoRecorder:
    """A Sink that writes annotated frames with cv2.VideoWriter; `close()` finalises the files."""

    def __init__(
        self,
        path: Path,
        fps: float,
        annotator: Callable[[SampleResult], Optional[np.ndarray]] = annotate,
        segment_s: float = 10.0,
        warn: Callable[[str], None] = log.warning,
    ) -> None:
        self.path = Path(path)
        self.warn = warn
        self.failure: Optional[str] = None  # why recording stopped early (a full disk); detection goes on
        self.fps = float(fps) if fps and np.isfinite(fps) and fps > 0 else 25.0
        if not (np.isfinite(segment_s) and segment_s >= 0):
            raise EdgeanomError(f"--record-segment must be >= 0 seconds, got {segment_s}")
        # frames per segment (0: one file); a segment is closed, i.e. playable, once it holds this many
        self.segment_frames = max(1, round(segment_s * self.fps)) if segment_s > 0 else 0
        self.segments: dict[int, list[Path]] = {}  # stream -> every file written, in order
        self.annotator = annotator
        self.codec: Optional[str] = None  # fourcc actually used, once the first frame is written
        self.frames_written: dict[int, int] = {}
        self._writers: dict[int, tuple[cv2.VideoWriter, tuple[int, int]]] = {}
        self._lock = threading.Lock()
        self._closed = False
        if not self.path.parent.exists():
            raise EdgeanomError(f"--record {self.path}: directory {self.path.parent} does not exist")
        if self.path.suffix.lower() not in (".mp4", ".m4v", ".mov", ".avi"):
            raise EdgeanomError(f"--record {self.path}: use a .mp4 (or .avi) file name")
        if self.path.is_dir():
            raise EdgeanomError(f"--record {self.path}: is a directory; give a file name inside it")

    @property
    def paths(self) -> dict[int, Path]:
        """stream -> its first file (the one named as asked; later segments are in `segments`)."""
        return {stream: files[0] for stream, files in self.segments.items()}

    def write(self, result: SampleResult) -> None:
        if self._closed or result.frame is None:
            return
        image = self.annotator(result)
        if image is None:
            return
        with self._lock:
            if self._closed or self.failure is not None:
                return
            written = self.frames_written.get(result.stream, 0)
            if self.segment_frames and written and written % self.segment_frames == 0:
                old, size = self._writers.pop(result.stream)
                old.release()  # the finished segment is now a complete, playable file
                if not self._segment_whole(result.stream) or not self._room_for_next(result.stream):
                    return
                writer, _ = self._open(result.stream, image, size=size)
            else:
                writer, size = self._writers.get(result.stream) or self._open(result.stream, image)
            if (image.shape[1], image.shape[0]) != size:
                image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            writer.write(np.ascontiguousarray(image))
            self.frames_written[result.stream] = written + 1

    def write_event(self, event: dict[str, Any]) -> None:
        del event  # gaps and reconnects show up as jumps in the caption's frame index

    def close(self) -> None:
        """Release every writer so the container is finalised (moov atom written); safe to call twice.

        A recording that stopped early (or whose last file could not be finished) is reported here, after
        every writer is released, as one error naming the file and the free space: detection ran on."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for stream, (writer, _) in list(self._writers.items()):
                writer.release()
                self._segment_whole(stream)
            self._writers.clear()
        if self.failure is not None:
            raise EdgeanomError(self.failure)

    def _segment_whole(self, stream: int) -> bool:
        """Whether the stream's file just released decodes; a broken one (the disk filled while it was
        written) is removed, recording stops and `failure` says why. The files before it stay whole."""
        path = self.segments[stream][-1]
        capture = cv2.VideoCapture(str(path))
        ok = capture.isOpened() and capture.read()[0]
        capture.release()
        if ok:
            return True
        kept = len(self.segments[stream]) - 1
        path.unlink(missing_ok=True)
        self.segments[stream].pop()
        if not self.segments[stream]:
            del self.segments[stream]
        self._stop(f"{path.name} could not be written ({_free_space(path.parent)})", kept)
        return False

    def _room_for_next(self, stream: int) -> bool:
        last = self.segments[stream][-1]
        need = max(MIN_FREE_BYTES, 2 * last.stat().st_size)
        free = shutil.disk_usage(last.parent).free
        if free >= need:
            return True
        self._stop(
            f"the next file needs about {need >> 20} MB ({_free_space(last.parent)})",
            len(self.segments[stream]),
        )
        return False

    def _stop(self, why: str, kept: int) -> None:
        for writer, _ in self._writers.values():
            writer.release()
        self._writers.clear()
        if (
            self.failure is not None
        ):  # another stream's file failed too (it is removed): the first reason stands
            return
        self.failure = (
            f"--record {self.path}: recording stopped: {why}; the {kept} file(s) before it are complete"
        )
        self.warn(self.failure + "; detection goes on")

    def _stream_path(self, stream: int, suffix: Optional[str], segment: int = 0) -> Path:
        stem = self.path.stem if stream == 0 else f"{self.path.stem}.stream{stream}"
        stem += f".{segment:04d}" if segment else ""
        base = self.path.with_name(f"{stem}{self.path.suffix}")
        return base.with_suffix(suffix) if suffix else base

    def _open(
        self, stream: int, image: np.ndarray, size: Optional[tuple[int, int]] = None
    ) -> tuple[cv2.VideoWriter, tuple[int, int]]:
        size = size or (int(image.shape[1]), int(image.shape[0]))
        segment = len(self.segments.get(stream, []))
        codecs = CODECS if self.path.suffix.lower() != ".avi" else (("MJPG", None),)
        if self.codec is not None:  # every stream uses the codec the first one got
            codecs = tuple(c for c in codecs if c[0] == self.codec) + codecs
        for fourcc, suffix in codecs:
            target = self._stream_path(stream, suffix, segment)
            writer = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*fourcc), self.fps, size)
            if writer.isOpened():
                if self.codec is None and fourcc != CODECS[0][0]:
                    log.warning(
                        "recording with %s to %s (mp4v is not available in this OpenCV)", fourcc, target
                    )
                self.codec = fourcc
                self.segments.setdefault(stream, []).append(target)
                self._writers[stream] = (writer, size)
                return writer, size
            writer.release()
            if target.exists() and target.stat().st_size == 0:
                target.unlink()
        raise EdgeanomError(
            f"--record {self.path}: OpenCV cannot write video here (tried {', '.join(c for c, _ in codecs)}); "
            "check the directory is writable and OpenCV was built with FFmpeg"
        )


def _free_space(folder: Path) -> str:
    try:
        return f"{shutil.disk_usage(folder).free / 2**20:.1f} MB free on {folder}"
    except OSError as exc:
        return f"free space of {folder} unknown: {exc.strerror}"
