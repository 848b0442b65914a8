"""Turn raw frames, windows and feature rows into model input exactly as the bundle says.

Training, eval, run and bench all go through these classes, so the model sees the same numbers
on the workstation and on the device. Buffers are reused between batches (no per-frame allocation).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

import cv2
import numpy as np

from edgeanom.bundle import Bundle
from edgeanom.errors import EdgeanomError


def area_resize(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    """One step of OpenCV's area filter when shrinking (bilinear when enlarging): what bundles without
    `preprocess.image.resize` were trained with."""
    h, w = frame.shape[:2]
    if (h, w) == (height, width):
        return frame
    shrink = h > height or w > width
    return cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def fast_area_resize(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    """Shrink with area averaging in halving steps: OpenCV's exact 2x2 box mean (its fast integer path) while
    both sides stay at least the target and even, then its area filter for the remaining factor (< 2).

    Every source pixel still counts with its area (a one-pixel scratch keeps all its ink at any offset), but
    large frames cost a fraction: OpenCV's area filter at a non-integer ratio takes about 7 ms per 1080p frame
    on one core, this about 1.6 ms. The result is a little softer than one area step (two box filters in a
    row); shrinks of less than 2x, odd sizes and enlargements take the exact filters.
    """
    h, w = frame.shape[:2]
    while h % 2 == 0 and w % 2 == 0 and h // 2 >= height and w // 2 >= width:
        h, w = h // 2, w // 2
        frame = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
    return area_resize(frame, width, height)


RESIZERS = {"area": area_resize, "fast-area": fast_area_resize}  # preprocess.image.resize -> function
NEW_BUNDLE_RESIZE = "fast-area"  # what train records; bundles without the field were made with "area"


def _as_uint8_frame(frame: np.ndarray) -> np.ndarray:
    """Any decoded frame -> uint8 (H, W) or (H, W, 3) BGR; a clear error for anything else."""
    if frame is None or frame.size == 0:
        raise EdgeanomError("empty frame")
    if frame.dtype != np.uint8:
        if np.issubdtype(frame.dtype, np.floating):
            frame = np.clip(frame * 255.0 if frame.max(initial=0) <= 1.0 else frame, 0, 255)
        frame = frame.astype(np.uint8)
    if frame.ndim == 3 and frame.shape[2] == 4:
        frame = cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    if frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[2] != 3):
        raise EdgeanomError(f"frame has shape {frame.shape}, expected (H, W) or (H, W, 3)")
    return frame


class ImagePreprocessor:
    """BGR/grey uint8 frames of any size -> float32 NCHW in [0, 1] at the bundle's size and colour.

    With `frames` = T (a bundle that packs frames) each input is a packed (H, W, T) frame, newest first as
    `FramePacker` gives it; the model sees the channels oldest first (for T = 3 that is BGR -> RGB).
    """

    def __init__(self, size: Sequence[int], color: str, frames: int = 0, resize: str = "area") -> None:
        if color not in ("gray", "rgb"):
            raise EdgeanomError(f"preprocess.image.color must be 'gray' or 'rgb', got {color!r}")
        if resize not in RESIZERS:
            raise EdgeanomError(
                f"preprocess.image.resize must be one of {', '.join(RESIZERS)}, got {resize!r}"
            )
        self._resize_to = RESIZERS[resize]
        self.height, self.width = int(size[0]), int(size[1])
        self.color = color
        self.frames = int(frames)
        self.channels = self.frames or (1 if color == "gray" else 3)
        self._buffer: Optional[np.ndarray] = None

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.height, self.width)

    def _resize(self, frame: np.ndarray) -> np.ndarray:
        if frame.shape[:2] == (self.height, self.width):
            return frame
        resize = self._resize_to
        if frame.ndim == 3 and frame.shape[2] > 4:  # OpenCV resizes at most 4 channels at once in general
            return np.dstack([resize(frame[:, :, i], self.width, self.height) for i in range(frame.shape[2])])
        return resize(frame, self.width, self.height)

    def convert(self, frame: np.ndarray) -> np.ndarray:
        """One frame -> uint8 HxW (grey), HxWx3 (RGB) or HxWxT (packed, oldest first) at the model size."""
        if self.frames:
            if frame is None or frame.ndim != 3 or frame.shape[2] != self.frames or frame.dtype != np.uint8:
                got = None if frame is None else f"{frame.dtype} {frame.shape}"
                raise EdgeanomError(f"packed frame must be uint8 (H, W, {self.frames}), got {got}")
            return np.ascontiguousarray(self._resize(frame)[:, :, ::-1])
        frame = self._resize(_as_uint8_frame(frame))
        if self.color == "gray":
            return frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        return (
            cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
            if frame.ndim == 2
            else cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        )

    def __call__(self, frames: Sequence[np.ndarray], out: Optional[np.ndarray] = None) -> np.ndarray:
        """Frames -> (N, C, H, W) float32. Writes into `out` (or an internal reused buffer)."""
        n = len(frames)
        if out is None:
            if self._buffer is None or self._buffer.shape[0] < n:
                self._buffer = np.empty((max(n, 1), *self.sample_shape), dtype=np.float32)
            out = self._buffer[:n]
        for i, frame in enumerate(frames):
            img = self.convert(frame)
            if self.channels == 1:
                np.multiply(img, np.float32(1.0 / 255.0), out=out[i, 0], casting="unsafe")
            else:
                np.multiply(img.transpose(2, 0, 1), np.float32(1.0 / 255.0), out=out[i], casting="unsafe")
        return out


MAX_PACKED_FRAMES = 32


class FramePacker:
    """Causal frame packing for video models: grey frames t-(T-1)s, ..., t-s, t become one T-channel frame.

    A ring buffer of the last ``(T - 1) * spacing + 1`` grey frames of one stream. Each `push` returns a uint8
    (H, W, T) frame, newest first: for T = 3 that is a BGR frame with B = t, G = t - s, R = t - 2s, so after
    the bundle's RGB preprocessing the channels run oldest -> newest, the layout the video models read. Only
    past frames are used, so it runs on a live camera; until a stream has its full past the missing frames
    repeat its first frame. A frame of another size restarts the stream (a camera that reconnected).
    """

    def __init__(self, spacing: int, frames: int = 3) -> None:
        if not _is_whole(frames) or not 2 <= int(frames) <= MAX_PACKED_FRAMES:
            raise EdgeanomError(
                f"preprocess.image.pack.frames must be a whole number in [2, {MAX_PACKED_FRAMES}], got {frames!r}"
            )
        if not _is_whole(spacing) or int(spacing) < 1:
            raise EdgeanomError(f"preprocess.image.pack.spacing must be >= 1 frame, got {spacing!r}")
        self.spacing = int(spacing)
        self.frames = int(frames)
        self._span = (self.frames - 1) * self.spacing  # frames between the oldest and the newest packed
        self._ring: Optional[np.ndarray] = None  # (span + 1, H, W) uint8 grey history
        self._count = 0  # frames pushed since the stream (re)started

    @property
    def warm(self) -> bool:
        """Whether the newest packed frame has a real past, not a repeated first frame."""
        return self._count > self._span

    def reset(self) -> None:
        """Forget the history: the next frame starts a new stream."""
        self._ring = None
        self._count = 0

    def push(self, frame: np.ndarray) -> np.ndarray:
        """Add the stream's next frame (BGR or grey, any size); returns the packed (H, W, T) uint8 frame."""
        frame = _as_uint8_frame(frame)
        grey = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        length = self._span + 1
        if self._ring is None or self._ring.shape[1:] != grey.shape:
            self._ring = np.empty((length, *grey.shape), dtype=np.uint8)
            self._ring[:] = grey  # the past of the first frame is the first frame
            self._count = 0
        slot = self._count % length
        self._ring[slot] = grey
        self._count += 1
        order = [(slot - i * self.spacing) % length for i in range(self.frames)]  # newest first
        return np.dstack([self._ring[i] for i in order])


def pack_warmup(pack: Optional[dict[str, Any]]) -> int:
    """Frames a stream needs before its first score under `preprocess.image.pack` (0 without packing): the
    first (frames - 1) * spacing have no full past, and `run` emits no sample for them."""
    return (int(pack.get("frames", 3)) - 1) * int(pack["spacing"]) if pack else 0


def _is_whole(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def pack_sequence(frames: Sequence[np.ndarray], spacing: int, count: int = 3) -> list[np.ndarray]:
    """Pack the frames of one stream, in order, `count` frames `spacing` apart (see `FramePacker`)."""
    packer = FramePacker(spacing, count)
    return [packer.push(f) for f in frames]


class FeatureScaler:
    """Per-feature affine scaling `(x - offset) * scale` fitted on normal training data only."""

    def __init__(self, kind: str, offset: Sequence[float], scale: Sequence[float]) -> None:
        self.kind = kind
        self.offset = np.asarray(offset, dtype=np.float32)
        self.scale = np.asarray(scale, dtype=np.float32)

    @classmethod
    def fit(cls, data: np.ndarray, kind: str = "standard") -> FeatureScaler:
        """Fit on (rows, features) normal data. Constant features get scale 1 (no divide by zero)."""
        data = np.asarray(data, dtype=np.float64)
        if kind == "minmax":
            lo, hi = data.min(axis=0), data.max(axis=0)
            span = hi - lo
            return cls(kind, lo, np.where(span > 1e-12, 1.0 / np.where(span > 1e-12, span, 1.0), 1.0))
        if kind == "standard":
            mu, sd = data.mean(axis=0), data.std(axis=0)
            return cls(kind, mu, np.where(sd > 1e-12, 1.0 / np.where(sd > 1e-12, sd, 1.0), 1.0))
        raise EdgeanomError(f"unknown scaler {kind!r}: expected 'minmax' or 'standard'")

    @classmethod
    def from_json(cls, spec: Optional[dict[str, Any]]) -> Optional[FeatureScaler]:
        if not spec:
            return None
        return cls(spec["kind"], spec["offset"], spec["scale"])

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "offset": self.offset.tolist(), "scale": self.scale.tolist()}

    def __call__(self, x: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
        """Scale the last axis (features or channels). Returns float32."""
        x = np.asarray(x, dtype=np.float32)
        if x.shape[-1] != self.offset.shape[0]:
            raise EdgeanomError(
                f"input has {x.shape[-1]} features (shape {x.shape}), the scaler expects {self.offset.shape[0]}"
            )
        if out is None:
            out = np.empty_like(x)
        np.subtract(x, self.offset, out=out)
        np.multiply(out, self.scale, out=out)
        return out

    def inverse(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=np.float32) / self.scale + self.offset


def sliding_windows(series: np.ndarray, length: int, stride: int = 1) -> np.ndarray:
    """(T, C) series -> (W, length, C) windows (a copy), in time order; never shuffled."""
    series = np.ascontiguousarray(series, dtype=np.float32)
    if series.ndim != 2:
        raise EdgeanomError(f"series has shape {series.shape}, expected (time, channels)")
    if length < 1 or stride < 1:
        raise EdgeanomError(f"window length and stride must be >= 1, got length={length} stride={stride}")
    if series.shape[0] < length:
        return np.empty((0, length, series.shape[1]), dtype=np.float32)
    view = np.lib.stride_tricks.sliding_window_view(series, length, axis=0)[::stride]  # (W, C, length)
    return np.ascontiguousarray(view.transpose(0, 2, 1))


class Preprocessor:
    """The bundle's preprocessing for its input kind: frames for images, raw rows/windows for sensors."""

    def __init__(self, bundle: Bundle) -> None:
        self.kind = bundle.input_kind
        self.sample_shape = bundle.input_shape
        spec = bundle.preprocess
        image = spec["image"] if self.kind == "image" else None
        self.pack: Optional[dict[str, Any]] = (image or {}).get("pack")
        if self.pack is not None and (not isinstance(self.pack, dict) or "spacing" not in self.pack):
            raise EdgeanomError(
                f'bundle {bundle.path}: preprocess.image.pack must be {{"frames": T, "spacing": S}}, '
                f"got {self.pack!r}"
            )
        packer = self.new_packer()  # validates frames and spacing
        self.image: Optional[ImagePreprocessor] = None
        if image is not None:
            try:  # its own checks (colour, resize) name the field; this names the bundle
                self.image = ImagePreprocessor(
                    image["size"], image["color"], packer.frames if packer else 0, image.get("resize", "area")
                )
            except EdgeanomError as exc:
                raise EdgeanomError(f"bundle {bundle.path}: {exc}") from None
        if packer is not None and self.image is not None and self.image.color != "rgb":
            raise EdgeanomError(
                f"bundle {bundle.path}: preprocess.image.pack needs color 'rgb', got {self.image.color!r}"
            )
        self.scaler = FeatureScaler.from_json(spec.get("scaler"))
        window = spec.get("window") or {}
        self.window_length = int(window.get("length", 0)) or None
        self.window_stride = int(window.get("stride", 1))

    def new_packer(self) -> Optional[FramePacker]:
        """A fresh FramePacker for one stream when the bundle packs frames (preprocess.image.pack), else None.

        Frames of a stream go through `packer.push` in order before this Preprocessor; one packer per stream.
        """
        if self.pack is None:
            return None
        return FramePacker(self.pack["spacing"], self.pack.get("frames", 3))

    def __call__(self, batch: Any) -> np.ndarray:
        """Images: a list of frames. Windows: (N, T, C) raw values. Vectors: (N, F) raw values."""
        if self.image is not None:
            return self.image(batch)
        x = np.asarray(batch, dtype=np.float32)
        if x.shape[1:] != tuple(self.sample_shape):
            raise EdgeanomError(
                f"input batch has shape {x.shape}, expected (N, {', '.join(map(str, self.sample_shape))})"
            )
        return self.scaler(x) if self.scaler is not None else np.ascontiguousarray(x)
