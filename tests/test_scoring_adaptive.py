"""The C++ adaptive scoring stage against a float64 Python reference (hypothesis), and its behaviour on
the streams it exists for: drift, spikes, level shifts."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import log_ndtr

from edgeanom.scoring import AdaptiveScorer, normal_surprise


class Reference:
    """The algorithm of csrc/adaptive.hpp written plainly in float64 numpy, one dict per stream."""

    def __init__(self, **p: Any) -> None:
        self.p = {**AdaptiveScorer().params, **p}
        self.streams: dict[int, dict[str, Any]] = {}

    def _t(self, x: float) -> float:
        if not self.p["log_scores"] or math.isinf(x):
            return x
        return math.log(max(x, 0.0) + self.p["offset"])

    def prime(self, sid: int, values: np.ndarray) -> None:
        s = self.streams.setdefault(sid, {"seen": 0, "hist": [], "recent": [], "run": 0, "since": 1 << 60})
        for v in values:
            if math.isfinite(v):
                s["hist"] = (s["hist"] + [self._t(float(v))])[-self.p["window"] :]

    def step(self, sid: int, x: float) -> tuple[float, bool]:
        p = self.p
        s = self.streams.setdefault(sid, {"seen": 0, "hist": [], "recent": [], "run": 0, "since": 1 << 60})
        s["seen"] += 1
        if not math.isfinite(x):
            return math.inf, False
        t = self._t(x)
        s["recent"] = (s["recent"] + [t])[-p["short_window"] :]
        m = sum(s["recent"]) / len(s["recent"])
        surprise = 0.0
        if len(s["hist"]) >= p["min_history"]:
            q25, q50, q75 = np.quantile(np.array(s["hist"]), [0.25, 0.5, 0.75])
            scale = max((q75 - q25) / 1.3489795003921634, p["min_scale"])
            surprise = -float(log_ndtr(-(m - q50) / scale)) / math.log(10.0)
        if s["seen"] <= p["warmup"]:
            learned = True
        elif surprise >= p["gate"]:
            s["run"] += 1
            s["since"] = 0
            after = p["relearn_after"]
            learned = after > 0 and s["run"] > after and (s["run"] - after) % p["relearn_every"] == 0
        else:
            s["run"] = 0
            learned = s["since"] >= p["holdoff"]
            s["since"] += 1
        if learned:
            s["hist"] = (s["hist"] + [t])[-p["window"] :]
        return surprise, learned


@st.composite
def streams(draw: Any) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    window = draw(st.integers(4, 40))
    params = {
        "window": window,
        "short_window": draw(st.integers(1, min(5, window))),
        "warmup": draw(st.integers(0, 30)),
        "min_history": draw(st.integers(2, window)),
        "gate": draw(st.sampled_from([0.5, 2.0, 4.0])),
        "holdoff": draw(st.integers(0, 4)),
        "relearn_after": draw(st.integers(0, 6)),
        "relearn_every": draw(st.integers(1, 4)),
        "log_scores": draw(st.booleans()),
        "offset": draw(st.sampled_from([1e-6, 0.01, 1.0])),
        "min_scale": draw(st.sampled_from([1e-3, 0.1])),
    }
    n = draw(st.integers(1, 160))
    value = st.one_of(
        st.floats(0.0, 50.0, allow_nan=False),
        st.sampled_from([0.0, 1.0, 1.0, 1e6, math.nan, math.inf, -1.0]),
    )
    scores = np.array(draw(st.lists(value, min_size=n, max_size=n)), dtype=np.float64)
    ids = np.array(draw(st.lists(st.integers(0, 2), min_size=n, max_size=n)), dtype=np.int64)
    return params, scores, ids


@settings(max_examples=150, deadline=None)
@given(streams(), st.integers(1, 7))
def test_matches_the_float64_reference(
    case: tuple[dict[str, Any], np.ndarray, np.ndarray], chunk: int
) -> None:
    params, scores, ids = case
    core, ref = AdaptiveScorer(**params), Reference(**params)
    got_s, got_l = [], []
    for i in range(0, len(scores), chunk):  # batches of any size give the same result
        out = core.update(scores[i : i + chunk], ids[i : i + chunk])
        got_s.append(out.surprise)
        got_l.append(out.learned)
    want = [ref.step(int(sid), float(x)) for sid, x in zip(ids, scores)]
    np.testing.assert_array_equal(np.concatenate(got_l), [w[1] for w in want])
    np.testing.assert_allclose(np.concatenate(got_s), [w[0] for w in want], rtol=1e-9, atol=1e-12)


def test_normal_surprise_is_accurate_in_the_far_tail() -> None:
    z = np.array([-40.0, -3.0, 0.0, 1.0, 3.0, 8.0, 20.0, 37.0, 38.0, 60.0, 1e3])
    want = -log_ndtr(-z) / math.log(10.0)
    np.testing.assert_allclose(normal_surprise(z), want, rtol=1e-7)
    assert np.all(np.diff(normal_surprise(np.linspace(0, 100, 1001))) > 0)  # graded, never saturating
    assert normal_surprise([math.nan])[0] == math.inf


def _noise(n: int, seed: int = 0) -> np.ndarray:
    return np.exp(np.random.default_rng(seed).normal(0.0, 0.1, n))


def test_slow_drift_is_followed_and_a_spike_on_it_stands_out() -> None:
    n = 3000
    drift = np.linspace(1.0, 8.0, n)  # the raw score grows 8x: a fixed threshold would alarm on most of it
    x = drift * _noise(n)
    x[2500] *= 6.0
    out = AdaptiveScorer(window=300, warmup=100, gate=4.0).update(x)
    assert out.surprise[2500] > 8.0 and not out.learned[2500]
    rest = np.delete(out.surprise[200:], 2300)
    assert (rest >= 4.0).mean() < 0.002


def test_a_level_shift_alarms_then_is_relearned_only_when_allowed() -> None:
    x = np.concatenate([_noise(1000), 3.0 * _noise(1500, seed=1)])
    fixed = AdaptiveScorer(window=400, warmup=100, gate=4.0).update(x).surprise
    assert (fixed[1000:1020] > 4.0).all()
    assert (fixed[-100:] > 4.0).all()  # without relearning the shift alarms for as long as it lasts
    relearn = AdaptiveScorer(window=400, warmup=100, gate=4.0, relearn_after=200, relearn_every=2)
    s = relearn.update(x).surprise
    assert (s[1000:1020] > 4.0).all()
    assert (s[-300:] < 4.0).mean() > 0.99  # learned at a bounded rate: the new level became normal
    first_quiet = 1000 + int(np.argmax(s[1000:] < 4.0))
    assert first_quiet > 1000 + 200  # never before relearn_after gated samples


def test_drift_fraction_counts_history_above_the_reference() -> None:
    core = AdaptiveScorer(window=100, warmup=100, reference=2.0)
    core.update(np.r_[np.full(60, 1.0), np.full(40, 3.0)])
    state = core.state(0)
    assert state["history"] == 100 and state["drift_count"] == 40 and state["drift_fraction"] == 0.4
    assert core.state(5) is None


def test_non_finite_scores_are_infinitely_surprising_and_never_learned() -> None:
    core = AdaptiveScorer(window=10, min_history=2, warmup=0)
    out = core.update([1.0, 1.1, math.nan, math.inf, 1.0])
    assert out.surprise[2] == math.inf and out.surprise[3] == math.inf
    assert out.learned.tolist() == [True, True, False, False, True]
    assert core.state(0)["seen"] == 5 and core.state(0)["history"] == 3


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"window": 1}, r"window must be in \[2, 1048576\], got 1"),
        ({"window": 10, "short_window": 11}, r"short_window must be in \[1, window=10\], got 11"),
        ({"window": 10, "min_history": 20}, r"min_history must be in \[2, window=10\], got 20"),
        ({"gate": 0.0}, "gate must be > 0"),
        ({"offset": 0.0}, "offset must be a finite number > 0"),
        ({"relearn_every": 0}, "relearn_every must be >= 1"),
        ({"reference": math.nan}, "reference must not be NaN"),
    ],
)
def test_parameters_are_checked_with_one_line(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        AdaptiveScorer(**kwargs)


def test_streams_are_independent_and_reset() -> None:
    core = AdaptiveScorer(window=20, min_history=5, warmup=5)
    x = _noise(40)
    alone = AdaptiveScorer(window=20, min_history=5, warmup=5).update(x).surprise
    mixed = core.update(np.repeat(x, 2), np.tile([3, 9], 40)).surprise
    np.testing.assert_array_equal(mixed[::2], alone)
    np.testing.assert_array_equal(mixed[1::2], alone)
    core.reset(3)
    assert core.streams() == [9]
    with pytest.raises(TypeError, match="stream_id must be an integer"):
        core.state("a")
