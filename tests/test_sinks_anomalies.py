"""--save-anomalies: the start, every N-th and peak sample of each alarm, as JPEGs plus a strict-JSON sidecar."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from _sinks_common import THRESHOLD, alarm_sequence, make_result
from edgeanom.errors import EdgeanomError
from edgeanom.runtime.sinks.anomalies import AnomalySaver


def _strict_json(path):
    def reject(token):
        raise ValueError(f"{path}: non-standard JSON constant {token}")

    return json.loads(path.read_text(), parse_constant=reject)


def _sidecars(directory):
    return {p.stem: _strict_json(p) for p in sorted(directory.glob("*.json"))}


def test_start_every_nth_and_peak_are_saved(tmp_path):
    samples = alarm_sequence(40, start=10, end=35, size=(120, 160))
    samples[27].score = THRESHOLD * 9  # the peak falls between two "every" samples
    saver = AnomalySaver(tmp_path, every=10)
    for s in samples:
        saver.write(s)
    saver.close()

    side = _sidecars(tmp_path)
    stems = {i: f"video-synthetic.mp4_{i:08d}" for i in (10, 20, 30, 27)}
    assert set(side) == set(stems.values())
    assert {i: side[s]["reason"] for i, s in stems.items()} == {
        10: "start",
        20: "every",
        30: "every",
        27: "peak",
    }
    peak = side[stems[27]]
    assert peak["score"] == pytest.approx(THRESHOLD * 9)
    assert peak["alarm_start_index"] == 10
    assert peak["stream"] == "video:synthetic.mp4" and peak["flag"] is True
    assert peak["threshold"] == pytest.approx(THRESHOLD)
    assert peak["error_map"]["shape"] == [32, 32]
    assert side[stems[10]]["events"][0]["type"] == "start"
    assert saver.saved == 4

    for stem, record in side.items():
        frame = cv2.imread(str(tmp_path / record["files"]["frame"]))
        heat = cv2.imread(str(tmp_path / record["files"]["heatmap"]))
        assert frame.shape == (120, 160, 3), stem
        assert heat.shape == (240, 320, 3), stem  # annotate() enlarges frames under 160 px
        b, g, r = heat[100:140, -3:].reshape(-1, 3).mean(axis=0)
        assert r > 180 and g < 80 and b < 80, f"{stem}: alarm border missing ({b:.0f}, {g:.0f}, {r:.0f})"
    assert not list(tmp_path.glob(".*.tmp")), "temporary files left behind"


def test_every_one_saves_each_flagged_frame_and_close_finishes_open_alarms(tmp_path):
    saver = AnomalySaver(tmp_path, every=1)
    for s in alarm_sequence(12, start=4, end=100):  # the alarm is still on at close
        saver.write(s)
    saver.close()
    saver.close()
    side = _sidecars(tmp_path)
    assert sorted(r["index"] for r in side.values()) == list(range(4, 12))
    assert len(list(tmp_path.glob("*_heatmap.jpg"))) == 8


def test_flush_end_event_finishes_the_alarm(tmp_path):
    saver = AnomalySaver(tmp_path, every=5)
    samples = alarm_sequence(8, start=2, end=100)
    samples[4].score = THRESHOLD * 7
    for s in samples:
        saver.write(s)
    flush_end = {"type": "end", "stream": "video:synthetic.mp4", "stream_id": 0, "index": 7, "start_index": 2}
    saver.write_event(flush_end)  # the pipeline's alarms.flush() at the end of the run
    saved = sorted((r["index"], r["reason"]) for r in _sidecars(tmp_path).values())
    assert saved == [(2, "start"), (4, "peak"), (7, "every")]
    saver.close()
    assert len(_sidecars(tmp_path)) == 3


def test_sensor_windows_and_infinite_scores(tmp_path):
    saver = AnomalySaver(tmp_path, every=1, columns=["temp", "vib"])
    window = make_result(3, flagged=True, with_frame=False, stream_name="sensor:pump.csv", score=float("inf"))
    window.window = np.array(
        [[20.5, 0.1], [20.7, 0.4], [21.0, 9.5]]
    )  # the pipeline may attach the raw window
    saver.write(window)
    saver.close()
    record = _strict_json(tmp_path / "sensor-pump.csv_00000003.json")
    assert record["score"] is None  # +inf (non-finite input) is written as null: strict JSON
    assert record["files"] == {"window": "sensor-pump.csv_00000003.csv"}
    lines = (tmp_path / "sensor-pump.csv_00000003.csv").read_text().splitlines()
    assert lines[0] == "temp,vib"
    assert np.allclose(np.loadtxt(lines[1:], delimiter=","), window.window)
    assert not list(tmp_path.glob("*.jpg"))


def test_bad_directory(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(EdgeanomError, match="not a directory"):
        AnomalySaver(tmp_path / "file")
    with pytest.raises(EdgeanomError, match="every"):
        AnomalySaver(tmp_path / "d", every=0)
