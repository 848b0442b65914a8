"""Statistics of latency series: percentiles match NumPy, ordering holds, per-frame and stability figures."""

from __future__ import annotations

import numpy as np
import pytest

from edgeanom.benchmarking import stats


def test_summary_matches_numpy_on_a_skewed_series() -> None:
    rng = np.random.default_rng(1)
    series = rng.lognormal(mean=1.0, sigma=0.4, size=2001)
    s = stats.summarize(series)
    assert s is not None
    assert s["count"] == 2001
    assert s["mean"] == pytest.approx(series.mean(), rel=1e-12)
    assert s["std"] == pytest.approx(series.std(ddof=1), rel=1e-12)
    assert s["min"] == series.min() and s["max"] == series.max()
    for q in (50, 90, 95, 99):
        assert s[f"p{q}"] == pytest.approx(np.percentile(series, q), rel=1e-12), q
    assert s["p50"] == pytest.approx(np.median(series), rel=1e-12)


def test_percentiles_are_monotonic_and_bounded() -> None:
    rng = np.random.default_rng(2)
    for n in (1, 2, 7, 100):
        s = stats.summarize(rng.exponential(size=n))
        assert s is not None
        order = [s["min"], s["p50"], s["p90"], s["p95"], s["p99"], s["max"]]
        assert order == sorted(order), order


def test_known_small_series() -> None:
    s = stats.summarize([1.0, 2.0, 3.0, 4.0])
    assert s == {
        "count": 4,
        "mean": 2.5,
        "std": pytest.approx(np.std([1, 2, 3, 4], ddof=1)),
        "min": 1.0,
        "p50": 2.5,
        "p90": pytest.approx(3.7),
        "p95": pytest.approx(3.85),
        "p99": pytest.approx(3.97),
        "max": 4.0,
    }


def test_empty_and_non_finite_values() -> None:
    assert stats.summarize([]) is None
    assert stats.summarize([float("nan")]) is None
    s = stats.summarize([1.0, float("inf"), 3.0])
    assert s is not None and s["count"] == 2 and s["max"] == 3.0


def test_per_frame_divides_times_not_counts() -> None:
    s = stats.summarize([8.0, 16.0])
    pf = stats.per_frame(s, 8)
    assert pf is not None and s is not None
    assert pf["count"] == 2
    assert pf["mean"] == pytest.approx(1.5)
    assert pf["max"] == pytest.approx(2.0)
    assert stats.per_frame(None, 4) is None


def test_throughput_is_frames_over_wall_time() -> None:
    assert stats.throughput(480, 2.0) == 240.0
    assert np.isnan(stats.throughput(10, 0.0))


def test_stability_flags_a_run_that_changed_speed() -> None:
    rng = np.random.default_rng(3)
    steady = 10.0 + rng.normal(0, 0.05, size=500)
    good = stats.stability(steady)
    assert good["warning"] is None
    assert len(good["segment_medians"]) == stats.STABILITY_SEGMENTS
    assert good["spread"] < 0.05
    assert good["cov"] == pytest.approx(steady.std() / steady.mean())
    throttled = np.concatenate([steady[:250], steady[250:] * 1.5])  # clocks dropped half way
    bad = stats.stability(throttled)
    assert bad["warning"] is not None and "unstable" in bad["warning"]
    assert bad["spread"] == pytest.approx(
        (max(bad["segment_medians"]) - min(bad["segment_medians"])) / np.median(throttled)
    )


def test_stability_of_tiny_series() -> None:
    assert stats.stability([])["spread"] is None
    one = stats.stability([5.0])
    assert one["spread"] is None and one["warning"] is None
