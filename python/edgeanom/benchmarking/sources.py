"""Where benchmark input comes from: pre-generated synthetic samples, a video file, or a camera.

A source hands out raw batches (frames for image bundles, raw windows/rows for sensor bundles) and
reports how long decoding/capture took; synthetic input has no decode stage (None).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

from edgeanom.bundle import Bundle
from edgeanom.errors import EdgeanomError

# Synthetic frames look like a typical camera: 640x480 BGR, so preprocessing does a real resize.
SYNTHETIC_FRAME_HW = (480, 640)
_POOL = 8


class SyntheticSource:
    """A small pool of random inputs, cycled; what a camera would deliver, without a camera."""

    name = "synthetic"

    def __init__(self, bundle: Bundle, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.kind = bundle.input_kind
        if self.kind == "image":
            h, w = SYNTHETIC_FRAME_HW
            self.pool: Any = [rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8) for _ in range(_POOL)]
        else:
            self.pool = rng.standard_normal((_POOL, *bundle.input_shape)).astype(np.float32)
        self._i = 0

    def next_batch(self, n: int) -> tuple[Any, Optional[float]]:
        idx = [(self._i + k) % _POOL for k in range(n)]
        self._i = (self._i + n) % _POOL
        if self.kind == "image":
            return [self.pool[i] for i in idx], None
        return self.pool[idx], None

    def close(self) -> None:
        pass


class CaptureSource:
    """Frames from cv2.VideoCapture (a file, looped at its end, or a camera index); decode time measured."""

    def __init__(self, spec: str, bundle: Bundle) -> None:
        import cv2

        if bundle.input_kind != "image":
            raise EdgeanomError(
                f"--source {spec}: video and camera sources need an image bundle, "
                f"this bundle's input.kind is '{bundle.input_kind}' (use --source synthetic)"
            )
        self.cv2 = cv2
        self.is_camera = spec == "camera" or spec.startswith("camera:")
        if self.is_camera:
            index = int(spec.split(":", 1)[1]) if ":" in spec else 0
            self.name = f"camera:{index}"
            self.cap = cv2.VideoCapture(index)
        else:
            if not Path(spec).is_file():
                raise EdgeanomError(f"--source: video file '{spec}' not found")
            self.name = f"video:{Path(spec).name}"
            self.cap = cv2.VideoCapture(spec)
        if not self.cap.isOpened():
            raise EdgeanomError(f"--source {spec}: OpenCV cannot open it")

    def _read(self) -> np.ndarray:
        ok, frame = self.cap.read()
        if not ok and not self.is_camera:
            self.cap.set(self.cv2.CAP_PROP_POS_FRAMES, 0)  # loop the file
            ok, frame = self.cap.read()
        if not ok or frame is None:
            raise EdgeanomError(f"{self.name}: no frame could be read")
        return frame

    def next_batch(self, n: int) -> tuple[list[np.ndarray], Optional[float]]:
        t0 = time.perf_counter_ns()
        frames = [self._read() for _ in range(n)]
        return frames, (time.perf_counter_ns() - t0) / 1e6

    def close(self) -> None:
        self.cap.release()


def open_source(spec: str, bundle: Bundle) -> SyntheticSource | CaptureSource:
    """'synthetic' | 'camera' | 'camera:N' | path to a video file."""
    if spec in ("", "synthetic"):
        return SyntheticSource(bundle)
    return CaptureSource(spec, bundle)
