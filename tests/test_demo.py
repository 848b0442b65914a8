"""Synthetic data with known anomalies, the alarm matching of the demo report, and `edgeanom demo` itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edgeanom.cli.main import app
from edgeanom.demo import Injected, match_alarms, scene_frames, sensor_series


def test_scene_anomalies_change_only_their_frames() -> None:
    clean, none = scene_frames(60, 32, seed=3, anomalies=[])
    marked, _injected = scene_frames(
        60, 32, seed=3, anomalies=[Injected(10, 14, "object"), Injected(40, 42, "glare")]
    )
    assert none == [] and len(marked) == 60 and marked[0].shape == (32, 32, 3) and marked[0].dtype == np.uint8
    changed = [i for i in range(60) if not np.array_equal(clean[i], marked[i])]
    assert changed == [10, 11, 12, 13, 40, 41]
    again, _ = scene_frames(60, 32, seed=3, anomalies=[])
    assert all(np.array_equal(a, b) for a, b in zip(clean, again)), "seeded: the same scene every time"


def test_default_scene_anomalies_sit_in_the_second_half() -> None:
    _frames, injected = scene_frames(200, 16)
    assert [a.kind for a in injected] == ["object", "scratch", "glare"]
    assert all(100 <= a.start < a.end <= 200 for a in injected)


def test_sensor_series_anomalies_are_where_they_say() -> None:
    clean, cols, _ = sensor_series(300, 2, seed=1, anomalies=[])
    data, _, _injected = sensor_series(300, 2, seed=1, anomalies=[Injected(100, 110, "shift")])
    assert cols == ["ch0", "ch1"] and data.dtype == np.float32
    diff = np.abs(data - clean).max(axis=1)
    np.testing.assert_allclose(diff[100:110], 2.5, rtol=1e-5)
    assert diff[:100].max() == 0 and diff[110:].max() == 0


def test_match_alarms_reports_caught_missed_and_false_alarms() -> None:
    injected = [Injected(10, 20, "a"), Injected(40, 45, "b"), Injected(70, 80, "c")]
    events = [
        {"type": "end", "stream_id": 0, "start_index": 12, "index": 22, "peak": 3.0},
        {"type": "end", "stream_id": 0, "start_index": 47, "index": 49, "peak": 1.0},  # within slack of b
        {"type": "end", "stream_id": 0, "start_index": 90, "index": 95, "peak": 2.0},
        {"type": "end", "stream_id": 1, "start_index": 70, "index": 75, "peak": 2.0},  # another stream
    ]
    detections, false_alarms = match_alarms(events, injected)
    assert [(d.caught, d.first_alarm, d.delay) for d in detections] == [
        (True, 12, 2),
        (True, 47, 7),
        (False, None, None),
    ]
    assert false_alarms == [(90, 95)]


@pytest.mark.slow
def test_demo_command_end_to_end(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    out = tmp_path / "demo"
    result = CliRunner().invoke(
        app, ["demo", "--out", str(out), "--frames", "100", "--size", "16", "--epochs", "2"]
    )
    assert result.exit_code == 0, result.output
    for name in (
        "scene.mp4",
        "injected.json",
        "events.jsonl",
        "annotated.mp4",
        "model/bundle.json",
        "model/model.onnx",
    ):
        assert (out / name).is_file(), name
    assert "injected anomalies" in result.output and "caught" in result.output
