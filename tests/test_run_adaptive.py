"""The adaptive stage through `edgeanom run` on generated streams, each with the exact alarms expected: slow
drift with spikes, a level shift (kept alarming, or relearned with --recalibrate), a daily cycle with an
off-season value, a stuck sensor, NaN gaps; plus the bundle section, flags and drift events."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeanom.adaptive import section
from edgeanom.bundle import load_bundle
from edgeanom.demo import write_sensor_csv
from edgeanom.errors import EdgeanomError
from edgeanom.runtime.alarms import AlarmSettings
from edgeanom.runtime.launch import RunOptions, run_stream
from edgeanom.runtime.testing import window_bundle

L = 8  # window rows
NOISE = 0.05


def _bundle(path: Path, columns: int = 1, **overrides: Any) -> Path:
    """A zero-reconstructing window bundle (score = mean of the squared scaled window) whose scaler makes
    the noise unit-variance, with the adaptive section `train` writes (history shortened for the test)."""
    bundle = window_bundle(path, [f"c{i}" for i in range(columns)], L, 3.0, scale=[1.0 / NOISE] * columns)
    # the held-out normal scores of this model: the mean of L squared unit normals
    held_out = np.random.default_rng(99).chisquare(L, 400) / L
    spec = section("window", L, held_out)
    spec.update({"window": 200, "warmup": 100, "min_history": 50, **overrides})
    bundle.meta["score"]["adaptive"] = spec
    bundle.save()
    return bundle.path


def _run(bundle: Path, series: np.ndarray, tmp: Path, **alarm: Any) -> tuple[list[dict], list[dict]]:
    csv = write_sensor_csv(tmp / "s.csv", series, [f"c{i}" for i in range(series.shape[1])])
    events = tmp / "e.jsonl"
    opts = RunOptions(
        model=bundle,
        sensors=[str(csv)],
        alarms=AlarmSettings(**alarm),
        events=events,
        status_interval=0,
        install_signal_handlers=False,
        batch=32,
    )
    run_stream(opts)
    lines = [json.loads(x) for x in events.read_text().splitlines()]
    return [x for x in lines if x["kind"] == "sample"], [x for x in lines if x["kind"] == "event"]


def _alarms(events: list[dict]) -> list[tuple[int, int]]:
    return [(e["start_index"], e["index"]) for e in events if e["type"] == "end"]


def _frame(values: np.ndarray) -> Any:
    import pandas as pd

    return pd.DataFrame(values, columns=[f"c{i}" for i in range(values.shape[1])])


def _noise(n: int, seed: int = 0, columns: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, NOISE, (n, columns))


def test_slow_drift_with_spikes_alarms_exactly_on_the_spikes(tmp_path: Path) -> None:
    n, spikes = 3000, (1500, 2400)
    series = _noise(n) + (np.arange(n) / 200.0 * NOISE)[:, None]  # one noise sd every 200 rows: 15 sd
    for row in spikes:
        series[row] += 20 * NOISE
    bundle = _bundle(tmp_path / "b")
    samples, events = _run(bundle, series, tmp_path)
    # window i ends at row i + L - 1: each spike alarms for exactly the L windows that contain it
    assert _alarms(events) == [(row - L + 1, row + 1) for row in spikes]
    spike = samples[spikes[0] - L + 1]
    assert spike["flag"] and spike["surprise"] > 6.0 and spike["threshold"] == 6.0
    assert 0.5 < spike["normalised"] < 1.0  # graded above the threshold, never saturated
    # the fixed calibrated threshold flags the drift itself, for most of the run
    fixed, _ = _run(bundle, series, tmp_path, adaptive=False)
    assert np.mean([s["flag"] for s in fixed]) > 0.5 and "surprise" not in fixed[0]


def test_eval_judges_a_series_like_run(tmp_path: Path) -> None:
    from edgeanom.evaluate.api import evaluate_bundle

    n, spike = 1500, 1200
    series = _noise(n, seed=7) + (np.arange(n) / 200.0 * NOISE)[:, None]
    series[spike] += 20 * NOISE
    labels = np.zeros(n, np.int8)
    labels[spike] = 1
    bundle = _bundle(tmp_path / "b")
    csv = write_sensor_csv(tmp_path / "labelled.csv", np.c_[series, labels], ["c0", "label"])
    samples, _ = _run(bundle, series, tmp_path)
    report = evaluate_bundle(bundle, csv, label_column="label", plots=False, report_dir=tmp_path / "r")
    assert report["n_anomalous"] == L and report["threshold"] == 6.0
    assert report["model"]["threshold_method"] == "adaptive" and report["data"]["scoring"].startswith(
        "adaptive"
    )
    assert report["recall"] == 1.0 and report["precision"] == 1.0
    import csv as csvlib

    with (tmp_path / "r" / "scores.csv").open() as fh:
        surprise = [float(r["score"]) for r in csvlib.DictReader(fh)]
    run_surprise = [s["surprise"] for s in samples]
    np.testing.assert_allclose(surprise, run_surprise, rtol=1e-6, atol=1e-6)  # the same numbers as run


def test_a_level_shift_alarms_until_relearned_with_recalibrate(tmp_path: Path) -> None:
    n, shift = 3000, 1000
    series = _noise(n, seed=1)
    series[shift:] += 10 * NOISE
    bundle = _bundle(tmp_path / "b")
    _, events = _run(bundle, series, tmp_path)
    windows = n - L + 1
    assert _alarms(events) == [(shift - L + 1, windows)]  # never learned: alarms until the run ends
    assert not [e for e in events if e["type"] == "drift"]  # an anomaly, not learned: no drift
    _, events = _run(bundle, series, tmp_path, recalibrate=True)
    ((start, end),) = _alarms(events)
    assert start == shift - L + 1
    # relearned at a bounded rate: not before window/2 = 100 gated samples, then the alarm ends
    assert 100 < end - start < windows - start
    # once the new level is the learned normal, the stream has drifted from the calibration: say so
    drift = [e for e in events if e["type"] == "drift"]
    assert [d["state"] for d in drift] == ["start"] and drift[0]["drift_fraction"] >= 0.5
    assert drift[0]["index"] > end


def test_daily_cycle_with_an_off_season_value(tmp_path: Path) -> None:
    from edgeanom.train.api import train_bundle

    period = 48
    t = np.arange(period * 20)
    day = np.sin(2 * np.pi * t / period)[:, None] + _noise(len(t), seed=2)
    bundle = train_bundle(series=_frame(day), model="seasonal", out=tmp_path / "seasonal", seed=0)
    assert bundle.meta["model"]["params"]["period"] == period and bundle.input_shape == (3 * period + 1, 1)
    days = 30  # long windows (3 days) mean a long warm-up: judged after min_history samples
    test = np.sin(2 * np.pi * np.arange(period * days) / period)[:, None] + _noise(period * days, seed=3)
    night = 22 * period + 3 * period // 4  # the trough: the noon value (+1) is normal only at noon
    test[night : night + 3] = 1.0
    first = night - (3 * period + 1) + 1  # the window whose last row is the first off-season row
    _, events = _run(bundle.path, test, tmp_path)
    assert _alarms(events) == [(first, first + 3)]  # no echo a period later: the reference is a median


def test_a_stuck_sensor_alarms(tmp_path: Path) -> None:
    from edgeanom.train.api import train_bundle

    normal = _noise(1200, seed=4, columns=2) + np.sin(np.arange(1200) / 7.0)[:, None]
    bundle = train_bundle(series=_frame(normal), model="zscore", out=tmp_path / "z", window=16, seed=0)
    test = _noise(1200, seed=5, columns=2) + np.sin(np.arange(1200) / 7.0)[:, None]
    test[800:, 1] = test[800, 1]  # channel 1 freezes at its last value
    samples, events = _run(bundle.path, test, tmp_path)
    starts = [e["index"] for e in events if e["type"] == "start"]
    assert starts and 800 - 16 < starts[0] <= 800 and all(s["flag"] for s in samples[810:])


def test_nan_gaps_are_flagged_and_do_not_poison_the_history(tmp_path: Path) -> None:
    series = _noise(1500, seed=6)
    series[900:903] = np.nan
    bundle = _bundle(tmp_path / "b")
    samples, events = _run(bundle, series, tmp_path)
    assert _alarms(events) == [(900 - L + 1, 903)]  # the windows holding a NaN, and only those
    assert all(s["surprise"] is None for s in samples[900 - L + 1 : 903])  # +inf is written as null
    assert not any(s["flag"] for s in samples[903:])


def test_section_defaults_and_validation(tmp_path: Path) -> None:
    spec = section("window", 64, np.array([0.1, 0.2, 0.3]))
    assert (
        spec["enabled"]
        and spec["warmup"] == 256
        and spec["level_rows"] == 10
        and spec["offset"] == pytest.approx(0.02)
    )
    bundle = window_bundle(tmp_path / "b", ["a"], 4, 1.0)
    bundle.meta["score"]["adaptive"] = {**spec, "threshold": -1.0}
    with pytest.raises(
        EdgeanomError, match=r"score.adaptive.threshold must be a finite number > 0, got -1.0"
    ):
        bundle.save()
    with pytest.raises(EdgeanomError, match=r"--adaptive needs a score\.adaptive section"):
        _run(window_bundle(tmp_path / "plain", ["c0"], L, 1.0).path, _noise(50), tmp_path, adaptive=True)
    with pytest.raises(EdgeanomError, match="--recalibrate works through the adaptive stage"):
        _run(_bundle(tmp_path / "c"), _noise(50), tmp_path, adaptive=False, recalibrate=True)
    assert load_bundle(_bundle(tmp_path / "d")).score["adaptive"]["window"] == 200


def test_normalised_is_graded_above_the_threshold() -> None:
    from edgeanom.bundle import graded

    got = graded(np.array([-1.0, 0.0, 1.0, 2.0, 4.0, 20.0, 1e6, np.inf, np.nan]), threshold=2.0, low=0.0)
    np.testing.assert_allclose(got[:6], [0.0, 0.0, 0.25, 0.5, 0.75, 0.95])
    assert 0.95 < got[6] < 1.0 and got[7] == 1.0 and got[8] == 1.0
    assert np.all(np.diff(graded(np.linspace(0, 1e4, 10001), 2.0)) > 0)  # strictly increasing: ranks alarms


def test_drift_shows_in_metrics() -> None:
    from edgeanom.runtime.sinks.prometheus import render_metrics
    from edgeanom.runtime.stats import RunStats

    stats = RunStats()
    stats.record_sample("sensor:a.csv", 1.0, score=1.0)
    stats.record_drift("sensor:a.csv", True)
    text = render_metrics(stats.snapshot())
    assert 'edgeanom_drift{stream="sensor:a.csv"} 1' in text
    assert 'edgeanom_drift_events_total{stream="sensor:a.csv"} 1' in text
