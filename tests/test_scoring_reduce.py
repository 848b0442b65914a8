"""edgeanom.scoring.reconstruction_error against a float64 NumPy reference, plus its edge cases."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from edgeanom import _scoring, scoring

METRICS = ("mse", "mae", "sse", "rmse", "max")
FLOAT_DTYPES = (np.float32, np.float16)
HAS_AVX2 = _scoring._set_simd("avx2")
_scoring._set_simd("auto")


def ref_error(x, x_hat, metric, weights=None):
    """float64 reference, with the documented non-finite and empty-sample policies."""
    n = x.shape[0]
    d_elems = int(np.prod(x.shape[1:]))
    x64 = x.astype(np.float64).reshape(n, d_elems)
    if x_hat.shape == x.shape:
        y64 = x_hat.astype(np.float64).reshape(n, d_elems)
    else:
        y64 = np.broadcast_to(x_hat.astype(np.float64).reshape(1, d_elems), (n, d_elems))
    bad = ~(np.isfinite(x64).all(axis=1) & np.isfinite(y64).all(axis=1))
    with np.errstate(all="ignore"):
        d = x64 - y64
        v = d * d if metric in ("mse", "sse", "rmse") else np.abs(d)
        if weights is not None:
            v = v * weights.astype(np.float64).reshape(1, -1)
        if d_elems == 0:
            r = np.zeros(n)
        elif metric == "max":
            r = v.max(axis=1)
        elif metric == "sse":
            r = v.sum(axis=1)
        else:
            r = v.mean(axis=1)
            if metric == "rmse":
                r = np.sqrt(r)
    r = np.where(bad, np.inf, r)
    return r.astype(np.float32)


# The core squares float32 differences in float32 lanes (then sums blocks in float64): a square below float32's
# smallest normal underflows, so a sample's mean square can be short by at most that (~1.2e-38). For rmse the
# square root lifts this floor to ~1.1e-19 (e.g. x = 0, x_hat = 1.25e-29 scores 0, the reference 1.25e-29).
UNDERFLOW_ATOL = {"rmse": 2.0 * float(np.sqrt(np.finfo(np.float32).tiny))}


def assert_close(got, want, rtol=2e-5, atol=1e-30):
    assert got.dtype == np.float32
    assert got.shape == want.shape
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    fin = np.isfinite(want)
    np.testing.assert_allclose(got[fin], want[fin], rtol=rtol, atol=atol)


def finite_arrays(dtype, shape):
    return hnp.arrays(
        dtype,
        shape,
        elements=st.floats(-300, 300, width=16 if dtype == np.float16 else 32, allow_subnormal=True),
    )


@st.composite
def cases(draw):
    n = draw(st.integers(0, 5))
    tail = tuple(draw(st.lists(st.integers(0, 7), min_size=0, max_size=3)))
    dx = draw(st.sampled_from(FLOAT_DTYPES))
    dy = draw(st.sampled_from(FLOAT_DTYPES))
    layout = draw(st.sampled_from(["full", "row", "tail"]))
    y_shape = {"full": (n, *tail), "row": (1, *tail), "tail": tail}[layout]
    x = draw(finite_arrays(dx, (n, *tail)))
    y = draw(finite_arrays(dy, y_shape))
    weights = None
    if draw(st.booleans()):
        weights = draw(hnp.arrays(np.float32, tail, elements=st.floats(0, 10, width=32)))
    return x, y, weights


@settings(max_examples=150, deadline=None)
@given(cases(), st.sampled_from(METRICS))
@example((np.zeros(1, np.float32), np.array([1.2523547e-29], np.float32), None), "rmse")
def test_matches_float64_reference(case, metric):
    x, y, w = case
    got = scoring.reconstruction_error(x, y, metric, weights=w)
    assert_close(got, ref_error(x, y, metric, w), atol=UNDERFLOW_ATOL.get(metric, 1e-30))


@settings(max_examples=60, deadline=None)
@given(cases(), st.sampled_from(METRICS), st.data())
def test_non_finite_samples_score_inf(case, metric, data):
    x, y, w = case
    if x.size == 0:
        return
    x = x.copy()
    flat = x.reshape(x.shape[0], -1)
    row = data.draw(st.integers(0, flat.shape[0] - 1))
    col = data.draw(st.integers(0, flat.shape[1] - 1))
    flat[row, col] = data.draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    got = scoring.reconstruction_error(x, y, metric, weights=w)
    assert got[row] == np.inf
    assert_close(got, ref_error(x, y, metric, w), atol=UNDERFLOW_ATOL.get(metric, 1e-30))


@pytest.mark.parametrize("d", [4095, 4096, 4097, 3 * 4096 + 31])
@pytest.mark.parametrize(
    "dx,dy", [(np.float32, np.float32), (np.float16, np.float32), (np.float16, np.float16)]
)
def test_multi_block_samples(d, dx, dy):
    rng = np.random.default_rng(d)
    x = rng.standard_normal((3, d)).astype(dx)
    y = rng.standard_normal((3, d)).astype(dy)
    w = rng.random(d).astype(np.float32)
    for metric in METRICS:
        assert_close(scoring.reconstruction_error(x, y, metric), ref_error(x, y, metric))
        assert_close(scoring.reconstruction_error(x, y, metric, weights=w), ref_error(x, y, metric, w))


def test_nan_in_x_hat_and_inf_minus_inf():
    x = np.zeros((4, 10), np.float32)
    y = np.zeros((4, 10), np.float32)
    y[0, 3] = np.nan
    x[1, 2] = np.inf
    y[1, 2] = np.inf  # inf - inf = NaN: still +inf
    x[2, 0] = -np.inf
    for metric in METRICS:
        np.testing.assert_array_equal(
            scoring.reconstruction_error(x, y, metric), [np.inf, np.inf, np.inf, 0.0]
        )


def test_nan_with_zero_weight_is_still_inf():
    x = np.zeros((2, 3), np.float32)
    x[0, 1] = np.nan
    w = np.array([1.0, 0.0, 1.0], np.float32)
    for metric in METRICS:
        assert scoring.reconstruction_error(x, np.zeros_like(x), metric, weights=w)[0] == np.inf


def test_float32_overflow_falls_back_to_float64():
    # d^2 = 1e38 per element overflows a float32 lane sum but the mean is representable.
    x = np.full((2, 200), 1e19, np.float32)
    y = np.zeros((2, 200), np.float32)
    got = scoring.reconstruction_error(x, y, "mse")
    np.testing.assert_allclose(got, [1e38, 1e38], rtol=1e-6)
    assert scoring.reconstruction_error(x, y, "sse")[0] == np.inf  # 2e40 > float32 max


def test_size_zero_and_size_one_edges():
    for metric in METRICS:
        assert scoring.reconstruction_error(
            np.zeros((0, 5), np.float32), np.zeros((0, 5)).astype(np.float32), metric
        ).shape == (0,)
        z = scoring.reconstruction_error(np.zeros((3, 0), np.float32), np.zeros((3, 0), np.float16), metric)
        np.testing.assert_array_equal(z, np.zeros(3, np.float32))
        one = scoring.reconstruction_error(np.array([2.0], np.float32), np.array([0.5], np.float32), metric)
        assert one.shape == (1,)
    # 1-D x: every sample is a scalar
    got = scoring.reconstruction_error(np.array([1, 2, 3], np.float32), np.array(0.0, np.float32), "sse")
    np.testing.assert_array_equal(got, [1, 4, 9])


def test_broadcast_centre_like_deep_svdd():
    rng = np.random.default_rng(1)
    emb = rng.standard_normal((50, 32)).astype(np.float32)
    centre = rng.standard_normal(32).astype(np.float32)
    want = ((emb.astype(np.float64) - centre) ** 2).sum(axis=1)
    np.testing.assert_allclose(scoring.reconstruction_error(emb, centre, "sse"), want, rtol=1e-5)
    np.testing.assert_array_equal(
        scoring.reconstruction_error(emb, centre[None], "sse"),
        scoring.reconstruction_error(emb, centre, "sse"),
    )


def test_out_is_written_in_place():
    x = np.ones((4, 6), np.float32)
    out = np.full(4, -1.0, np.float32)
    res = scoring.reconstruction_error(x, np.zeros_like(x), "mse", out=out)
    assert res is out
    np.testing.assert_array_equal(out, np.ones(4))


@pytest.mark.parametrize("metric", METRICS)
def test_non_contiguous_input_is_copied(metric):
    rng = np.random.default_rng(2)
    big = rng.standard_normal((6, 20, 9)).astype(np.float32)
    x = big[:, ::2, 1:]  # strided view
    y = np.asfortranarray(rng.standard_normal((6, 10, 8)).astype(np.float16))
    assert not x.flags.c_contiguous and not y.flags.c_contiguous
    got = scoring.reconstruction_error(x, y, metric)
    np.testing.assert_array_equal(
        got, scoring.reconstruction_error(np.ascontiguousarray(x), np.ascontiguousarray(y), metric)
    )
    assert_close(got, ref_error(x, y, metric), atol=UNDERFLOW_ATOL.get(metric, 1e-30))


def _big_inputs():
    rng = np.random.default_rng(3)
    return [
        (
            rng.standard_normal((37, 20011)).astype(np.float32),
            rng.standard_normal((37, 20011)).astype(np.float32),
        ),
        (
            rng.standard_normal((5, 70001)).astype(np.float16),
            rng.standard_normal((1, 70001)).astype(np.float32),
        ),
        (
            rng.standard_normal((3000, 87)).astype(np.float32),
            rng.standard_normal((3000, 87)).astype(np.float16),
        ),
        (
            rng.standard_normal((1, 300001)).astype(np.float32),
            rng.standard_normal((1, 300001)).astype(np.float32),
        ),
    ]


@pytest.fixture
def restore_threads():
    n = scoring.get_num_threads()
    yield
    scoring.set_num_threads(n)
    _scoring._set_grain(0)
    _scoring._set_simd("auto")


@pytest.mark.parametrize("grain", [0, 1000])
def test_bitwise_identical_across_thread_counts(restore_threads, grain):
    _scoring._set_grain(grain)
    inputs = _big_inputs()
    w = np.random.default_rng(4).random(20011).astype(np.float32)
    results = {}
    for nt in (1, 2, 3, 7):
        scoring.set_num_threads(nt)
        res = []
        for x, y in inputs:
            for metric in METRICS:
                res.append(scoring.reconstruction_error(x, y, metric).tobytes())
        res.append(scoring.reconstruction_error(inputs[0][0], inputs[0][1], "mse", weights=w).tobytes())
        results[nt] = res
    assert results[1] == results[2] == results[3] == results[7]


@pytest.mark.skipif(not HAS_AVX2, reason="CPU has no AVX2/F16C")
def test_generic_and_avx2_kernels_are_bitwise_identical(restore_threads):
    inputs = _big_inputs()[1:3]
    rng = np.random.default_rng(5)
    x = rng.standard_normal((7, 129)).astype(np.float16)
    inputs.append((x, x + np.float16(0.5)))
    w = rng.random(129).astype(np.float32)
    for simd_a, simd_b in [("generic", "avx2")]:
        for xx, yy in inputs:
            for metric in METRICS:
                _scoring._set_simd(simd_a)
                a = scoring.reconstruction_error(xx, yy, metric)
                _scoring._set_simd(simd_b)
                b = scoring.reconstruction_error(xx, yy, metric)
                assert a.tobytes() == b.tobytes(), metric
        _scoring._set_simd(simd_a)
        a = scoring.reconstruction_error(x, inputs[-1][1], "max", weights=w)
        _scoring._set_simd(simd_b)
        assert a.tobytes() == scoring.reconstruction_error(x, inputs[-1][1], "max", weights=w).tobytes()


def test_all_float16_values_convert_exactly(restore_threads):
    h = np.arange(65536, dtype=np.uint16).view(np.float16).reshape(-1, 1)
    want = np.abs(h.astype(np.float32))[:, 0]
    want[np.isnan(want)] = np.inf
    for simd in ("generic", "avx2") if HAS_AVX2 else ("generic",):
        _scoring._set_simd(simd)
        got = scoring.reconstruction_error(h, np.zeros((1, 1), np.float32), "max")
        np.testing.assert_array_equal(got, want)


def test_concurrent_python_threads_get_correct_results():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((16, 70000)).astype(np.float32)
    y = rng.standard_normal((16, 70000)).astype(np.float32)
    want = scoring.reconstruction_error(x, y, "mse").tobytes()
    got = []

    def work():
        for _ in range(5):
            got.append(scoring.reconstruction_error(x, y, "mse").tobytes())

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == [want] * 15


# --- validation ------------------------------------------------------------------------------------


def test_dtype_errors_name_the_dtype():
    x = np.zeros((4, 87))
    with pytest.raises(TypeError, match=r"x has dtype float64, expected float32 or float16"):
        scoring.reconstruction_error(x, x.astype(np.float32))
    with pytest.raises(TypeError, match=r"x_hat has dtype int32, expected float32 or float16"):
        scoring.reconstruction_error(x.astype(np.float32), x.astype(np.int32))
    with pytest.raises(TypeError, match=r"x has dtype >f4"):
        scoring.reconstruction_error(x.astype(">f4"), x.astype(np.float32))
    with pytest.raises(TypeError, match=r"float64"):
        scoring.reconstruction_error([[1.0, 2.0]], np.zeros((1, 2), np.float32))


def test_shape_errors_name_both_shapes():
    x = np.zeros((4, 87), np.float32)
    with pytest.raises(ValueError, match=r"x_hat shape \(4, 86\) does not match x shape \(4, 87\)"):
        scoring.reconstruction_error(x, np.zeros((4, 86), np.float32))
    with pytest.raises(ValueError, match=r"x_hat shape \(2, 87\) does not match x shape \(4, 87\)"):
        scoring.reconstruction_error(x, np.zeros((2, 87), np.float32))
    with pytest.raises(
        ValueError, match=r"weights shape \(86,\) does not match the per-sample shape \(87,\)"
    ):
        scoring.reconstruction_error(x, x, weights=np.ones(86, np.float32))
    with pytest.raises(ValueError, match=r"shape \(\)"):
        scoring.reconstruction_error(np.float32(1.0), np.float32(1.0))


def test_argument_errors():
    x = np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError, match="unknown metric 'l2'"):
        scoring.reconstruction_error(x, x, "l2")
    with pytest.raises(TypeError, match="metric must be a string"):
        scoring.reconstruction_error(x, x, 2)
    with pytest.raises(ValueError, match="finite and >= 0"):
        scoring.reconstruction_error(x, x, weights=np.array([1, -1, 1], np.float32))
    with pytest.raises(ValueError, match="finite and >= 0"):
        scoring.reconstruction_error(x, x, weights=np.array([1, np.nan, 1], np.float32))
    with pytest.raises(TypeError, match="out has dtype float64"):
        scoring.reconstruction_error(x, x, out=np.zeros(4))
    with pytest.raises(ValueError, match=r"out shape \(5,\) does not match the result shape \(4,\)"):
        scoring.reconstruction_error(x, x, out=np.zeros(5, np.float32))
    with pytest.raises(ValueError, match="C-contiguous"):
        scoring.reconstruction_error(x, x, out=np.zeros(8, np.float32)[::2])
    ro = np.zeros(4, np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        scoring.reconstruction_error(x, x, out=ro)
    with pytest.raises(TypeError, match="out must be a numpy float32 array"):
        scoring.reconstruction_error(x, x, out=[0.0] * 4)


def test_float64_weights_are_accepted():
    x = np.ones((2, 3), np.float32)
    got = scoring.reconstruction_error(x, np.zeros_like(x), "sse", weights=np.array([1.0, 2.0, 3.0]))
    np.testing.assert_array_equal(got, [6.0, 6.0])


def test_misaligned_weights_are_copied_and_a_copy_too_big_is_a_memory_error():
    buf = np.zeros(4 * 64 + 1, np.uint8)
    w = np.frombuffer(buf[1:257].data, dtype=np.float32)  # a misaligned float32 view
    assert not w.flags["ALIGNED"]
    w_aligned = np.arange(64, dtype=np.float32) / 64
    buf[1:257] = np.frombuffer(w_aligned.tobytes(), np.uint8)
    x = np.random.default_rng(0).random((3, 64), dtype=np.float32)
    y = np.zeros_like(x)
    np.testing.assert_array_equal(
        scoring.reconstruction_error(x, y, weights=w), scoring.reconstruction_error(x, y, weights=w_aligned)
    )
    huge = np.broadcast_to(np.float32(1), (1 << 22, 1 << 16))  # a view of 1.1 TB once made contiguous
    with pytest.raises(MemoryError, match=r"x with shape \(4194304, 65536\) could not be copied"):
        scoring.reconstruction_error(huge, huge)
