"""--serve: the page, JSON API, Prometheus /metrics, MJPEG stream and health check over real HTTP."""

from __future__ import annotations

import http.client
import json
import socket
import time
import urllib.error
import urllib.request

import cv2
import numpy as np
import pytest

from _services import free_port
from _sinks_common import FakeStats, alarm_sequence, make_result
from edgeanom.errors import EdgeanomError
from edgeanom.runtime.sinks import serve
from edgeanom.runtime.sinks.serve import WebServer, parse_bind

prometheus_parser = pytest.importorskip("prometheus_client.parser")


@pytest.fixture
def server():
    srv = WebServer("127.0.0.1:0", FakeStats(frames=40))
    yield srv
    srv.close()


def get(url: str, timeout: float = 5.0) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as res:
            return res.status, res.headers.get("Content-Type", ""), res.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("Content-Type", ""), err.read()


def read_mjpeg_part(srv: WebServer, stream: int = 0) -> tuple[str, bytes]:
    """Open /stream.mjpg and return (content type of the response, the first JPEG part)."""
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
    conn.request("GET", f"/stream.mjpg?stream={stream}")
    res = conn.getresponse()
    ctype = res.getheader("Content-Type")
    boundary = b"--" + ctype.split("boundary=")[1].encode()
    assert res.fp.readline().rstrip(b"\r\n") == boundary
    headers = {}
    while (line := res.fp.readline().rstrip(b"\r\n")) != b"":
        key, _, value = line.decode().partition(":")
        headers[key.strip().lower()] = value.strip()
    assert headers["content-type"] == "image/jpeg"
    body = res.fp.read(int(headers["content-length"]))
    conn.close()
    return ctype, body


def test_page_and_static_files(server):
    status, ctype, body = get(server.url)
    assert status == 200 and ctype.startswith("text/html")
    html = body.decode()
    assert 'id="chart"' in html and 'id="events"' in html and "/app.js" in html
    status, ctype, body = get(server.url + "app.js")
    assert status == 200 and "javascript" in ctype and b"/stream.mjpg" in body
    assert get(server.url + "style.css")[0] == 200
    assert get(server.url + "nope")[0] == 404


def test_metrics_parse_as_prometheus_text(server):
    for s in alarm_sequence(40, start=10, end=30):
        server.write(s)
    status, ctype, body = get(server.url + "metrics")
    assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in prometheus_parser.text_string_to_metric_families(body.decode())}
    # The parser drops the _total suffix from counter family names.
    assert {
        "edgeanom_frames",
        "edgeanom_dropped_frames",
        "edgeanom_anomalies",
        "edgeanom_corrupt_samples",
    } <= set(families)
    assert families["edgeanom_frames"].type == "counter"
    frames = families["edgeanom_frames"].samples[0]
    assert frames.name == "edgeanom_frames_total" and frames.labels == {"stream": "video:synthetic.mp4"}
    assert frames.value == 40
    assert families["edgeanom_dropped_frames"].samples[0].value == 2
    assert families["edgeanom_fps"].samples[0].value == 25.0
    latency = {s.labels["quantile"]: s.value for s in families["edgeanom_latency_seconds"].samples}
    assert latency == {"0.5": pytest.approx(0.0045), "0.99": pytest.approx(0.009)}
    per_stream = families["edgeanom_stream_latency_seconds"].samples
    assert {(s.labels["stream"], s.labels["quantile"]) for s in per_stream} == {
        ("video:synthetic.mp4", "0.5"),
        ("video:synthetic.mp4", "0.99"),
    }
    assert families["edgeanom_uptime_seconds"].samples[0].value == 12.5
    assert families["edgeanom_info"].samples[0].labels["backend"] == "onnxruntime:CPUExecutionProvider"
    for name, family in families.items():
        assert family.documentation, f"{name} has no HELP line"


def test_metrics_escape_labels_and_work_without_stats():
    srv = WebServer("127.0.0.1:0")  # no RunStats: the server's own counters
    try:
        srv.write(make_result(0, stream_name='cam "a"\\b', flagged=True, score=float("inf")))
        body = get(srv.url + "metrics")[2].decode()
        families = {f.name: f for f in prometheus_parser.text_string_to_metric_families(body)}
        assert families["edgeanom_frames"].samples[0].labels == {"stream": 'cam "a"\\b'}
        assert families["edgeanom_alarm"].samples[0].value == 1
        assert families["edgeanom_score"].samples[0].value == float("inf")
    finally:
        srv.close()


def test_json_api(server):
    samples = alarm_sequence(20, start=5, end=12)
    for s in samples:
        server.write(s)
    server.write(make_result(0, stream=1, stream_name="sensor:pump.csv", with_frame=False))
    server.write_event({"type": "reconnect", "stream": "camera:0", "time": 1.0, "gap_s": 2.5, "attempts": 2})
    server.write_event({"type": "summary", "frames": 20})  # not an entry of the events list

    streams = json.loads(get(server.url + "api/streams")[2])
    assert streams == [
        {"id": 0, "name": "video:synthetic.mp4", "has_frames": True, "flag": False, "frames": 20},
        {"id": 1, "name": "sensor:pump.csv", "has_frames": False, "flag": False, "frames": 1},
    ]
    scores = json.loads(get(server.url + "api/scores")[2])
    assert scores["threshold"] == pytest.approx(0.02)
    points = scores["streams"][0]["points"]
    assert [p[0] for p in points] == list(range(20))
    assert [p[4] for p in points] == [s.flag for s in samples]
    events = json.loads(get(server.url + "api/events")[2])
    assert [e["type"] for e in events] == ["reconnect", "end", "start"]  # newest first
    assert events[2]["stream"] == "video:synthetic.mp4" and events[2]["index"] == 5
    stats = json.loads(get(server.url + "api/stats")[2])
    assert stats["frames"] == 40 and stats["fps"] == 25.0
    health = json.loads(get(server.url + "healthz")[2])
    assert health["status"] == "ok" and 0 <= health["last_sample_age_s"] < 5


def test_mjpeg_stream_serves_the_annotated_frame(server):
    flagged = make_result(7, flagged=True, size=(180, 240))
    server.write(flagged)
    ctype, jpeg = read_mjpeg_part(server)
    assert ctype.startswith("multipart/x-mixed-replace")
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (180, 240, 3)
    b, g, r = image[60:120, -3:].reshape(-1, 3).mean(axis=0)
    assert r > 180 and g < 80 and b < 80, "the flagged frame's red border is missing"

    status, ctype, body = get(server.url + "snapshot.jpg?stream=0")
    assert status == 200 and ctype == "image/jpeg"
    assert cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR).shape == (180, 240, 3)


def test_mjpeg_follows_new_frames_and_ends_after_frames_param(server):
    server.write(make_result(0, size=(180, 240)))
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    conn.request("GET", "/stream.mjpg?stream=0&frames=3")
    res = conn.getresponse()
    for i in range(1, 6):
        time.sleep(0.1)  # above 1/max_fps, so each frame is encoded
        server.write(make_result(i, size=(180, 240)))
    body = res.read()  # the response ends after 3 parts
    conn.close()
    parts = [p for p in body.split(b"--edgeanom-frame") if b"image/jpeg" in p]
    assert len(parts) == 3
    decoded = [
        cv2.imdecode(np.frombuffer(p.split(b"\r\n\r\n", 1)[1], np.uint8), cv2.IMREAD_COLOR) for p in parts
    ]
    assert all(d is not None and d.shape == (180, 240, 3) for d in decoded)
    assert not np.array_equal(decoded[0], decoded[2]), "the stream did not advance"


def test_memory_is_bounded(server):
    for i in range(serve.SCORE_HISTORY * 2):
        events = [{"type": "start" if i % 2 == 0 else "end", "stream": 0, "index": i}]
        server.write(make_result(i, events=events, with_frame=i % 50 == 0))
    scores = json.loads(get(server.url + "api/scores")[2])
    assert len(scores["streams"][0]["points"]) == serve.SCORE_HISTORY
    assert len(json.loads(get(server.url + "api/events")[2])) == serve.EVENT_HISTORY


def test_the_network_needs_the_token_on_every_route():
    srv = WebServer("0.0.0.0:0", token="s3cret", streams=1)
    base = f"http://127.0.0.1:{srv.port}"
    try:
        assert srv.url == f"{base}/?token=s3cret" and srv.listening.endswith(
            "(all interfaces); a token is required"
        )
        for route in ("/", "/metrics", "/healthz", "/api/stats", "/stream.mjpg", "/snapshot.jpg"):
            assert get(base + route)[0] == 401, route
        assert get(base + "/metrics?token=wrong")[0] == 401
        assert get(base + "/metrics?token=s3cret")[0] == 200
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
        conn.request("GET", "/api/stats", headers={"Authorization": "Bearer s3cret"})
        assert conn.getresponse().status == 200
        conn.close()
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
        conn.request("GET", "/?token=s3cret")  # the page sets a cookie its own requests then carry
        res = conn.getresponse()
        cookie = res.getheader("Set-Cookie") or ""
        res.read()
        conn.close()
        assert cookie.startswith("edgeanom_token=s3cret") and "HttpOnly" in cookie
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
        conn.request("GET", "/api/events", headers={"Cookie": cookie.split(";")[0]})
        assert conn.getresponse().status == 200
        conn.close()
    finally:
        srv.close()
    generated = WebServer("0.0.0.0:0")
    assert generated.token and len(generated.token) >= 20 and generated.url.endswith(generated.token)
    generated.close()
    open_server = WebServer("0.0.0.0:0", auth=False)
    assert open_server.token is None and "no authentication" in open_server.listening
    open_server.close()


def test_unknown_streams_are_404_and_clients_are_bounded():

    srv = WebServer("127.0.0.1:0", streams=1)
    try:
        assert get(srv.url + "stream.mjpg?stream=7")[0] == 404
        assert get(srv.url + "snapshot.jpg?stream=-1")[0] == 404
        held = []
        for _ in range(serve.MAX_CLIENTS):  # idle connections hold every slot
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
            held.append(s)
        time.sleep(0.3)
        extra = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert extra.recv(64).startswith(b"HTTP/1.1 503")
        extra.close()
        for s in held:
            s.close()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and get(srv.url + "healthz")[0] != 200:
            time.sleep(0.05)
        assert get(srv.url + "healthz")[0] == 200  # slots come back when clients leave
    finally:
        srv.close()


def test_close_ends_open_streams_and_frees_the_port():
    srv = WebServer("127.0.0.1:0")
    srv.write(make_result(0))
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
    conn.request("GET", "/stream.mjpg")
    res = conn.getresponse()
    assert res.status == 200
    t0 = time.monotonic()
    srv.close()
    srv.close()
    assert time.monotonic() - t0 < 5
    res.read()  # returns: the server ended the response
    conn.close()
    WebServer(f"127.0.0.1:{srv.port}").close()  # the port can be bound again


def test_bind_forms_and_errors():
    assert parse_bind(":8080") == ("127.0.0.1", 8080)  # this machine only, unless a host is named
    assert parse_bind("8080") == ("127.0.0.1", 8080)
    assert parse_bind("0.0.0.0:8080") == ("0.0.0.0", 8080)
    assert parse_bind("[::1]:9000") == ("::1", 9000)
    for bad, why in [(":http", "expected"), (":70000", "outside"), ("::1:80", "brackets")]:
        with pytest.raises(EdgeanomError, match=why):
            parse_bind(bad)
    srv = WebServer(":0")
    try:
        assert srv.url == f"http://127.0.0.1:{srv.port}/" and srv.token is None
        assert srv.listening == f"127.0.0.1:{srv.port}"
        assert get(srv.url + "healthz")[0] == 200
        with pytest.raises(EdgeanomError, match=f"cannot listen on 127.0.0.1:{srv.port}"):
            WebServer(f"127.0.0.1:{srv.port}")
    finally:
        srv.close()
    assert free_port() > 0
