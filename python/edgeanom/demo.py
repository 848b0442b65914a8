"""Synthetic data with anomalies at known places: a scene video and multichannel sensor series.

`edgeanom demo` uses the video to show the whole loop without a camera; tests use both to check that the
pipeline flags exactly the injected frames and windows. Everything is seeded and generated in memory.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from edgeanom.errors import EdgeanomError


@dataclass(frozen=True)
class Injected:
    """One injected anomaly: samples [start, end) of the video (frames) or series (rows)."""

    start: int
    end: int
    kind: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


DEFAULT_VIDEO_ANOMALIES = (("object", 0.58, 0.05), ("scratch", 0.72, 0.04), ("glare", 0.86, 0.05))


def scene_texture(size: int, seed: int = 0) -> np.ndarray:
    """A smooth coloured texture twice the frame size (BGR uint8), which the camera pans across."""
    import cv2

    rng = np.random.default_rng(seed)
    big = 2 * size
    noise = rng.random((big, big, 3), dtype=np.float32)
    smooth = cv2.GaussianBlur(noise, (0, 0), sigmaX=big / 24)
    smooth = (smooth - smooth.min()) / max(float(smooth.max() - smooth.min()), 1e-6)
    yy, xx = np.mgrid[0:big, 0:big].astype(np.float32)
    stripes = 0.5 + 0.5 * np.sin(2 * np.pi * (xx + 0.5 * yy) / (big / 6))
    base = 0.65 * smooth + 0.35 * stripes[..., None] * np.array([0.6, 0.8, 1.0], np.float32)
    return np.clip(40 + 170 * base, 0, 255).astype(np.uint8)


def scene_frames(
    frames: int = 360,
    size: int = 64,
    seed: int = 0,
    anomalies: Optional[list[Injected]] = None,
    noise: float = 3.0,
) -> tuple[list[np.ndarray], list[Injected]]:
    """Frames (BGR uint8, size x size) of a slowly panning textured scene, with anomalies painted in.

    Default anomalies (fractions of the length): a bright object, a dark scratch and a glare patch, all in the
    last half, so the first half is clean normal footage for training.
    """
    if frames < 20 or size < 16:
        raise EdgeanomError(f"scene needs at least 20 frames of 16x16 pixels, got {frames} of {size}x{size}")
    if anomalies is None:
        anomalies = [
            Injected(int(frac * frames), int(frac * frames) + max(3, int(length * frames)), kind)
            for kind, frac, length in DEFAULT_VIDEO_ANOMALIES
        ]
    rng = np.random.default_rng(seed + 1)
    texture = scene_texture(size, seed)
    span = texture.shape[0] - size
    out = []
    for t in range(frames):
        phase = 2 * np.pi * t / max(frames / 3, 1)  # the camera sways back and forth three times
        ox = int(span / 2 + span / 2 * np.sin(phase) + 0.5)
        oy = int(span / 4 + span / 4 * np.sin(0.5 * phase) + 0.5)
        frame = texture[oy : oy + size, ox : ox + size].astype(np.float32)
        frame += rng.normal(0.0, noise, frame.shape).astype(np.float32)
        frame = np.clip(frame, 0, 255).astype(np.uint8)
        for a in anomalies:
            if a.start <= t < a.end:
                _paint(frame, a.kind, t - a.start, rng)
        out.append(np.ascontiguousarray(frame))
    return out, list(anomalies)


def _paint(frame: np.ndarray, kind: str, step: int, rng: np.random.Generator) -> None:
    import cv2

    s = frame.shape[0]
    if kind == "object":  # a bright object crossing the scene
        cx = int(s * 0.25 + step * s * 0.03) % s
        cv2.circle(frame, (cx, s // 2), max(3, s // 8), (30, 220, 255), -1)
    elif kind == "scratch":  # a dark diagonal scratch on the lens
        cv2.line(frame, (s // 6, s // 5), (5 * s // 6, 4 * s // 5), (10, 10, 10), max(2, s // 24))
    elif kind == "glare":  # a saturated patch
        x0, y0 = s // 2, s // 6
        frame[y0 : y0 + s // 3, x0 : x0 + s // 3] = 255
    else:
        raise EdgeanomError(f"unknown anomaly kind {kind!r}: expected object, scratch or glare")


def write_video(path: Path, frames: list[np.ndarray], fps: float = 25.0) -> Path:
    """Write frames with OpenCV (mp4v in .mp4, MJPG in .avi); the file is read back to check it decodes."""
    import cv2

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames[0].shape[:2]
    fourcc = cv2.VideoWriter_fourcc(*("MJPG" if path.suffix.lower() == ".avi" else "mp4v"))
    writer = cv2.VideoWriter(str(path), fourcc, float(fps), (w, h))
    if not writer.isOpened():
        raise EdgeanomError(f"OpenCV cannot write video '{path}' (no encoder for {path.suffix})")
    try:
        for f in frames:
            writer.write(f if f.ndim == 3 else cv2.cvtColor(f, cv2.COLOR_GRAY2BGR))
    finally:
        writer.release()
    cap = cv2.VideoCapture(str(path))
    ok = cap.isOpened() and cap.read()[0]
    cap.release()
    if not ok:
        raise EdgeanomError(f"video '{path}' was written but cannot be decoded back")
    return path


def read_video(path: Path, limit: Optional[int] = None) -> list[np.ndarray]:
    """Decode a video file's frames (BGR uint8) with OpenCV, at most `limit` of them."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise EdgeanomError(f"OpenCV cannot open video '{path}'")
    frames: list[np.ndarray] = []
    try:
        while limit is None or len(frames) < limit:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(frame)
    finally:
        cap.release()
    return frames


def sensor_series(
    rows: int = 2000,
    channels: int = 3,
    seed: int = 0,
    anomalies: Optional[list[Injected]] = None,
    noise: float = 0.05,
) -> tuple[np.ndarray, list[str], list[Injected]]:
    """(rows, channels) float32 of coupled sinusoids (a machine's vibration, temperature, current...).

    Default anomalies in the last half: a spike burst, a level shift, and a frequency change.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(rows, dtype=np.float64)
    freqs = 1.0 / rng.uniform(25, 60, channels)
    phases = rng.uniform(0, 2 * np.pi, channels)
    data = np.sin(2 * np.pi * freqs[None] * t[:, None] + phases[None]) + rng.normal(
        0, noise, (rows, channels)
    )
    if anomalies is None:
        anomalies = [
            Injected(int(0.6 * rows), int(0.6 * rows) + 20, "spike"),
            Injected(int(0.75 * rows), int(0.75 * rows) + 40, "shift"),
            Injected(int(0.9 * rows), int(0.9 * rows) + 40, "frequency"),
        ]
    for a in anomalies:
        seg = slice(a.start, min(a.end, rows))
        if a.kind == "spike":
            data[seg] += rng.choice([-4.0, 4.0], size=(seg.stop - seg.start, channels))
        elif a.kind == "shift":
            data[seg] += 2.5
        elif a.kind == "frequency":
            data[seg] = np.sin(2 * np.pi * 4 * freqs[None] * t[seg, None] + phases[None])
        else:
            raise EdgeanomError(f"unknown anomaly kind {a.kind!r}: expected spike, shift or frequency")
    columns = [f"ch{i}" for i in range(channels)]
    return data.astype(np.float32), columns, list(anomalies)


def write_sensor_csv(
    path: Path, series: np.ndarray, columns: list[str], time_column: Optional[str] = "t"
) -> Path:
    """CSV with a header (time column first when given), one row per sample."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        header = ([time_column] if time_column else []) + list(columns)
        fh.write(",".join(header) + "\n")
        for i, row in enumerate(series):
            values = ",".join(f"{v:.6g}" for v in row)
            fh.write((f"{i * 0.01:.2f}," if time_column else "") + values + "\n")
    return path


# --- the `edgeanom demo` loop ------------------------------------------------------------------------
@dataclass
class Detection:
    """How one injected anomaly fared: the first alarm overlapping it, if any."""

    injected: Injected
    caught: bool
    first_alarm: Optional[int] = None  # frame of the alarm start that caught it
    delay: Optional[int] = None  # frames from the anomaly's start to the alarm (negative: alarm already on)
    peak: Optional[float] = None


def match_alarms(
    events: list[dict[str, Any]], injected: list[Injected], stream_id: int = 0, slack: int = 3
) -> tuple[list[Detection], list[tuple[int, int]]]:
    """Alarm start/end events -> which injected anomalies were caught, and the false alarms ([start, end)).

    An alarm [start, end) catches an anomaly [a, b) when they overlap, with `slack` frames of tolerance after
    b (a smoothed score can trail the anomaly by a few frames).
    """
    intervals: list[tuple[int, int, Optional[float]]] = []
    for e in events:
        if e.get("type") == "end" and e.get("stream_id", stream_id) == stream_id:
            start = e.get("start_index")
            end = e.get("index")
            if start is not None and end is not None:
                intervals.append((int(start), int(end), e.get("peak")))
    detections = []
    used = set()
    for a in injected:
        hits = [(i, iv) for i, iv in enumerate(intervals) if iv[0] < a.end + slack and iv[1] > a.start]
        if hits:
            _, (s, _e, peak) = hits[0]
            used.update(j for j, _ in hits)
            detections.append(Detection(a, True, s, s - a.start, peak))
        else:
            detections.append(Detection(a, False))
    false_alarms = [(s, e) for i, (s, e, _p) in enumerate(intervals) if i not in used]
    return detections, false_alarms


DEMO_FRAMES = 300
DEMO_SIZE = 48


def demo_train_options(frames: int, size: int) -> dict[str, Any]:
    """A small conv-AE that learns the demo scene in about a minute on a laptop CPU. The image default, grad-knn,
    fits in a second and caught the three anomalies too, but flagged one normal frame of the panning scene
    (frame 142 of the default 300), where the AE flagged none."""
    return {
        "model": "conv-ae",
        "image_size": size,
        "color": "rgb",
        "epochs": 25,
        "batch_size": 16,
        "lr": 2e-3,
        "patience": 6,
        "threshold": "percentile:99.5",
        "channels": [16, 32, 64],
        "latent": 32,
    }
