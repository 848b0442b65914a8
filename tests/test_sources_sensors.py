"""Sensor sources: parsing, windowing, CSV replay, stdin, a serial port (pty) and MQTT (real mosquitto)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from _services import MOSQUITTO, free_port, start_mosquitto, stop_process
from edgeanom.cli.main import app
from edgeanom.demo import Injected, sensor_series, write_sensor_csv
from edgeanom.preprocess import sliding_windows
from edgeanom.runtime.sources import CorruptInput, RowParser, Windower
from edgeanom.runtime.testing import window_bundle

COLUMNS = ["ch0", "ch1", "ch2"]
WINDOW = 16
ROWS = 400
INJECTED = [Injected(250, 262, "spike"), Injected(330, 350, "shift")]


# --- parsing and windowing --------------------------------------------------------------------------
def test_row_parser_header_picks_the_bundle_columns_in_order() -> None:
    p = RowParser(2, ["b", "a"], time_column="t")
    assert p.parse("t,a,b,extra\n") == []
    np.testing.assert_array_equal(p.parse("2024-01-01T00:00:00,1.5,2.5,9\n")[0], [2.5, 1.5])
    with pytest.raises(CorruptInput, match=r"not numeric: '0,x,2,3'"):
        p.parse("0,x,2,3")
    with pytest.raises(CorruptInput, match="fields"):
        p.parse("0,1")


def test_row_parser_without_header_json_and_errors() -> None:
    p = RowParser(3, COLUMNS, time_column="t")
    np.testing.assert_array_equal(p.parse("1,2,3")[0], [1, 2, 3])
    np.testing.assert_array_equal(p.parse("0.5;1;2;3")[0], [1, 2, 3])  # leading time stamp dropped
    rows = p.parse('[{"ch0": 1, "ch1": 2, "ch2": 3, "t": 9}, {"ch2": 6, "ch1": 5, "ch0": 4}]')
    np.testing.assert_array_equal(np.stack(rows), [[1, 2, 3], [4, 5, 6]])
    np.testing.assert_array_equal(p.parse(b"[7, 8, 9]")[0], [7, 8, 9])
    assert p.parse("   ") == [] and p.parse("# comment") == []
    assert np.isnan(p.parse("nan,1,2")[0][0])  # non-finite values go on and score +inf
    for bad, match in [
        ("1,2", "2 fields, expected 3"),
        ('{"ch0": 1}', "missing"),
        ("{oops", "invalid JSON"),
        (b"\xff\xfe", "not UTF-8"),
        ("[" * 200_000 + "]" * 200_000, "nested too deep"),  # a hostile line: skipped, never fatal
    ]:
        with pytest.raises(CorruptInput, match=match):
            p.parse(bad)


def test_header_missing_a_trained_column_is_a_clear_error() -> None:
    from edgeanom.errors import EdgeanomError

    with pytest.raises(EdgeanomError, match=r"lacks the column\(s\) \['ch2'\]"):
        RowParser(3, COLUMNS).parse("ch0,ch1,other")


@pytest.mark.parametrize("stride", [1, 3])
def test_windower_matches_sliding_windows(stride: int) -> None:
    series = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    w = Windower(8, stride, 3)
    got = [x for row in series if (x := w.push(row)) is not None]
    np.testing.assert_array_equal(np.stack(got), sliding_windows(series, 8, stride))


# --- replay through the pipeline --------------------------------------------------------------------
@pytest.fixture(scope="module")
def sensor(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("sensor")
    series, columns, _injected = sensor_series(ROWS, 3, seed=1, anomalies=INJECTED)
    normal = series[:200]
    mean, std = normal.mean(axis=0), normal.std(axis=0)
    scaled = (series - mean) / std
    # Reference scores in float64: the model reconstructs zeros, so a window's score is mean(scaled^2).
    windows = sliding_windows(scaled.astype(np.float64), WINDOW, 1)
    reference = (windows**2).mean(axis=(1, 2))
    threshold = float(reference[: 200 - WINDOW + 1].max() * 1.2)
    bundle = window_bundle(
        root / "model",
        columns,
        WINDOW,
        threshold,
        offset=mean.tolist(),
        scale=(1.0 / std).tolist(),
        time_column="t",
    )
    csv = write_sensor_csv(root / "pump.csv", series, columns, time_column="t")
    return {"root": root, "bundle": bundle.path, "csv": csv, "reference": reference, "threshold": threshold}


def _samples(lines: list[dict]) -> list[dict]:
    return [r for r in lines if r["kind"] == "sample"]


def test_csv_replay_scores_every_window_like_the_reference(sensor: dict) -> None:
    events = sensor["root"] / "events.jsonl"
    result = CliRunner().invoke(
        app,
        [
            "run",
            "-m",
            str(sensor["bundle"]),
            "--sensor",
            str(sensor["csv"]),
            "--events",
            str(events),
            "--status-interval",
            "0",
        ],
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(x) for x in events.read_text().splitlines()]
    samples = _samples(lines)
    assert [s["index"] for s in samples] == list(range(ROWS - WINDOW + 1))
    np.testing.assert_allclose([s["score"] for s in samples], sensor["reference"], rtol=1e-4, atol=1e-6)
    flagged = [s["index"] for s in samples if s["flag"]]
    assert flagged == [i for i, r in enumerate(sensor["reference"]) if r > sensor["threshold"]]
    # Both injected anomalies raise an alarm; window i ends at row i + WINDOW - 1.
    ends = [(e["start_index"], e["index"]) for e in lines if e["kind"] == "event" and e["type"] == "end"]
    for a in INJECTED:
        assert any(s + WINDOW - 1 < a.end + WINDOW and e + WINDOW - 1 > a.start for s, e in ends), (a, ends)


def test_malformed_lines_are_skipped_counted_and_quoted(sensor: dict, tmp_path: Path) -> None:
    text = sensor["csv"].read_text().splitlines()
    text.insert(5, "0.05,1.0,banana,2.0")
    text.insert(9, "garbage")
    text.insert(12, "1,2")
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(text[:60]) + "\n")
    events = tmp_path / "e.jsonl"
    result = CliRunner().invoke(
        app,
        [
            "run",
            "-m",
            str(sensor["bundle"]),
            "--sensor",
            str(bad),
            "--events",
            str(events),
            "--status-interval",
            "0",
        ],
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(x) for x in events.read_text().splitlines()]
    summary = lines[-1]
    assert summary["corrupt"] == 3
    assert summary["corrupt_examples"][0] == "sensor:bad.csv: not numeric: '0.05,1.0,banana,2.0'"
    assert "'garbage'" in summary["corrupt_examples"][1]
    assert len(_samples(lines)) == 59 - 3 - WINDOW + 1
    assert "skipped: sensor:bad.csv: not numeric" in result.output


def _edgeanom_cmd() -> list[str]:
    return [sys.executable, "-m", "edgeanom.cli.main"]


def test_stdin_stream_subprocess(sensor: dict) -> None:
    data = sensor["csv"].read_text()
    proc = subprocess.run(
        [*_edgeanom_cmd(), "run", "-m", str(sensor["bundle"]), "--sensor", "-", "--status-interval", "0"],
        input=data,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(x) for x in proc.stdout.splitlines()]
    samples = _samples(lines)
    assert samples[0]["stream"] == "sensor:stdin"
    np.testing.assert_allclose([s["score"] for s in samples], sensor["reference"], rtol=1e-4, atol=1e-6)
    assert lines[-1]["kind"] == "summary" and lines[-1]["stopped_by"] == "end"


def test_vector_model_scores_each_row(tmp_path: Path) -> None:
    bundle = window_bundle(tmp_path / "vec", ["x", "y"], 1, threshold=4.0, kind="vector")
    csv = tmp_path / "rows.csv"
    csv.write_text("x,y\n0,1\n3,3\n0.5,0.5\n")
    events = tmp_path / "e.jsonl"
    result = CliRunner().invoke(
        app,
        [
            "run",
            "-m",
            str(bundle.path),
            "--sensor",
            str(csv),
            "--events",
            str(events),
            "--status-interval",
            "0",
        ],
    )
    assert result.exit_code == 0, result.output
    samples = _samples([json.loads(x) for x in events.read_text().splitlines()])
    np.testing.assert_allclose([s["score"] for s in samples], [0.5, 9.0, 0.25], rtol=1e-6)
    assert [s["flag"] for s in samples] == [False, True, False]


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal (POSIX)")
def test_serial_port_lines(sensor: dict) -> None:
    pytest.importorskip("serial")
    from edgeanom.backends import open_runner
    from edgeanom.bundle import load_bundle
    from edgeanom.runtime.pipeline import Pipeline, PipelineConfig
    from edgeanom.runtime.sources import SerialSource

    master, slave = os.openpty()
    port = os.ttyname(slave)
    rows = sensor["csv"].read_text().splitlines()[: WINDOW + 10]

    def feed() -> None:
        time.sleep(0.2)
        for line in rows:
            os.write(master, (line + "\r\n").encode())

    bundle = load_bundle(sensor["bundle"])
    results = []

    class Sink:
        def write(self, r) -> None:
            results.append(r)

        def write_event(self, e) -> None:
            pass

        def close(self) -> None:
            pass

    threading.Thread(target=feed, daemon=True).start()
    source = SerialSource(f"serial://{port}?baud=115200")
    try:
        Pipeline(
            bundle,
            open_runner(bundle, "onnxruntime"),
            [source],
            [Sink()],
            config=PipelineConfig(max_frames=10),
        ).run()
    finally:
        os.close(master)
        os.close(slave)
    assert [r.index for r in results] == list(range(10))
    np.testing.assert_allclose([r.score for r in results], sensor["reference"][:10], rtol=1e-4, atol=1e-6)


@pytest.mark.skipif(MOSQUITTO is None, reason="mosquitto broker not installed (apt-get install mosquitto)")
def test_mqtt_topic_json_and_csv_payloads(sensor: dict, tmp_path: Path) -> None:
    mqtt = pytest.importorskip("paho.mqtt.client")
    from edgeanom.backends import open_runner
    from edgeanom.bundle import load_bundle
    from edgeanom.runtime.pipeline import Pipeline, PipelineConfig
    from edgeanom.runtime.sources import MqttSource

    port = free_port()
    broker = start_mosquitto(port, tmp_path)
    try:
        source = MqttSource(f"mqtt://127.0.0.1:{port}/plant/pump")
        bundle = load_bundle(sensor["bundle"])
        rows = sensor["csv"].read_text().splitlines()[1 : WINDOW + 8]
        results = []

        class Sink:
            def write(self, r) -> None:
                results.append(r)

            def write_event(self, e) -> None:
                pass

            def close(self) -> None:
                pass

        def publish() -> None:
            time.sleep(0.3)  # the pipeline subscribes when it opens the source
            pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
            pub.connect("127.0.0.1", port)
            pub.loop_start()
            for i, line in enumerate(rows):
                t, *vals = line.split(",")
                payload = line if i % 2 else json.dumps(dict(zip(COLUMNS, map(float, vals)), t=float(t)))
                pub.publish("plant/pump", payload, qos=1).wait_for_publish(5)
            pub.publish("plant/pump", "not,a,row", qos=1).wait_for_publish(5)
            pub.loop_stop()
            pub.disconnect()

        threading.Thread(target=publish, daemon=True).start()
        pipe = Pipeline(
            bundle,
            open_runner(bundle, "onnxruntime"),
            [source],
            [Sink()],
            config=PipelineConfig(duration_s=5.0),
        )

        def stop_when_done() -> None:
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                if len(results) >= 8 and pipe.stats.snapshot()["corrupt"] >= 1:
                    break
                time.sleep(0.02)
            pipe.stop()

        threading.Thread(target=stop_when_done, daemon=True).start()
        summary = pipe.run()
    finally:
        stop_process(broker)
    assert [r.index for r in results] == list(range(8))
    np.testing.assert_allclose([r.score for r in results], sensor["reference"][:8], rtol=1e-4, atol=1e-6)
    assert summary.stats["corrupt"] == 1


def test_row_parser_learns_columns_for_training_capture() -> None:
    """`train --sensor` parses with the same RowParser as `run`: header, separators and JSON alike."""
    from edgeanom.runtime.sources.sensors import RowParser

    csv = RowParser(None)
    assert csv.parse("temp;pressure") == [] and csv.names == ["temp", "pressure"]
    (row,) = csv.parse("1.5;2")
    assert row.tolist() == [1.5, 2.0]
    bare = RowParser(None)
    assert [r.tolist() for r in bare.parse("1\t2\t3")] == [[1.0, 2.0, 3.0]] and bare.names == [
        "c0",
        "c1",
        "c2",
    ]
    js = RowParser(None)
    assert [r.tolist() for r in js.parse('{"a": 1, "b": 2}')] == [[1.0, 2.0]] and js.names == ["a", "b"]
