"""Draw what the model saw onto a frame: error heatmap, score bar, alarm border, a caption.

One picture shared by the recording, the saved anomalies and the web view, so they all look alike.
The heatmap colour is scaled to the threshold (not to each frame's own maximum), so a normal frame stays
calm and only errors near or above the threshold light up.
"""

from __future__ import annotations

from typing import Optional

import cv2
import numpy as np

from edgeanom.runtime.types import SampleResult

ALARM_BGR = (0, 0, 255)  # the border of a flagged frame: pure red
OK_BGR = (80, 200, 80)
HIGH_BGR = (0, 165, 255)  # orange: above the threshold (the border says whether the alarm is on)
MIN_SIDE = 160  # frames smaller than this are enlarged (nearest neighbour) so the overlay stays legible
HEAT_ALPHA = 0.6  # opacity of the heatmap where the error is at (or above) the top of the colour scale


def annotate(
    result: SampleResult,
    *,
    heat_top: Optional[float] = None,
    min_side: int = MIN_SIDE,
) -> Optional[np.ndarray]:
    """Return a new BGR uint8 image for an image sample, or None for a sensor window (no frame).

    ``heat_top`` is the error-map value drawn at full colour; it defaults to twice the threshold, so the
    threshold sits mid-scale. The heatmap is blended with an opacity that grows with the error, so
    low-error regions show the frame unchanged.
    """
    if result.frame is None:
        return None
    img = _as_bgr(result.frame)
    h, w = img.shape[:2]
    if min(h, w) < min_side:
        factor = -(-min_side // min(h, w))  # ceil: an integer factor keeps pixels square and sharp
        img = cv2.resize(img, (w * factor, h * factor), interpolation=cv2.INTER_NEAREST)
    else:
        img = img.copy()
    if result.error_map is not None:
        _overlay_heatmap(img, result.error_map, _heat_top(result, heat_top))
    if result.flag:
        _draw_border(img)
    _draw_score_bar(img, result.normalised)
    _draw_caption(img, f"{result.stream_name} #{result.index}  score {_fmt(result.score)}")
    return img


def _as_bgr(frame: np.ndarray) -> np.ndarray:
    if frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] == 1):
        return cv2.cvtColor(frame.reshape(frame.shape[:2]), cv2.COLOR_GRAY2BGR)
    if frame.ndim == 3 and frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    if frame.ndim == 3 and frame.shape[2] == 3:
        return frame
    raise ValueError(f"cannot annotate a frame of shape {frame.shape}, expected (H, W) or (H, W, 3)")


def _heat_top(result: SampleResult, heat_top: Optional[float]) -> float:
    if heat_top is not None and np.isfinite(heat_top) and heat_top > 0:
        return float(heat_top)
    if np.isfinite(result.threshold) and result.threshold > 0:
        return 2.0 * float(result.threshold)
    peak = float(np.nanmax(np.where(np.isfinite(result.error_map), result.error_map, np.nan), initial=0.0))
    return peak if peak > 0 else 1.0


def _overlay_heatmap(img: np.ndarray, error_map: np.ndarray, top: float) -> None:
    """Blend a colour-mapped error map into ``img`` in place; opacity follows the error.

    Done in uint8 with OpenCV's saturating arithmetic (about 6x faster than float blending at 640x480).
    """
    h, w = img.shape[:2]
    emap = np.asarray(error_map, dtype=np.float32).reshape(error_map.shape[-2:])
    emap = np.nan_to_num(emap, nan=top, posinf=top, neginf=0.0)
    heat_small = np.clip(emap * (255.0 / top), 0.0, 255.0).astype(np.uint8)
    if int(heat_small.max()) * HEAT_ALPHA < 1.0:  # the overlay would not change a single pixel
        return
    heat = cv2.resize(heat_small, (w, h), interpolation=cv2.INTER_LINEAR)
    colour = cv2.applyColorMap(heat, cv2.COLORMAP_JET)
    alpha = cv2.merge([cv2.convertScaleAbs(heat, alpha=HEAT_ALPHA)] * 3)  # opacity * 255, per pixel
    cv2.add(
        cv2.multiply(colour, alpha, scale=1.0 / 255.0),
        cv2.multiply(img, 255 - alpha, scale=1.0 / 255.0),
        dst=img,
    )


def _bar_height(h: int) -> int:
    return max(6, h // 24)


def _border_width(h: int, w: int) -> int:
    return max(4, min(h, w) // 40)


def _draw_score_bar(img: np.ndarray, normalised: float) -> None:
    """A bar along the bottom, inside the border: filled to the normalised score; the white tick is the
    threshold (0.5)."""
    h, w = img.shape[:2]
    inset = _border_width(h, w)
    bh = _bar_height(h)
    x0, x1, y0, y1 = inset, w - inset, h - inset - bh, h - inset  # the bar is img[y0:y1, x0:x1]
    img[y0:y1, x0:x1] = (img[y0:y1, x0:x1] * 0.35).astype(np.uint8)
    value = float(np.clip(np.nan_to_num(normalised, nan=1.0), 0.0, 1.0))
    fill = round(value * (x1 - x0))
    if fill:
        colour = HIGH_BGR if value >= 0.5 else OK_BGR
        img[y0:y1, x0 : x0 + fill] = colour
    mid = (x0 + x1) // 2
    tick = max(1, bh // 4)
    img[max(0, y0 - bh // 2) : y1, mid - tick // 2 : mid - tick // 2 + tick] = (255, 255, 255)


def _draw_border(img: np.ndarray) -> None:
    h, w = img.shape[:2]
    t = _border_width(h, w)
    img[:t, :] = ALARM_BGR
    img[-t:, :] = ALARM_BGR
    img[:, :t] = ALARM_BGR
    img[:, -t:] = ALARM_BGR


def _draw_caption(img: np.ndarray, text: str) -> None:
    """White text on a dark box in the top-left corner, sized to the frame width."""
    h, w = img.shape[:2]
    inset = _border_width(h, w) + 2
    scale = float(np.clip(w / 900.0, 0.35, 1.0))
    thickness = 1 if scale < 0.7 else 2
    font = cv2.FONT_HERSHEY_SIMPLEX
    (tw, th), base = cv2.getTextSize(text, font, scale, thickness)
    x0, y0 = inset, inset
    x1, y1 = min(w - 1, x0 + tw + 6), min(h - 1, y0 + th + base + 6)
    roi = img[y0:y1, x0:x1]
    roi[:] = (roi * 0.3).astype(np.uint8)
    cv2.putText(img, text, (x0 + 3, y0 + th + 3), font, scale, (255, 255, 255), thickness, cv2.LINE_AA)


def _fmt(score: float) -> str:
    return "inf" if not np.isfinite(score) else f"{score:.4g}"
