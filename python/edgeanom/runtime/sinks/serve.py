"""`--serve [HOST]:PORT`: a small live view over HTTP — annotated MJPEG, score chart, events, Prometheus metrics.

Standard library only (``http.server.ThreadingHTTPServer`` in daemon threads), so it runs on any edge box.
Endpoints:

- ``/`` — the page (static files in ``edgeanom/runtime/web``), polling the JSON endpoints below.
- ``/stream.mjpg?stream=I`` — ``multipart/x-mixed-replace`` JPEG stream of stream I (default 0), at most
  ``max_fps`` frames/s; ``&frames=N`` ends it after N frames. ``/snapshot.jpg?stream=I`` — the latest frame.
- ``/api/streams`` · ``/api/scores`` (recent samples per stream) · ``/api/events`` (newest first) ·
  ``/api/stats`` (``RunStats.snapshot()``).
- ``/metrics`` — Prometheus text exposition format, ``edgeanom_`` names, a ``stream`` label per stream.
- ``/healthz`` — ``{"status": "ok", ...}`` with the age of the newest sample.

Costs stay off the pipeline and bounded: ``write()`` only stores a reference to the newest sample per stream
and appends to fixed-size rings; an encoder thread annotates and JPEG-encodes the newest frame of a stream only
while someone watches it, at most ``max_fps`` times a second, keeping one JPEG per stream. Frames handed to
sinks must not be modified afterwards (the pipeline gives each capture its own array).
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import secrets
import socket
import threading
import time
from collections import deque
from http import HTTPStatus
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any, Optional
from urllib.parse import parse_qs, urlsplit

import cv2

from edgeanom.errors import EdgeanomError
from edgeanom.runtime.annotate import annotate
from edgeanom.runtime.sinks.prometheus import render_metrics
from edgeanom.runtime.sinks.records import dumps, event_record
from edgeanom.runtime.types import SampleResult

COOKIE = "edgeanom_token"
log = logging.getLogger(__name__)

SCORE_HISTORY = 300  # samples per stream kept for the chart
EVENT_HISTORY = 100  # events kept for the list
BOUNDARY = "edgeanom-frame"
_STATIC = {  # path -> (file in edgeanom/runtime/web, content type)
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}


class _Stream:
    """What the server keeps for one stream: the newest sample, its JPEG, recent scores."""

    def __init__(self, stream_id: int, name: str) -> None:
        self.id = stream_id
        self.name = name
        self.latest: Optional[SampleResult] = None  # newest sample with a frame
        self.latest_seq = 0  # bumps on every new frame
        self.jpeg: Optional[bytes] = None
        self.jpeg_seq = 0  # latest_seq the JPEG was made from
        self.jpeg_time = 0.0
        self.watchers = 0  # open MJPEG/snapshot requests wanting fresh JPEGs
        self.scores: deque[list[Any]] = deque(maxlen=SCORE_HISTORY)
        self.last_time = 0.0
        self.flag = False
        self.last_score = float("nan")
        self.frames = 0
        self.anomalies = 0


class WebServer:
    """A Sink serving the live view; starts listening in the constructor, stops in `close()`."""

    def __init__(
        self,
        bind: str,
        stats: Any = None,
        max_fps: float = 15.0,
        jpeg_quality: int = 80,
        *,
        token: Optional[str] = None,
        auth: bool = True,
        streams: Optional[int] = None,
    ) -> None:
        """`bind` as parse_bind takes it (loopback unless a host is named). Off loopback every route needs
        `token` (generated when not given) unless `auth` is False; `streams` bounds the valid stream ids."""
        self.stats = stats
        self.known_streams = streams
        self.max_fps = float(max_fps)
        self.jpeg_quality = int(jpeg_quality)
        self.started = time.time()
        self._streams: dict[int, _Stream] = {}
        self._events: deque[dict[str, Any]] = deque(maxlen=EVENT_HISTORY)
        self._cond = threading.Condition()
        self._closed = False
        host, port = parse_bind(bind)
        server_cls = _Server6 if ":" in host else _Server
        try:
            self._httpd = server_cls((host, port), _make_handler(self))
        except OSError as exc:
            raise EdgeanomError(
                f"--serve {bind}: cannot listen on {host or '*'}:{port} ({exc.strerror})"
            ) from None
        self.host = host
        self.port = int(self._httpd.server_address[1])
        self.token = None if is_loopback(host) or not auth else (token or secrets.token_urlsafe(18))
        shown = "127.0.0.1" if host == "0.0.0.0" else ("::1" if host == "::" else host)
        shown = f"[{shown}]" if ":" in shown else shown
        self.url = f"http://{shown}:{self.port}/" + (f"?token={self.token}" if self.token else "")
        bound = f"[{host}]" if ":" in host else host
        self.listening = (
            f"{bound}:{self.port}"
            + (" (all interfaces)" if host in ("0.0.0.0", "::") else "")
            + (
                "; a token is required"
                if self.token
                else "; no authentication"
                if not is_loopback(host)
                else ""
            )
        )
        self._threads = [
            threading.Thread(
                target=self._httpd.serve_forever,
                kwargs={"poll_interval": 0.1},
                name="edgeanom-http",
                daemon=True,
            ),
            threading.Thread(target=self._encode_loop, name="edgeanom-jpeg", daemon=True),
        ]
        for t in self._threads:
            t.start()

    # --- Sink ----------------------------------------------------------------------------------------
    def write(self, result: SampleResult) -> None:
        with self._cond:
            new = result.stream not in self._streams
            s = self._stream(result.stream, result.stream_name)
            s.scores.append([result.index, result.time, result.score, result.normalised, bool(result.flag)])
            s.last_time = time.time()
            s.flag = bool(result.flag)
            s.last_score = result.score
            s.frames += 1
            for event in result.events:
                self._events.appendleft(event_record(event, result))
                s.anomalies += event.get("type") == "start"
            if result.frame is not None:
                s.latest = result
                s.latest_seq += 1
                if s.watchers or new:
                    self._cond.notify_all()

    def write_event(self, event: dict[str, Any]) -> None:
        if event.get("type") == "summary":  # the run is ending; its figures are on /api/stats already
            return
        with self._cond:
            self._events.appendleft(event_record(event))

    def close(self) -> None:
        """Stop serving: end open MJPEG responses, stop the threads, close the socket; idempotent."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        self._httpd.shutdown()
        self._httpd.server_close()
        for t in self._threads:
            t.join(timeout=5.0)

    # --- state views (used by the handler) ----------------------------------------------------------
    def _stream(self, stream_id: int, name: str) -> _Stream:
        s = self._streams.get(stream_id)
        if s is None:
            s = self._streams[stream_id] = _Stream(stream_id, name)
        return s

    def streams_json(self) -> list[dict[str, Any]]:
        with self._cond:
            return [
                {
                    "id": s.id,
                    "name": s.name,
                    "has_frames": s.latest is not None,
                    "flag": s.flag,
                    "frames": s.frames,
                }
                for s in sorted(self._streams.values(), key=lambda s: s.id)
            ]

    def scores_json(self) -> dict[str, Any]:
        with self._cond:
            threshold = None
            streams = []
            for s in sorted(self._streams.values(), key=lambda s: s.id):
                if s.latest is not None:
                    threshold = s.latest.threshold
                streams.append(
                    {
                        "id": s.id,
                        "name": s.name,
                        "fields": ["index", "time", "score", "normalised", "flag"],
                        "points": list(s.scores),
                    }
                )
            return {"threshold": threshold, "streams": streams}

    def events_json(self) -> list[dict[str, Any]]:
        with self._cond:
            return list(self._events)

    def stats_json(self) -> dict[str, Any]:
        snap = dict(self.stats.snapshot()) if self.stats is not None else self._own_snapshot()
        snap.setdefault("uptime_s", round(time.time() - self.started, 3))
        return snap

    def _own_snapshot(self) -> dict[str, Any]:
        """Counters kept by the server itself, for use without a RunStats."""
        with self._cond:
            streams = {
                s.name: {
                    "frames": s.frames,
                    "anomalies": s.anomalies,
                    "alarm": s.flag,
                    "last_score": s.last_score,
                }
                for s in self._streams.values()
            }
        return {
            "frames": sum(v["frames"] for v in streams.values()),
            "anomalies": sum(v["anomalies"] for v in streams.values()),
            "streams": streams,
        }

    def health_json(self) -> dict[str, Any]:
        with self._cond:
            last = max((s.last_time for s in self._streams.values()), default=0.0)
        return {
            "status": "ok",
            "uptime_s": round(time.time() - self.started, 3),
            "last_sample_age_s": round(time.time() - last, 3) if last else None,
        }

    def metrics_text(self) -> str:
        with self._cond:
            live = {s.name: {"alarm": s.flag, "last_score": s.last_score} for s in self._streams.values()}
        return render_metrics(self.stats_json(), live)

    # --- JPEGs ----------------------------------------------------------------------------------------
    def _encode_loop(self) -> None:
        """Annotate + encode the newest frame of each watched stream, at most max_fps per stream."""
        min_gap = 1.0 / self.max_fps if self.max_fps > 0 else 0.0
        while True:
            with self._cond:
                todo, wait = self._due(min_gap)
                while not todo and not self._closed:
                    self._cond.wait(timeout=wait)
                    todo, wait = self._due(min_gap)
                if self._closed:
                    return
            for s, result, seq in todo:  # encode outside the lock: write() must never wait on this
                jpeg = self._encode(result)
                with self._cond:
                    s.jpeg, s.jpeg_seq, s.jpeg_time = jpeg, seq, time.monotonic()
                    self._cond.notify_all()

    def _due(self, min_gap: float) -> tuple[list[tuple[_Stream, SampleResult, int]], Optional[float]]:
        now = time.monotonic()
        todo, wait = [], None
        for s in self._streams.values():
            if not s.watchers or s.latest is None or s.latest_seq == s.jpeg_seq:
                continue
            ready_in = s.jpeg_time + min_gap - now
            if ready_in <= 0 or s.jpeg is None:
                todo.append((s, s.latest, s.latest_seq))
            else:
                wait = ready_in if wait is None else min(wait, ready_in)
        return todo, wait

    def _encode(self, result: SampleResult) -> Optional[bytes]:
        try:
            image = annotate(result)
            ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
            return buf.tobytes() if ok else None
        except Exception:  # a bad frame must not stop the live view
            log.exception("--serve: cannot annotate/encode frame %s of %s", result.index, result.stream_name)
            return None

    def next_jpeg(self, stream_id: int, after_seq: int, timeout: float) -> tuple[Optional[bytes], int]:
        """Block until stream ``stream_id`` has a JPEG newer than ``after_seq`` (or timeout / close)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            # An unknown id creates nothing (bounded state): wait for the stream to appear.
            while (s := self._streams.get(stream_id)) is None:
                left = deadline - time.monotonic()
                if self._closed or left <= 0:
                    return None, after_seq
                self._cond.wait(timeout=left)
            s.watchers += 1
            self._cond.notify_all()
            try:
                while not self._closed:
                    if s.jpeg is not None and s.jpeg_seq > after_seq:
                        return s.jpeg, s.jpeg_seq
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(timeout=left)
                return None, after_seq
            finally:
                s.watchers -= 1

    def valid_stream(self, stream_id: int) -> bool:
        """A stream id of this run: below the number of sources when known, else one already seen."""
        if stream_id < 0:
            return False
        if self.known_streams is not None:
            return stream_id < self.known_streams
        with self._cond:
            return stream_id in self._streams

    @property
    def closed(self) -> bool:
        return self._closed


def is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


def parse_bind(bind: str) -> tuple[str, int]:
    """``":8080"`` and ``"8080"`` (this machine only: 127.0.0.1), ``"0.0.0.0:8080"`` (all interfaces),
    ``"192.168.1.5:8080"``, ``"[::1]:8080"``, ``":0"`` (any free port)."""
    text = bind.strip()
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = "", text
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise EdgeanomError(f"--serve {bind}: write IPv6 addresses in brackets, e.g. [::1]:8080")
    try:
        port = int(port_text)
    except ValueError:
        raise EdgeanomError(f"--serve {bind}: expected [HOST]:PORT, e.g. :8080 or 127.0.0.1:8080") from None
    if not 0 <= port <= 65535:
        raise EdgeanomError(f"--serve {bind}: port {port} is outside 0-65535")
    return (host or "127.0.0.1"), port


MAX_CLIENTS = 32  # connections served at once; more get 503 at once rather than a thread each
CLIENT_TIMEOUT_S = 30.0  # a client that sends or reads nothing for this long is dropped


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # an open MJPEG response must not keep the process alive
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._slots = threading.BoundedSemaphore(MAX_CLIENTS)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            with contextlib.suppress(OSError):
                request.sendall(
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                )
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class _Server6(_Server):
    address_family = socket.AF_INET6


def _static(name: str) -> bytes:
    return (resources.files("edgeanom.runtime") / "web" / name).read_bytes()


def _make_handler(server: WebServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "edgeanom"
        timeout = CLIENT_TIMEOUT_S  # socket timeout: idle or stalled clients do not hold a thread

        def log_message(self, format: str, *args: Any) -> None:  # quiet: the run's stderr is the status line
            log.debug("%s " + format, self.address_string(), *args)

        def _authorised(self, query: dict[str, str]) -> bool:
            if server.token is None:
                return True
            given = query.get("token") or ""
            auth = self.headers.get("Authorization", "")
            if auth.startswith("Bearer "):
                given = given or auth[7:].strip()
            cookie = SimpleCookie(self.headers.get("Cookie", ""))
            if not given and COOKIE in cookie:
                given = cookie[COOKIE].value
            return hmac.compare_digest(given.encode(), server.token.encode())

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            try:
                if not self._authorised(query):
                    self._send(HTTPStatus.UNAUTHORIZED, b"token required\n", "text/plain; charset=utf-8")
                elif url.path in _STATIC:
                    name, ctype = _STATIC[url.path]
                    self._send(HTTPStatus.OK, _static(name), ctype, set_cookie=bool(query.get("token")))
                elif url.path == "/stream.mjpg":
                    self._mjpeg(_int(query.get("stream"), 0), _int(query.get("frames"), 0))
                elif url.path == "/snapshot.jpg":
                    self._snapshot(_int(query.get("stream"), 0))
                elif url.path == "/metrics":
                    self._send(
                        HTTPStatus.OK,
                        server.metrics_text().encode(),
                        "text/plain; version=0.0.4; charset=utf-8",
                    )
                elif url.path == "/healthz":
                    self._json(server.health_json())
                elif url.path == "/api/streams":
                    self._json(server.streams_json())
                elif url.path == "/api/scores":
                    self._json(server.scores_json())
                elif url.path == "/api/events":
                    self._json(server.events_json())
                elif url.path == "/api/stats":
                    self._json(server.stats_json())
                else:
                    self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8")
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client went away

        def _send(self, status: HTTPStatus, body: bytes, ctype: str, set_cookie: bool = False) -> None:
            self.send_response(status)
            if set_cookie and server.token:  # the page's own requests (API, MJPEG) then carry the token
                self.send_header("Set-Cookie", f"{COOKIE}={server.token}; HttpOnly; SameSite=Strict; Path=/")
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, value: Any) -> None:
            self._send(HTTPStatus.OK, dumps(value).encode(), "application/json")

        def _snapshot(self, stream_id: int) -> None:
            if not server.valid_stream(stream_id):
                self._send(HTTPStatus.NOT_FOUND, b"no such stream\n", "text/plain; charset=utf-8")
                return
            jpeg, _ = server.next_jpeg(stream_id, 0, timeout=5.0)
            if jpeg is None:
                self._send(HTTPStatus.SERVICE_UNAVAILABLE, b"no frame yet\n", "text/plain; charset=utf-8")
            else:
                self._send(HTTPStatus.OK, jpeg, "image/jpeg")

        def _mjpeg(self, stream_id: int, max_frames: int) -> None:
            if not server.valid_stream(stream_id):
                self._send(HTTPStatus.NOT_FOUND, b"no such stream\n", "text/plain; charset=utf-8")
                return
            self.close_connection = True
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Connection", "close")
            self.end_headers()
            seq, sent = 0, 0
            while not server.closed and (max_frames <= 0 or sent < max_frames):
                jpeg, new_seq = server.next_jpeg(stream_id, seq, timeout=1.0)
                if jpeg is None:
                    continue
                seq = new_seq
                head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
                self.wfile.write(head.encode() + jpeg + b"\r\n")
                self.wfile.flush()
                sent += 1
            if max_frames > 0:
                self.wfile.write(f"--{BOUNDARY}--\r\n".encode())

    return Handler


def _int(text: Optional[str], default: int) -> int:
    try:
        return int(text) if text is not None else default
    except ValueError:
        return default
