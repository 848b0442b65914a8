"""`run` wires its outputs: --mqtt (real mosquitto), --serve (/metrics while running), --save-anomalies, --show."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from _services import MOSQUITTO, free_port, start_mosquitto, stop_process
from edgeanom.cli.main import app
from edgeanom.demo import write_video
from edgeanom.runtime.launch import RunOptions, run_stream
from edgeanom.runtime.testing import image_bundle


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("outputs")
    frames = [np.full((24, 24, 3), 70, np.uint8) for _ in range(40)]
    for f in frames[10:14]:
        f[4:14, 4:14] = 250
    video = write_video(root / "clip.avi", frames, fps=50.0)
    bundle = image_bundle(root / "model", frames[0], threshold=0.01, color="rgb")
    return {"root": root, "video": video, "bundle": bundle.path}


@pytest.mark.skipif(MOSQUITTO is None, reason="mosquitto broker not installed (apt-get install mosquitto)")
def test_mqtt_option_publishes_the_alarm_events(clip: dict[str, Path], tmp_path: Path) -> None:
    mqtt = pytest.importorskip("paho.mqtt.client")
    port = free_port()
    broker = start_mosquitto(port, tmp_path)
    got: list[dict] = []
    subscribed = threading.Event()
    try:
        sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        sub.on_connect = lambda c, *_: c.subscribe("line3/events", qos=1)
        sub.on_subscribe = lambda *_: subscribed.set()
        sub.on_message = lambda _c, _u, msg: got.append(json.loads(msg.payload))
        sub.connect("127.0.0.1", port)
        sub.loop_start()
        assert subscribed.wait(5)
        result = CliRunner().invoke(
            app,
            [
                "run",
                "-m",
                str(clip["bundle"]),
                "--video",
                str(clip["video"]),
                "--events-only",
                "--mqtt",
                f"mqtt://127.0.0.1:{port}/line3",
                "--status-interval",
                "0",
            ],
        )
        assert result.exit_code == 0, result.output
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and len([g for g in got if g.get("type") in ("start", "end")]) < 2:
            time.sleep(0.02)
        sub.loop_stop()
        sub.disconnect()
    finally:
        stop_process(broker)
    alarms = [(g["type"], g["index"]) for g in got if g.get("type") in ("start", "end")]
    assert alarms == [("start", 10), ("end", 14)]


def test_serve_option_answers_metrics_while_running(clip: dict[str, Path]) -> None:
    fetched: dict[str, str] = {}

    def on_ready(_pipeline, sinks) -> None:
        server = next(s for s in sinks if hasattr(s, "url"))

        def poll() -> None:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and "metrics" not in fetched:
                try:
                    with urllib.request.urlopen(server.url + "metrics", timeout=1) as r:
                        fetched["metrics"] = r.read().decode()
                except OSError:
                    time.sleep(0.05)

        threading.Thread(target=poll, daemon=True).start()

    said: list[str] = []
    opts = RunOptions(
        model=clip["bundle"],
        videos=[clip["video"]],
        serve="127.0.0.1:0",
        realtime=True,
        events_to_stdout=False,
        status_interval=0,
        install_signal_handlers=False,
    )
    summary = run_stream(opts, say=said.append, on_ready=on_ready)
    assert summary.stats["frames"] == 40
    assert any(s.startswith("live view: http://127.0.0.1:") for s in said)
    assert "metrics" in fetched, "the web view did not answer during the run"
    assert "edgeanom" in fetched["metrics"]


def test_save_anomalies_writes_the_flagged_frames(clip: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "anomalies"
    result = CliRunner().invoke(
        app,
        [
            "run",
            "-m",
            str(clip["bundle"]),
            "--video",
            str(clip["video"]),
            "--save-anomalies",
            str(out),
            "--events-only",
            "--status-interval",
            "0",
        ],
    )
    assert result.exit_code == 0, result.output
    assert any(p.suffix == ".json" for p in out.rglob("*")), list(out.rglob("*"))
    assert any(p.suffix in (".png", ".jpg") for p in out.rglob("*"))


def test_show_without_a_gui_points_to_serve(clip: dict[str, Path]) -> None:
    from edgeanom.runtime.sinks.show import gui_unavailable

    result = CliRunner().invoke(
        app, ["run", "-m", str(clip["bundle"]), "--video", str(clip["video"]), "--show"]
    )
    if gui_unavailable() is None:
        pytest.skip("this OpenCV has a GUI")
    assert result.exit_code == 2
    assert "--serve" in result.output
