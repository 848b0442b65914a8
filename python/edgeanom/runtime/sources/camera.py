"""Cameras through OpenCV: a device index, a network URL, a GStreamer pipeline, or a Jetson CSI sensor.

Opening tries each capture API that fits the spec and, when none works, the error lists what was tried,
so a user can tell a wrong index from a missing GStreamer build.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional
from urllib.parse import parse_qs, urlsplit

import numpy as np

from edgeanom.errors import EdgeanomError
from edgeanom.runtime.sources.base import SourceLost

NETWORK_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt")


def csi_pipeline(spec: str) -> str:
    """`csi:N[?width=W&height=H&fps=F&flip=M]` -> the Jetson nvarguscamerasrc pipeline ending in appsink."""
    parts = urlsplit(spec)
    sensor = (parts.path or "0").strip("/") or "0"
    if not sensor.isdigit():
        raise EdgeanomError(f"camera '{spec}': expected csi:N with a sensor number N, e.g. csi:0")
    q = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    width, height = int(q.get("width", 1280)), int(q.get("height", 720))
    fps, flip = int(q.get("fps", 30)), int(q.get("flip", 0))
    return (
        f"nvarguscamerasrc sensor-id={sensor} ! "
        f"video/x-raw(memory:NVMM), width={width}, height={height}, framerate={fps}/1 ! "
        f"nvvidconv flip-method={flip} ! video/x-raw, format=BGRx ! videoconvert ! "
        "video/x-raw, format=BGR ! appsink drop=1 max-buffers=1 sync=false"
    )


def describe_camera(spec: str) -> str:
    """Stream name for a camera spec (credentials in URLs are hidden)."""
    parts = urlsplit(spec)
    if parts.scheme in NETWORK_SCHEMES and parts.password:
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        spec = parts._replace(netloc=f"{parts.username}:***@{host}{port}").geturl()
    if "!" in spec:
        spec = spec.split("!")[0].strip() + " ! …"
    return f"camera:{spec}"


def _has_gstreamer() -> bool:
    import cv2

    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GStreamer:"):
            return "YES" in line
    return False


class CameraSource:
    """A live camera. Keeps OpenCV's own buffer at one frame so the newest frame is what we read."""

    kind = "frames"
    drop_stale = True
    reconnect = True

    def __init__(self, spec: str) -> None:
        self.spec = str(spec).strip()
        self.name = describe_camera(self.spec)
        self.fps: Optional[float] = None
        self.last_ref: Optional[str] = None
        self._cap: Any = None

    def _attempts(self) -> list[tuple[str, Any, int]]:
        """(description, argument for VideoCapture, API preference) in the order to try."""
        import cv2

        spec = self.spec
        if spec.isdigit():
            index = int(spec)
            attempts = []
            if sys.platform.startswith("linux"):
                attempts.append((f"V4L2 device /dev/video{index}", index, cv2.CAP_V4L2))
            attempts.append((f"device index {index} (any OpenCV backend)", index, cv2.CAP_ANY))
            return attempts
        if spec.startswith("csi:"):
            return [
                (f"GStreamer nvarguscamerasrc pipeline for {spec}", csi_pipeline(spec), cv2.CAP_GSTREAMER)
            ]
        if "!" in spec:
            return [("GStreamer pipeline", spec, cv2.CAP_GSTREAMER)]
        scheme = urlsplit(spec).scheme.lower()
        if scheme in NETWORK_SCHEMES:
            attempts = [(f"FFmpeg {scheme} stream", spec, cv2.CAP_FFMPEG)]
            if _has_gstreamer():
                attempts.append((f"GStreamer {scheme} stream", spec, cv2.CAP_GSTREAMER))
            return attempts
        if spec.startswith("/dev/"):
            return [(f"V4L2 device {spec}", spec, cv2.CAP_V4L2)]
        raise EdgeanomError(
            f"camera '{spec}': not a device index (0), URL (rtsp://, http://), GStreamer pipeline "
            "(… ! appsink) or csi:N; for a file use --video"
        )

    def open(self) -> None:
        import cv2

        tried = []
        for what, arg, api in self._attempts():
            if api == cv2.CAP_GSTREAMER and not _has_gstreamer():
                tried.append(
                    f"{what}: this OpenCV build has no GStreamer support (opencv-python-headless from PyPI "
                    "has none; on a Jetson keep JetPack's OpenCV, see tools/install_jetson.sh)"
                )
                continue
            if isinstance(arg, int) and api == cv2.CAP_V4L2 and not Path(f"/dev/video{arg}").exists():
                tried.append(f"{what}: /dev/video{arg} does not exist")
                continue
            cap = cv2.VideoCapture(arg, api)
            if cap.isOpened():
                cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
                fps = cap.get(cv2.CAP_PROP_FPS)
                self.fps = float(fps) if fps and 0 < fps < 1000 else None
                self._cap = cap
                return
            cap.release()
            tried.append(f"{what}: OpenCV could not open it")
        raise EdgeanomError(f"cannot open camera '{self.spec}'; tried " + "; ".join(tried))

    def read(self) -> Optional[np.ndarray]:
        if self._cap is None:
            raise SourceLost("camera is not open")
        ok, frame = self._cap.read()
        if not ok or frame is None:
            raise SourceLost("the camera stopped delivering frames")
        return frame

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
