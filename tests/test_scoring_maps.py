"""error_map / blur_maps / map_score against float64 NumPy/SciPy references."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.ndimage import gaussian_filter1d

from edgeanom import _scoring, scoring

FLOAT_DTYPES = (np.float32, np.float16)


def ref_error_map(x, y):
    x64 = x.astype(np.float64)
    y64 = (
        y.astype(np.float64)
        if y.shape == x.shape
        else np.broadcast_to(y.astype(np.float64).reshape((1, *x.shape[1:])), x.shape)
    )
    with np.errstate(all="ignore"):
        m = ((x64 - y64) ** 2).mean(axis=1) if x.shape[1] else np.zeros((x.shape[0], *x.shape[2:]))
    bad = ~(np.isfinite(x64).all(axis=1) & np.isfinite(y64).all(axis=1))
    return np.where(bad, np.inf, m)


def ref_blur(maps, sigma):
    m = maps.astype(np.float64)
    if int(4.0 * sigma + 0.5) == 0 or m.size == 0:  # radius 0: identity
        return m
    m = gaussian_filter1d(m, sigma, axis=-2, mode="reflect", truncate=4.0)
    return gaussian_filter1d(m, sigma, axis=-1, mode="reflect", truncate=4.0)


def assert_close(got, want, rtol=5e-5):
    assert got.dtype == np.float32
    assert got.shape == want.shape
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    fin = np.isfinite(want)
    np.testing.assert_allclose(
        got[fin], want[fin], rtol=rtol, atol=1e-6 * max(1.0, float(np.abs(want[fin]).max(initial=0)))
    )


@st.composite
def image_pairs(draw):
    shape = (
        draw(st.integers(0, 3)),
        draw(st.integers(0, 4)),
        draw(st.integers(0, 9)),
        draw(st.integers(0, 9)),
    )
    dx, dy = draw(st.sampled_from(FLOAT_DTYPES)), draw(st.sampled_from(FLOAT_DTYPES))
    layout = draw(st.sampled_from(["full", "row", "tail"]))
    y_shape = {"full": shape, "row": (1, *shape[1:]), "tail": shape[1:]}[layout]
    el = st.floats(-50, 50, width=16)
    return draw(hnp.arrays(dx, shape, elements=el)), draw(hnp.arrays(dy, y_shape, elements=el))


@settings(max_examples=120, deadline=None)
@given(image_pairs(), st.sampled_from([0.0, 0.3, 0.8, 1.0, 2.5]))
def test_error_map_matches_reference(pair, sigma):
    x, y = pair
    got = scoring.error_map(x, y, blur_sigma=sigma)
    assert_close(got, ref_blur(ref_error_map(x, y), sigma))
    # blurring inside error_map is exactly blur_maps on the unblurred map
    np.testing.assert_array_equal(got, scoring.blur_maps(scoring.error_map(x, y), sigma))


@settings(max_examples=80, deadline=None)
@given(
    hnp.arrays(
        np.float32,
        hnp.array_shapes(min_dims=3, max_dims=3, min_side=0, max_side=12),
        elements=st.floats(0, 100, width=32),
    ),
    st.floats(0.0, 6.0),
)
def test_blur_matches_scipy(maps, sigma):
    assert_close(scoring.blur_maps(maps, sigma), ref_blur(maps, sigma))


def test_blur_radius_larger_than_the_map_reflects_repeatedly():
    rng = np.random.default_rng(0)
    maps = rng.random((2, 3, 2)).astype(np.float32)
    for sigma in (1.0, 2.0, 7.5):
        assert_close(scoring.blur_maps(maps, sigma), ref_blur(maps, sigma))
    for tiny in (1e-300, 5e-324, 0.1):  # radius 0: the identity, no division by sigma^2 == 0
        np.testing.assert_array_equal(scoring.blur_maps(maps, tiny), maps)


def test_blur_2d_float16_and_in_place():
    rng = np.random.default_rng(1)
    m = rng.random((20, 31)).astype(np.float32)
    want = ref_blur(m, 2.0)
    assert_close(scoring.blur_maps(m.astype(np.float16), 2.0), ref_blur(m.astype(np.float16), 2.0))
    res = scoring.blur_maps(m, 2.0, out=m)
    assert res is m
    assert_close(m, want)


def test_error_map_non_finite_pixels_are_inf_and_spread_by_blur():
    x = np.zeros((2, 3, 8, 8), np.float32)
    x[0, 1, 2, 3] = np.nan
    x[1, 0, 5, 5] = np.inf
    m = scoring.error_map(x, np.zeros_like(x))
    assert m[0, 2, 3] == np.inf and m[1, 5, 5] == np.inf
    assert np.isfinite(m).sum() == 2 * 64 - 2
    b = scoring.error_map(x, np.zeros_like(x), blur_sigma=1.0)
    assert b[0, 2, 3] == np.inf and not np.isnan(b).any()
    nan_maps = np.zeros((1, 4, 4), np.float32)
    nan_maps[0, 1, 1] = np.nan
    assert not np.isnan(scoring.blur_maps(nan_maps, 0.0)).any()
    assert scoring.blur_maps(nan_maps, 1.0)[0, 1, 1] == np.inf


def test_error_map_non_contiguous_and_out():
    rng = np.random.default_rng(2)
    big = rng.random((2, 3, 16, 16)).astype(np.float32)
    x = big[:, :, ::2, ::2]
    y = rng.random((3, 8, 8)).astype(np.float16)
    out = np.empty((2, 8, 8), np.float32)
    res = scoring.error_map(x, y, 1.5, out=out)
    assert res is out
    assert_close(out, ref_blur(ref_error_map(x, y), 1.5))


@pytest.fixture
def restore_threads():
    n = scoring.get_num_threads()
    yield
    scoring.set_num_threads(n)
    _scoring._set_grain(0)
    _scoring._set_simd("auto")


def test_maps_bitwise_identical_across_thread_counts(restore_threads):
    rng = np.random.default_rng(3)
    x = rng.random((5, 3, 61, 67)).astype(np.float16)
    y = rng.random((5, 3, 61, 67)).astype(np.float32)
    big = rng.random((1, 1, 300, 1100)).astype(np.float32)
    results = {}
    for grain in (0, 500):
        _scoring._set_grain(grain)
        for nt in (1, 2, 3, 7):
            scoring.set_num_threads(nt)
            m = scoring.error_map(x, y, blur_sigma=2.0)
            r = [m.tobytes(), scoring.error_map(big, big * 0.5, 1.0).tobytes()]
            r += [scoring.map_score(m, "max").tobytes(), scoring.map_score(m, "topk_mean", k=37).tobytes()]
            results[(grain, nt)] = r
    first = next(iter(results.values()))
    assert all(v == first for v in results.values())
    if _scoring._set_simd("generic"):
        assert scoring.error_map(x, y, blur_sigma=2.0).tobytes() == first[0]


# --- map_score ---------------------------------------------------------------------------------------


def ref_map_score(maps, mode, k):
    n = maps.shape[0]
    flat = maps.astype(np.float64).reshape(n, int(np.prod(maps.shape[1:])))
    flat = np.where(np.isnan(flat), np.inf, flat)
    if flat.shape[1] == 0:
        return np.zeros(n)
    if mode == "max":
        return flat.max(axis=1)
    kk = min(max(k, 1), flat.shape[1])
    top = -np.sort(-flat, axis=1)[:, :kk]
    with np.errstate(invalid="ignore"):
        r = top.mean(axis=1)
    return np.where(np.isnan(r), np.inf, r)


@settings(max_examples=120, deadline=None)
@given(
    hnp.arrays(
        st.sampled_from(FLOAT_DTYPES),
        hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=9),
        elements=st.floats(-1000, 1000, width=16) | st.sampled_from([np.nan, np.inf, -np.inf]),
    ),
    st.sampled_from(["max", "topk_mean"]),
    st.integers(1, 100),
)
def test_map_score_matches_reference(maps, mode, k):
    got = scoring.map_score(maps, mode, k=k)
    want = ref_map_score(maps, mode, k).astype(np.float32)
    assert got.shape == (maps.shape[0],)
    np.testing.assert_array_equal(np.isposinf(got), np.isposinf(want))
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want))
    fin = np.isfinite(want)
    np.testing.assert_allclose(got[fin], want[fin], rtol=1e-6, atol=1e-4)


def test_map_score_k_handling():
    maps = np.arange(2 * 4 * 5, dtype=np.float32).reshape(2, 4, 5)
    np.testing.assert_array_equal(scoring.map_score(maps, "topk_mean", k=1), scoring.map_score(maps, "max"))
    huge = scoring.map_score(maps, "topk_mean", k=10**30)
    np.testing.assert_allclose(huge, maps.reshape(2, -1).mean(axis=1))
    np.testing.assert_allclose(scoring.map_score(maps, "topk_mean", k=np.int64(3)), [18.0, 38.0])
    # default k: 1% of the pixels, at least one
    np.testing.assert_array_equal(scoring.map_score(maps, "topk_mean"), scoring.map_score(maps, "max"))
    for bad in (0, -1, -(10**30)):
        with pytest.raises(ValueError, match="k must be >= 1"):
            scoring.map_score(maps, "topk_mean", k=bad)
    with pytest.raises(TypeError, match="k must be an integer"):
        scoring.map_score(maps, "topk_mean", k=2.5)
    with pytest.raises(ValueError, match="unknown mode 'mean'"):
        scoring.map_score(maps, "mean")
    assert scoring.map_score(np.zeros((0, 3, 3), np.float32)).shape == (0,)
    np.testing.assert_array_equal(
        scoring.map_score(np.zeros((2, 0, 3), np.float32), "topk_mean", k=5), [0, 0]
    )


# --- validation -----------------------------------------------------------------------------------------


def test_map_validation_messages():
    x = np.zeros((2, 3, 4, 5), np.float32)
    with pytest.raises(ValueError, match=r"x must have shape \(N, C, H, W\), got shape \(3, 4, 5\)"):
        scoring.error_map(x[0], x[0])
    with pytest.raises(ValueError, match=r"x_hat shape \(2, 3, 4, 6\) does not match x shape \(2, 3, 4, 5\)"):
        scoring.error_map(x, np.zeros((2, 3, 4, 6), np.float32))
    with pytest.raises(TypeError, match="x has dtype float64, expected float32 or float16"):
        scoring.error_map(x.astype(np.float64), x)
    with pytest.raises(ValueError, match="blur_sigma must be a finite number"):
        scoring.error_map(x, x, blur_sigma=-1.0)
    with pytest.raises(ValueError, match="blur_sigma must be a finite number"):
        scoring.error_map(x, x, blur_sigma=float("nan"))
    with pytest.raises(
        ValueError, match=r"out shape \(2, 4, 4\) does not match the error map shape \(2, 4, 5\)"
    ):
        scoring.error_map(x, x, out=np.zeros((2, 4, 4), np.float32))
    with pytest.raises(
        ValueError, match=r"maps must have shape \(N, H, W\) or \(H, W\), got shape \(2, 3, 4, 5\)"
    ):
        scoring.blur_maps(x, 1.0)
    with pytest.raises(ValueError, match="sigma must be a finite number"):
        scoring.blur_maps(x[0], 1e9)
    with pytest.raises(TypeError, match="maps has dtype int64"):
        scoring.map_score(np.zeros((2, 3), np.int64))
    with pytest.raises(ValueError, match=r"got shape \(\)"):
        scoring.map_score(np.float32(1.0))
