"""`--mqtt URL`: alarm events, a periodic status and (optionally) every score, published to an MQTT broker.

URL: ``mqtt://[user:password@]host[:port]/base/topic[?scores=1&client_id=ID]`` (port 1883), or ``mqtts://``
(TLS, port 8883; ``ca=/path/ca.pem`` for a private CA, ``insecure=1`` to skip host-name checks).
Topics under the base (default ``edgeanom``):

- ``<base>/events`` — each alarm start/end and out-of-band event (stream gap, reconnect) as JSON, QoS 1.
- ``<base>/status`` — retained, QoS 1: ``{"state": "online", ...RunStats.snapshot()}`` every
  ``status_interval_s``; ``{"state": "offline", ...}`` on a clean close; the broker publishes
  ``{"state": "offline", "reason": "connection lost"}`` (the last will) if the process dies.
- ``<base>/scores`` — with ``?scores=1``: every sample's scalar fields, QoS 0.
- ``<base>/summary`` — retained, QoS 1: the run's final summary (the ``summary`` event), when it ends.

While the broker is unreachable, paho queues up to ``MAX_QUEUED`` QoS-1 messages and reconnects with backoff;
on close, pending messages get up to ``close_timeout_s`` to be acknowledged.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid
from typing import Any, Optional

from edgeanom.errors import EdgeanomError
from edgeanom.runtime.mqtt_url import DEFAULT_TOPIC, connect_client, parse_mqtt_url  # noqa: F401
from edgeanom.runtime.sinks.records import dumps, event_record, sample_record
from edgeanom.runtime.types import SampleResult

log = logging.getLogger(__name__)

MAX_QUEUED = 10_000  # QoS-1 messages kept while disconnected; beyond this they are counted as dropped
CONNECT_TIMEOUT_S = 5.0


class MqttSink:
    """A Sink publishing to an MQTT broker with paho-mqtt (v2 callback API)."""

    def __init__(
        self,
        url: str,
        stats: Any = None,
        status_interval_s: float = 5.0,
        publish_scores: Optional[bool] = None,
        close_timeout_s: float = 5.0,
    ) -> None:

        self.url = url
        self.stats = stats
        self.status_interval_s = float(status_interval_s)
        self.close_timeout_s = float(close_timeout_s)
        target = parse_mqtt_url(url)
        self.topic = target.topic
        self.publish_scores = bool(target.scores) if publish_scores is None else bool(publish_scores)
        self.dropped = 0  # messages paho refused because its queue was full
        self._pending: set[int] = set()  # mids of QoS-1 messages not yet acknowledged
        self._acked_early: dict[int, float] = {}  # mid -> when its ack arrived before it was registered
        self._cond = threading.Condition()
        self._connected = threading.Event()
        self._connect_error: Optional[str] = None
        self._stop = threading.Event()
        self._closed = False

        client: Any = connect_client(target, f"edgeanom-{uuid.uuid4().hex[:8]}")
        client.will_set(self._t("status"), dumps(_offline("connection lost")), qos=1, retain=True)
        client.max_queued_messages_set(MAX_QUEUED)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.connect_timeout = CONNECT_TIMEOUT_S
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        self._client = client

        where = f"{target.host}:{target.port}"
        try:
            client.connect(target.host, target.port, keepalive=30)
        except (OSError, socket.timeout) as exc:
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise EdgeanomError(f"--mqtt {url}: cannot reach the broker at {where} ({reason})") from None
        client.loop_start()
        if not self._connected.wait(CONNECT_TIMEOUT_S) or self._connect_error:
            client.loop_stop()
            client.disconnect()
            why = self._connect_error or f"no answer within {CONNECT_TIMEOUT_S:g} s"
            raise EdgeanomError(f"--mqtt {url}: the broker at {where} refused the connection ({why})")
        self._publish_status("online")
        self._status_thread = threading.Thread(
            target=self._status_loop, name="edgeanom-mqtt-status", daemon=True
        )
        self._status_thread.start()

    # --- Sink ----------------------------------------------------------------------------------------
    def write(self, result: SampleResult) -> None:
        if self._closed:
            return
        for event in result.events:
            self._publish("events", event_record(event, result), qos=1)
        if self.publish_scores:
            self._publish("scores", sample_record(result), qos=0)

    def write_event(self, event: dict[str, Any]) -> None:
        if self._closed:
            return
        if event.get("type") == "summary":
            self._publish("summary", event_record(event), qos=1, retain=True)
        else:
            self._publish("events", event_record(event), qos=1)

    def close(self) -> None:
        """Publish the final status, wait (bounded) for unacknowledged messages, disconnect; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._status_thread.join(timeout=self.close_timeout_s)
        self._publish_status("offline")
        deadline = time.monotonic() + self.close_timeout_s
        with self._cond:
            while self._pending and time.monotonic() < deadline:
                self._cond.wait(timeout=min(0.1, max(0.0, deadline - time.monotonic())))
            unsent = len(self._pending)
        if unsent:
            log.warning(
                "--mqtt %s: %d message(s) not acknowledged by the broker before closing", self.url, unsent
            )
        self._client.disconnect()  # a clean disconnect: the broker does not publish the last will
        self._client.loop_stop()

    # --- internals -----------------------------------------------------------------------------------
    def _t(self, leaf: str) -> str:
        return f"{self.topic}/{leaf}"

    def _publish(self, leaf: str, payload: dict[str, Any], qos: int, retain: bool = False) -> None:
        # Not under self._cond: paho calls on_publish while holding its own lock, which publish() also takes.
        info = self._client.publish(self._t(leaf), dumps(payload), qos=qos, retain=retain)
        if info.rc == 15:  # MQTT_ERR_QUEUE_SIZE: paho did not keep it
            self.dropped += 1
            return
        if qos == 0:
            return
        with self._cond:
            if self._acked_early.pop(info.mid, None) is None:  # the usual case: the ack comes later
                self._pending.add(info.mid)

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
        with self._cond:
            if mid in self._pending:
                self._pending.discard(mid)
                self._cond.notify_all()
                return
            # A QoS-1 ack that beat _publish to the lock, or a QoS-0 send (never tracked): remember it briefly.
            now = time.monotonic()
            self._acked_early[mid] = now
            if len(self._acked_early) > 1024:
                self._acked_early = {m: t for m, t in self._acked_early.items() if now - t < 10.0}

    def _publish_status(self, state: str) -> None:
        body: dict[str, Any] = {"state": state, "time": time.time()}
        if self.stats is not None:
            body.update(self.stats.snapshot())
        body["mqtt_dropped"] = self.dropped
        self._publish("status", body, qos=1, retain=True)

    def _status_loop(self) -> None:
        while not self._stop.wait(self.status_interval_s):
            try:
                self._publish_status("online")
            except Exception:  # the status must never take the run down
                log.exception("--mqtt: status message failed")

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            self._connect_error = str(reason_code)
            client.disconnect()
        elif self._connected.is_set():
            log.info("--mqtt %s: reconnected", self.url)
        self._connected.set()

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        if not self._closed:
            log.warning("--mqtt %s: disconnected (%s); reconnecting", self.url, reason_code)


def _offline(reason: str) -> dict[str, Any]:
    return {"state": "offline", "reason": reason}
