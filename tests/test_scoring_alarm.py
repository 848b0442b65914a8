"""AlarmFilter: scripted sequences with exact expected events, and a pure-Python reference model."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeanom.scoring import AlarmFilter, AlarmUpdate


def ev(kind, index, peak, peak_index, start_index, stream=0):
    return {
        "type": kind,
        "stream": stream,
        "index": index,
        "peak": peak,
        "peak_index": peak_index,
        "start_index": start_index,
    }


def run(f, scores, ids=None):
    res = f.update(np.asarray(scores, dtype=np.float64), ids)
    assert isinstance(res, AlarmUpdate)
    return res.flags.tolist(), res.smoothed.tolist(), res.events


def test_plain_threshold():
    flags, smoothed, events = run(AlarmFilter(1.0), [0, 2, 3, 0.5, 1.0, 5, 0])
    assert flags == [False, True, True, False, False, True, False]
    assert smoothed == [0, 2, 3, 0.5, 1.0, 5, 0]  # raw scores; 1.0 is not > 1.0
    assert events == [
        ev("start", 1, 2.0, 1, 1),
        ev("end", 3, 3.0, 2, 1),
        ev("start", 5, 5.0, 5, 5),
        ev("end", 6, 5.0, 5, 5),
    ]


def test_ewma():
    flags, smoothed, events = run(AlarmFilter(1.0, ewma_alpha=0.5), [0, 4, 4, 0, 0, 0])
    assert smoothed == [0, 2, 3, 1.5, 0.75, 0.375]
    assert flags == [False, True, True, True, False, False]
    assert events == [ev("start", 1, 2.0, 1, 1), ev("end", 4, 3.0, 2, 1)]


def test_k_of_n():
    scores = [2, 0, 0, 2, 0, 2, 2, 0, 0, 0]
    flags, _, events = run(AlarmFilter(1.0, k=2, n=3), scores)
    assert flags == [False] * 5 + [True, True, True, False, False]
    assert events == [ev("start", 5, 2.0, 5, 5), ev("end", 8, 2.0, 5, 5)]


def test_hysteresis_and_flush():
    f = AlarmFilter(1.0, clear_threshold=0.5)
    flags, _, events = run(f, [2, 0.8, 0.6, 0.4, 0.8, 2])
    assert flags == [True, True, True, False, False, True]
    assert events == [ev("start", 0, 2.0, 0, 0), ev("end", 3, 2.0, 0, 0), ev("start", 5, 2.0, 5, 5)]
    assert f.active_streams() == [0]
    assert f.flush() == [ev("end", 6, 2.0, 5, 5)]
    assert f.active_streams() == [] and f.flush() == []
    # the stream continues after a flush: indices go on
    flags, _, events = run(f, [3.0])
    assert flags == [True] and events == [ev("start", 6, 3.0, 6, 6)]


def test_min_hold():
    flags, _, events = run(AlarmFilter(1.0, min_hold=3), [2, 0, 0, 0, 0])
    assert flags == [True, True, True, False, False]
    assert events == [ev("start", 0, 2.0, 0, 0), ev("end", 3, 2.0, 0, 0)]
    flags, _, events = run(AlarmFilter(1.0, min_hold=3), [2, 0, 2.5, 0, 0, 0])
    assert flags == [True, True, True, False, False, False]
    assert events == [ev("start", 0, 2.0, 0, 0), ev("end", 3, 2.5, 2, 0)]


def test_window_is_cleared_when_an_alarm_ends():
    # k=2 of n=5 with hysteresis: after the end at index 3, the old hot samples 0 and 1 do not count.
    flags, _, events = run(AlarmFilter(1.0, k=2, n=5, clear_threshold=0.5), [2, 2, 0.7, 0.1, 0.7, 2, 0.7, 2])
    assert flags == [False, True, True, False, False, False, False, True]
    assert events == [ev("start", 1, 2.0, 1, 1), ev("end", 3, 2.0, 1, 1), ev("start", 7, 2.0, 7, 7)]


def test_docs_worked_example():
    scores = [2.0, 0.2, 3.0, 0.8, 4.0, 0.4, 2.0]
    flags, _, events = run(AlarmFilter(1.0, k=2, n=3, clear_threshold=0.5), scores)
    assert flags == [False, False, True, True, True, False, False]
    assert events == [ev("start", 2, 3.0, 2, 2), ev("end", 5, 4.0, 4, 2)]
    flags, _, events = run(AlarmFilter(1.0, k=2, n=3), scores)
    assert events == [ev("start", 2, 3.0, 2, 2), ev("end", 3, 3.0, 2, 2), ev("start", 6, 2.0, 6, 6)]
    _, _, events = run(AlarmFilter(1.0, k=2, n=3, clear_threshold=0.5, min_hold=5), [*scores, 0.0, 0.0])
    assert events[-1] == ev("end", 7, 4.0, 4, 2)


def test_interleaved_streams_in_one_call_and_across_calls():
    f = AlarmFilter(1.0)
    flags, _, events = run(f, [2, 0, 2, 2, 0, 0], np.array([0, 1, 1, 0, 0, 1]))
    assert flags == [True, False, True, True, False, False]
    assert events == [
        ev("start", 0, 2.0, 0, 0, stream=0),
        ev("start", 1, 2.0, 1, 1, stream=1),
        ev("end", 2, 2.0, 0, 0, stream=0),
        ev("end", 2, 2.0, 1, 1, stream=1),
    ]
    flags, _, events = run(f, [5, 0.5], np.array([7, 1], dtype=np.uint8))
    assert flags == [True, False]
    assert events == [ev("start", 0, 5.0, 0, 0, stream=7)]
    assert f.streams() == [0, 1, 7] and f.active_streams() == [7]
    st7 = f.state(7)
    assert st7["count"] == 1 and st7["in_alarm"] and st7["peak"] == 5.0 and st7["start_index"] == 0
    assert f.state(1)["count"] == 4 and f.state(99) is None
    # a single int stream id applies to every sample
    flags, _, events = run(f, [0.0, 0.0], 7)
    assert events == [ev("end", 1, 5.0, 0, 0, stream=7)]


def test_close_and_reset():
    f = AlarmFilter(1.0)
    run(f, [2.0, 2.0], np.array([3, 4]))
    assert f.close(3) == [ev("end", 1, 2.0, 0, 0, stream=3)]
    assert f.streams() == [4]
    _, _, events = run(f, [2.0], 3)  # forgotten: starts again at index 0
    assert events == [ev("start", 0, 2.0, 0, 0, stream=3)]
    f.reset(3)
    assert f.streams() == [4] and f.flush(3) == []
    f.reset()
    assert f.streams() == [] and f.close() == []


def test_non_finite_scores_are_hot_and_do_not_poison_the_ewma():
    flags, smoothed, events = run(AlarmFilter(1.0), [0, np.nan, 0, -np.inf, 0])
    assert flags == [False, True, False, True, False]
    assert smoothed[1] == math.inf and smoothed[3] == math.inf
    assert events[0] == ev("start", 1, math.inf, 1, 1)
    flags, smoothed, _ = run(AlarmFilter(5.0, ewma_alpha=0.5), [1, np.inf, 1, 3])
    assert smoothed == [1, math.inf, 1, 2]
    assert flags == [False, True, False, False]


def test_scalar_and_float32_scores():
    f = AlarmFilter(0.5, ewma_alpha=0.25)
    res = f.update(2.0)
    assert res.flags.tolist() == [True] and res.smoothed.dtype == np.float32
    res = f.update(np.array([0.0, 0.0], np.float32))
    assert res.smoothed.tolist() == [1.5, 1.125]
    assert f.update(np.array([], np.float32)).flags.shape == (0,)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"threshold": math.nan}, ValueError, "threshold must be finite"),
        ({"threshold": math.inf}, ValueError, "threshold must be finite"),
        ({"threshold": 1.0, "ewma_alpha": 0.0}, ValueError, "0 < ewma_alpha <= 1"),
        ({"threshold": 1.0, "ewma_alpha": 1.5}, ValueError, "0 < ewma_alpha <= 1"),
        ({"threshold": 1.0, "ewma_alpha": math.nan}, ValueError, "0 < ewma_alpha <= 1"),
        ({"threshold": 1.0, "k": 3, "n": 2}, ValueError, "1 <= k <= n"),
        ({"threshold": 1.0, "k": 0}, ValueError, r"k must be in \[1,"),
        ({"threshold": 1.0, "n": 10**12}, ValueError, r"n must be in \[1,"),
        ({"threshold": 1.0, "min_hold": -1}, ValueError, "min_hold must be >= 0"),
        ({"threshold": 1.0, "clear_threshold": 2.0}, ValueError, "must be <= threshold"),
        ({"threshold": 1.0, "clear_threshold": math.nan}, ValueError, "clear_threshold must be finite"),
        ({"threshold": 1.0, "k": 1.5}, TypeError, "k must be an integer"),
        ({"threshold": 1.0, "k": True}, TypeError, "k must be an integer, got bool"),
        (
            {"threshold": 1.0, "k": 2**70},
            ValueError,
            "k must be a 64-bit integer, got 1180591620717411303424",
        ),
        ({"threshold": 1.0, "k": 2, "n": 2**21}, ValueError, r"n must be in \[1, 1048576\], got 2097152"),
        ({"threshold": 1.0, "ewma_alpha": "x"}, TypeError, "ewma_alpha must be a real number"),
    ],
)
def test_parameter_validation(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        AlarmFilter(**kwargs)


def test_update_validation():
    f = AlarmFilter(1.0)
    with pytest.raises(ValueError, match=r"stream_ids shape \(2,\) does not match scores shape \(3,\)"):
        f.update(np.zeros(3), np.zeros(2, np.int64))
    with pytest.raises(TypeError, match="stream_ids has dtype float64, expected an integer dtype"):
        f.update(np.zeros(3), np.zeros(3))
    with pytest.raises(TypeError, match="scores has dtype complex128"):
        f.update(np.zeros(3, complex))
    with pytest.raises(ValueError, match=r"scores must be 1-D, got shape \(2, 2\)"):
        f.update(np.zeros((2, 2)))
    with pytest.raises(TypeError, match="stream_id must be an integer, got str"):
        f.flush("cam0")
    with pytest.raises(ValueError, match="stream_ids must be a 64-bit integer"):
        f.update(np.zeros(1), 2**64)
    assert repr(f).startswith("AlarmFilter(threshold=1.0")


# --- property test against a straightforward Python model ------------------------------------------


class RefAlarm:
    def __init__(self, threshold, ewma_alpha=None, k=1, n=1, clear_threshold=None, min_hold=0):
        self.p = (threshold, ewma_alpha, k, n, clear_threshold, min_hold)
        self.s = {}

    def step(self, sid, x, events):
        thr, a, k, n, clear, hold = self.p
        st = self.s.setdefault(sid, {"count": 0, "ewma": None, "hot": [], "on": False})
        idx = st["count"]
        st["count"] += 1
        if not math.isfinite(x):
            s = math.inf
        elif a is not None:
            st["ewma"] = x if st["ewma"] is None else a * x + (1 - a) * st["ewma"]
            s = st["ewma"]
        else:
            s = x
        if s > thr:
            st["hot"].append(idx)
        vote = sum(1 for h in st["hot"] if h > idx - n) >= k
        if not st["on"]:
            if vote:
                st.update(on=True, start=idx, peak=s, peak_index=idx)
                events.append(ev("start", idx, s, idx, idx, stream=sid))
            return st["on"], s
        clear_now = (s < clear) if clear is not None else not vote
        if clear_now and idx - st["start"] >= hold:
            events.append(ev("end", idx, st["peak"], st["peak_index"], st["start"], stream=sid))
            st.update(on=False, hot=[])
            return False, s
        if s > st["peak"]:
            st.update(peak=s, peak_index=idx)
        return True, s


params = st.fixed_dictionaries(
    {
        "threshold": st.sampled_from([0.5, 1.0, 2.0]),
        "ewma_alpha": st.none() | st.sampled_from([0.25, 0.5, 1.0]),
        "kn": st.sampled_from([(1, 1), (1, 3), (2, 3), (3, 3), (2, 5)]),
        "clear_threshold": st.none() | st.sampled_from([0.0, 0.25, 0.5]),
        "min_hold": st.integers(0, 4),
    }
)
score_values = st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, math.nan])


@settings(max_examples=200, deadline=None)
@given(
    params,
    st.lists(st.tuples(score_values, st.integers(0, 2)), max_size=60),
    st.lists(st.integers(0, 60), max_size=4),
)
def test_matches_python_model_across_chunked_calls(p, samples, cuts):
    kw = dict(p)
    k, n = kw.pop("kn")
    if kw["clear_threshold"] is not None:
        kw["clear_threshold"] = min(kw["clear_threshold"], kw["threshold"])
    f = AlarmFilter(k=k, n=n, **kw)
    ref = RefAlarm(k=k, n=n, **kw)
    want_events, want_flags, want_s = [], [], []
    for x, sid in samples:
        flag, s = ref.step(sid, x, want_events)
        want_flags.append(flag)
        want_s.append(s)
    got_events, got_flags, got_s = [], [], []
    bounds = [0, *sorted(c for c in cuts if c <= len(samples)), len(samples)]
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        chunk = samples[lo:hi]
        res = f.update(np.array([c[0] for c in chunk], np.float64), np.array([c[1] for c in chunk], np.int64))
        got_events += res.events
        got_flags += res.flags.tolist()
        got_s += res.smoothed.tolist()
    assert got_flags == want_flags
    np.testing.assert_array_equal(np.array(got_s, np.float32), np.array(want_s, np.float32))
    for e in want_events:
        e["peak"] = float(np.float32(e["peak"]))
    assert got_events == want_events
