"""annotate(): heatmap scaled to the threshold, score bar, alarm border, caption; None for sensor windows."""

from __future__ import annotations

import numpy as np
import pytest

from _sinks_common import THRESHOLD, make_result
from edgeanom.runtime.annotate import annotate

SIZE = (180, 240)


def _centre(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    return img[h // 2 - 10 : h // 2 + 10, w // 2 - 10 : w // 2 + 10].astype(np.int16)


def test_normal_frame_stays_calm_and_flagged_frame_lights_up():
    normal, flagged = make_result(0, size=SIZE), make_result(0, flagged=True, size=SIZE)
    a_normal, a_flagged = annotate(normal), annotate(flagged)
    assert a_normal.shape == a_flagged.shape == (*SIZE, 3) and a_normal.dtype == np.uint8
    # Error at 10% of the threshold: the centre is the frame, almost untouched.
    assert np.abs(_centre(a_normal) - _centre(normal.frame)).max() <= 12
    # Error at 3x the threshold (hot spot in the centre): strongly coloured.
    assert np.abs(_centre(a_flagged) - _centre(flagged.frame)).mean() > 40
    assert normal.frame is not a_normal and np.all(normal.frame[SIZE[0] // 2, SIZE[1] // 2] == 110), (
        "input modified"
    )


def test_border_only_when_flagged():
    def right_edge(img):
        return img[60:120, -2:].reshape(-1, 3).mean(axis=0)

    assert np.allclose(right_edge(annotate(make_result(1, flagged=True, size=SIZE))), (0, 0, 255))
    assert np.allclose(
        right_edge(annotate(make_result(1, size=SIZE))), (110, 110, 110), atol=10
    )  # faint tint only


@pytest.mark.parametrize("normalised", [0.0, 0.25, 0.75, 1.0])
def test_score_bar_fills_to_the_normalised_score(normalised):
    r = make_result(2, size=SIZE)
    r.normalised = normalised
    img = annotate(r)
    h, w = img.shape[:2]
    row = img[h - 6, 4 : w - 4].astype(int)  # inside the bar, below the threshold tick's top
    coloured = np.abs(row - row.mean(axis=1, keepdims=True)).sum(axis=1) > 60  # green/orange, not grey
    filled = coloured.sum() / len(row)
    assert filled == pytest.approx(normalised, abs=0.03)
    tick = img[h - 6, w // 2]
    assert np.all(tick == 255), "threshold tick missing at the bar's middle"


def test_grey_and_small_frames_and_sensor_windows():
    r = make_result(3, size=(40, 60), flagged=True, score=float("inf"))
    r.frame = r.frame[..., 0]  # single-channel camera
    img = annotate(r)
    assert img.shape == (160, 240, 3)  # enlarged by an integer factor (4x) to stay legible
    assert annotate(make_result(4, with_frame=False)) is None


def test_heat_scale_can_be_set():
    r = make_result(5, flagged=True, size=SIZE)
    soft = annotate(r, heat_top=THRESHOLD * 1000)  # the hot spot is tiny on this scale
    assert np.abs(_centre(soft) - _centre(r.frame)).max() <= 12
