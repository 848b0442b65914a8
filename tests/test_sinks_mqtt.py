"""--mqtt against a real mosquitto broker: events, retained status with last will, scores, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from _services import MOSQUITTO, free_port, start_mosquitto, stop_process
from _sinks_common import FakeStats, alarm_sequence
from edgeanom.errors import EdgeanomError
from edgeanom.runtime.sinks.mqtt import MqttSink, parse_mqtt_url

pytestmark = pytest.mark.skipif(
    MOSQUITTO is None, reason="mosquitto broker not installed (apt-get install mosquitto)"
)
mqtt = pytest.importorskip("paho.mqtt.client")


@pytest.fixture(scope="session")
def broker(tmp_path_factory):
    """A private mosquitto for the whole session; yields (host, port)."""
    port = free_port()
    proc = start_mosquitto(port, tmp_path_factory.mktemp("mosquitto"))
    yield "127.0.0.1", port
    stop_process(proc)


class Collector:
    """A paho subscriber that records (topic, payload dict, retain) for a topic filter."""

    def __init__(self, host: str, port: int, topic: str) -> None:
        self.messages: list[tuple[str, dict, bool]] = []
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(host, port)
        self.client.loop_start()
        assert self._subscribed.wait(5), "subscriber did not get SUBACK"

    def _on_message(self, client, userdata, msg) -> None:
        with self._cond:
            self.messages.append((msg.topic, json.loads(msg.payload), bool(msg.retain)))
            self._cond.notify_all()

    def wait_for(self, predicate, timeout: float = 5.0) -> list[tuple[str, dict, bool]]:
        with self._cond:
            assert self._cond.wait_for(lambda: predicate(self.messages), timeout), f"got only {self.messages}"
            return list(self.messages)

    def on(self, topic: str) -> list[dict]:
        with self._cond:
            return [m for t, m, _ in self.messages if t == topic]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_events_status_and_scores_arrive_as_json(broker):
    host, port = broker
    sub = Collector(host, port, "plant/cam1/#")
    try:
        sink = MqttSink(
            f"mqtt://{host}:{port}/plant/cam1?scores=1", stats=FakeStats(40), status_interval_s=0.1
        )
        samples = alarm_sequence(40, start=12, end=25)
        for s in samples:
            sink.write(s)
        sink.write_event(
            {"type": "disconnect", "stream": "video:synthetic.mp4", "reason": "source dropped out"}
        )
        sink.write_event({"type": "summary", "time": time.time(), "frames": 40, "anomalies": 1})
        time.sleep(0.35)  # a few periodic status messages
        sink.close()
        sink.close()  # idempotent

        sub.wait_for(lambda ms: any(t.endswith("/status") and m["state"] == "offline" for t, m, _ in ms))
        sub.wait_for(lambda ms: len([1 for t, _, _ in ms if t.endswith("/scores")]) == 40)
        events = sub.on("plant/cam1/events")
        assert [e["type"] for e in events] == ["start", "end", "disconnect"]
        start, end, gap = events
        assert start["index"] == 12 and start["stream"] == "video:synthetic.mp4" and start["stream_id"] == 0
        assert start["threshold"] == pytest.approx(0.02) and start["time"] == pytest.approx(samples[12].time)
        assert end["start_index"] == 12 and end["index"] == 25 and end["peak"] == pytest.approx(0.06)
        assert gap["reason"] == "source dropped out" and isinstance(gap["time"], float)
        assert gap["kind"] == "event" and start["kind"] == "event"
        summary = sub.wait_for(lambda ms: any(t.endswith("/summary") for t, _, _ in ms))
        assert next(m for t, m, _ in summary if t == "plant/cam1/summary")["frames"] == 40

        scores = sub.on("plant/cam1/scores")
        assert [m["index"] for m in scores] == list(range(40))
        assert [m["flag"] for m in scores] == [s.flag for s in samples]

        status = sub.on("plant/cam1/status")
        assert status[0]["state"] == "online" and status[-1]["state"] == "offline"
        assert len(status) >= 3, "the periodic status message did not repeat"
        assert status[0]["frames"] == 40 and status[0]["streams"]["video:synthetic.mp4"]["fps"] == 25.0
        assert set(status[0]) >= {"fps", "latency_ms_p50", "latency_ms_p99", "drops", "anomalies", "uptime_s"}
    finally:
        sub.close()

    late = Collector(host, port, "plant/cam1/status")  # the retained status is there for late subscribers
    try:
        retained = late.wait_for(lambda ms: len(ms) >= 1)[0]
        assert retained[2] is True and retained[1]["state"] == "offline"
    finally:
        late.close()


def test_last_will_marks_a_dead_run_offline(broker, tmp_path):
    host, port = broker
    script = tmp_path / "die.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import os, sys
            from edgeanom.runtime.sinks.mqtt import MqttSink
            sink = MqttSink("mqtt://{host}:{port}/will-test", status_interval_s=60)
            print("connected", flush=True)
            sys.stdin.readline()
            os._exit(1)  # dies without closing the sink
            """
        )
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parents[1] / "python"), *sys.path]))
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
    )
    try:
        assert proc.stdout.readline().strip() == b"connected"
        sub = Collector(host, port, "will-test/status")
        try:
            sub.wait_for(lambda ms: any(m["state"] == "online" for _, m, _ in ms))
            proc.stdin.write(b"\n")
            proc.stdin.flush()
            proc.wait(timeout=10)
            msgs = sub.wait_for(lambda ms: ms[-1][1]["state"] == "offline")
            assert msgs[-1][1] == {"state": "offline", "reason": "connection lost"}
        finally:
            sub.close()
    finally:
        proc.kill()
        proc.wait()


def test_events_published_while_the_broker_is_down_are_delivered_after_it_returns(tmp_path):
    port = free_port()
    proc = start_mosquitto(port, tmp_path)
    sink = MqttSink(f"mqtt://127.0.0.1:{port}/outage", status_interval_s=60)
    try:
        stop_process(proc)
        time.sleep(0.2)  # the sink notices the broker is gone
        for s in alarm_sequence(10, start=3, end=7):
            sink.write(s)  # QoS 1: paho keeps them while disconnected
        proc = start_mosquitto(port, tmp_path)
        sub = Collector(
            "127.0.0.1", port, "outage/events"
        )  # subscribes before the sink's reconnect backoff ends
        try:
            events = sub.wait_for(lambda ms: len(ms) >= 2, timeout=20)
            assert [(m["type"], m["index"]) for _, m, _ in events] == [("start", 3), ("end", 7)]
        finally:
            sub.close()
    finally:
        sink.close()
        stop_process(proc)


def test_unreachable_broker_is_one_clear_error():
    url = f"mqtt://127.0.0.1:{free_port()}/x"
    with pytest.raises(EdgeanomError) as err:
        MqttSink(url)
    message = str(err.value)
    assert url in message and "cannot reach the broker" in message and "\n" not in message


def test_url_parsing():
    assert parse_mqtt_url("mqtt://broker").port == 1883
    tls = parse_mqtt_url("mqtts://u%40x:p%3Aw@broker.local/a/b/?client_id=cam&insecure=1")
    assert (tls.port, tls.tls, tls.topic, tls.username, tls.password) == (
        8883,
        True,
        "a/b",
        "u@x",
        "p:w",
    )
    assert tls.client_id == "cam" and tls.insecure is True and tls.scores is False
    assert parse_mqtt_url("mqtt://h:1/").topic == "edgeanom"
    for bad, why in [
        ("http://h/t", "expected mqtt://"),
        ("mqtt://h:99999/t", "port"),
        ("mqtt:///t", "no broker host"),
        ("mqtt://h/a/#", "wildcards"),
        ("mqtt://h/t?retain=1", "unknown option 'retain'"),
    ]:
        with pytest.raises(EdgeanomError, match=why):
            parse_mqtt_url(bad)
