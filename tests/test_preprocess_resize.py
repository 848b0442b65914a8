"""How frames shrink to the model size: OpenCV's area filter (bundles without `preprocess.image.resize`) and
`fast-area` (what train records), checked against a float64 area reference, for thin lines at every offset,
and through bundles (old ones keep the exact filter; a bad value is a one-line error naming the field)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bundle_factory import preprocess_only_bundle
from edgeanom.errors import EdgeanomError
from edgeanom.preprocess import Preprocessor, fast_area_resize


def _area_weights(src: int, dst: int) -> np.ndarray:
    """(dst, src) float64: the share of each source pixel inside each output pixel's footprint."""
    r = src / dst
    w = np.zeros((dst, src))
    for i in range(dst):
        lo, hi = i * r, (i + 1) * r
        for j in range(int(np.floor(lo)), min(src, int(np.ceil(hi)))):
            w[i, j] = max(0.0, min(hi, j + 1) - max(lo, j)) / r
    return w


def area_reference(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """Exact area averaging in float64 (what INTER_AREA approximates), per channel."""
    wh, ww = _area_weights(img.shape[0], height), _area_weights(img.shape[1], width)
    planes = img[..., None] if img.ndim == 2 else img
    out = np.stack([wh @ planes[..., c].astype(np.float64) @ ww.T for c in range(planes.shape[2])], axis=-1)
    return out[..., 0] if img.ndim == 2 else out


def _scene(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur((rng.random((h, w, 3)) * 255).astype(np.uint8), (0, 0), 1.5)
    cv2.circle(img, (w // 2, h // 2), min(h, w) // 4, (20, 200, 90), 3)
    return img


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        ((320, 320), (128, 128)),
        ((300, 300), (128, 128)),
        ((480, 640), (128, 128)),
        ((1080, 1920), (192, 288)),
    ],
)
def test_fast_area_is_close_to_the_float64_area_reference(src: tuple[int, int], dst: tuple[int, int]) -> None:
    img = _scene(*src)
    ref = area_reference(img, dst[1], dst[0])
    fast = fast_area_resize(img, dst[1], dst[0]).astype(np.float64)
    exact = cv2.resize(img, (dst[1], dst[0]), interpolation=cv2.INTER_AREA).astype(np.float64)
    assert fast.shape == ref.shape == exact.shape
    assert np.abs(exact - ref).max() <= 1.0  # the reference is what OpenCV's filter computes
    # softer than one area step (two box filters in a row), never far from it, even on this noise texture
    assert np.abs(fast - ref).mean() <= 4.0 and np.abs(fast - ref).max() <= 64.0


@pytest.mark.parametrize(
    ("src", "dst"), [((256, 384), (128, 192)), ((120, 90), (96, 80)), ((64, 64), (96, 128))]
)
def test_integer_factors_small_shrinks_and_enlargements_take_the_exact_filters(
    src: tuple[int, int], dst: tuple[int, int]
) -> None:
    img = _scene(*src)
    how = cv2.INTER_AREA if src[0] > dst[0] else cv2.INTER_LINEAR
    assert np.array_equal(
        fast_area_resize(img, dst[1], dst[0]), cv2.resize(img, (dst[1], dst[0]), interpolation=how)
    )


@settings(max_examples=40, deadline=None)
@given(row=st.integers(0, 319), vertical=st.booleans(), height=st.sampled_from([96, 128, 150]))
def test_a_one_pixel_scratch_is_never_skipped(row: int, vertical: bool, height: int) -> None:
    """Sampling (bilinear) would thin or miss a thin line at some offsets; area steps keep all its ink."""
    img = np.full((320, 320), 200, np.uint8)
    if vertical:
        img[:, row] = 40
    else:
        img[row, :] = 40
    out = fast_area_resize(img, height, height).astype(np.float64)
    ref = area_reference(img, height, height)
    ink, ref_ink = (200.0 - out).sum(), (200.0 - ref).sum()
    assert abs(ink - ref_ink) <= 0.01 * ref_ink  # the line's total darkness is kept
    assert (200.0 - out).max() >= 0.5 * (200.0 - ref).max()  # and it stays visible


def _bundle(root: Path, image: dict) -> Path:
    return preprocess_only_bundle(root, "conv-ae", [3, 32, 32], image)


def test_bundles_choose_the_filter_and_a_bad_value_names_the_field(tmp_path: Path) -> None:
    frame = _scene(300, 300)
    old = Preprocessor(_bundle(tmp_path / "old", {"size": [32, 32], "color": "rgb"}))
    new = Preprocessor(_bundle(tmp_path / "new", {"size": [32, 32], "color": "rgb", "resize": "fast-area"}))
    exact = cv2.cvtColor(cv2.resize(frame, (32, 32), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
    fast = cv2.cvtColor(fast_area_resize(frame, 32, 32), cv2.COLOR_BGR2RGB)
    assert np.array_equal(old([frame])[0], exact.transpose(2, 0, 1) * np.float32(1.0 / 255.0))
    assert np.array_equal(new([frame])[0], fast.transpose(2, 0, 1) * np.float32(1.0 / 255.0))
    assert not np.array_equal(exact, fast)  # 300 -> 32 is a non-integer shrink: the two differ
    with pytest.raises(
        EdgeanomError,
        match=r"bundle \S*/bad: preprocess\.image\.resize must be one of area, fast-area, got 'cubic'",
    ) as err:
        Preprocessor(_bundle(tmp_path / "bad", {"size": [32, 32], "color": "rgb", "resize": "cubic"}))
    assert "\n" not in str(err.value)
