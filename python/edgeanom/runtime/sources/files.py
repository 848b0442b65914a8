"""Recorded frames: a video file (every frame, in order) and a folder of images (sorted by name)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np

from edgeanom.errors import EdgeanomError
from edgeanom.runtime.sources.base import CorruptInput

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pnm")
MAX_CONSECUTIVE_BAD = 25  # decode failures in a row before a video is taken to have ended
# FFmpeg decodes small frames on one thread: `run` already gives every stream its own capture thread, and
# inference wants the other cores. FFmpeg's own frame threads cost CPU in hand-overs (2 cores: a 320x320 MPEG-4
# frame 0.15 -> 0.095 CPU-ms; `run` 1216 -> 1326 frames/s in benchmarks/bench_pipeline.py). Larger frames keep
# FFmpeg's threads: there the capture thread (decode + resize) is what limits one stream (1280x720 with the area
# resize: 372 frames/s with them, 327 without), and the saving is small (1280x720 1.34 -> 1.23 CPU-ms).
DECODE_THREADS = 1
SMALL_FRAME_PIXELS = 640 * 480


class VideoFileSource:
    """Every frame of a video file, decoded by OpenCV (FFmpeg). No drops unless --realtime."""

    kind = "frames"
    drop_stale = False
    reconnect = False

    def __init__(self, path: str | Path, realtime: bool = False, loop: bool = False) -> None:
        self.path = Path(path)
        self.loop = bool(loop)  # start again at the end, like a camera that never stops (demos, soak tests)
        self.name = f"video:{self.path.name}"
        self.drop_stale = bool(realtime)
        self.fps: Optional[float] = None
        self.frame_count = 0
        self.last_ref: Optional[str] = None
        self._cap: Any = None
        self._pos = 0
        self._bad_run = 0

    def _capture(self, threads: Optional[int]) -> Any:
        """The file opened by OpenCV's FFmpeg backend, on `threads` decoding threads (None: FFmpeg's choice)."""
        import cv2

        cap = cv2.VideoCapture(
            str(self.path), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, threads] if threads else []
        )
        if not cap.isOpened():
            cap.release()
            raise EdgeanomError(f"cannot decode video '{self.path}' (OpenCV/FFmpeg could not open it)")
        return cap

    def open(self) -> None:
        import cv2

        if not self.path.is_file():
            raise EdgeanomError(f"video file '{self.path}' does not exist")
        cap = self._capture(DECODE_THREADS)
        if cap.get(cv2.CAP_PROP_FRAME_WIDTH) * cap.get(cv2.CAP_PROP_FRAME_HEIGHT) > SMALL_FRAME_PIXELS:
            cap.release()
            cap = self._capture(None)
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and 0 < fps < 1000 else None
        self.frame_count = max(int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0), 0)
        self._cap = cap

    def read(self) -> Optional[np.ndarray]:
        if self._cap is None:
            return None
        ok, frame = self._cap.read()
        pos = self._pos
        self._pos += 1
        if ok and frame is not None and frame.size:
            self._bad_run = 0
            return frame
        # A failed read before the container's frame count is a corrupt frame; past it, the end.
        self._bad_run += 1
        if pos < self.frame_count - 1 and self._bad_run < MAX_CONSECUTIVE_BAD:
            raise CorruptInput(f"{self.path.name} frame {pos}: decode failed")
        if self.loop and self._bad_run == 1:
            # frame numbers keep counting up across the loops; only a file that yields nothing ends it
            self.close()
            self.open()
            return self.read()
        return None

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class ImageFolderSource:
    """Images of a folder in name order; unreadable files are skipped and counted, named verbatim."""

    kind = "frames"
    drop_stale = False
    reconnect = False
    fps: Optional[float] = None

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.name = f"images:{self.directory.name or self.directory}"
        self.files: list[Path] = []
        self.last_ref: Optional[str] = None
        self._next = 0

    def open(self) -> None:
        if not self.directory.is_dir():
            raise EdgeanomError(f"image folder '{self.directory}' does not exist")
        self.files = sorted(
            p for p in self.directory.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
        if not self.files:
            raise EdgeanomError(
                f"image folder '{self.directory}' holds no images ({', '.join(IMAGE_SUFFIXES)})"
            )

    def read(self) -> Optional[np.ndarray]:
        import cv2

        if self._next >= len(self.files):
            return None
        path = self.files[self._next]
        self._next += 1
        self.last_ref = path.name
        frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if frame is None or frame.size == 0:
            raise CorruptInput(f"{path.name}: cannot decode image")
        return frame

    def close(self) -> None:
        self._next = len(self.files)
