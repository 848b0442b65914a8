"""A status line on stderr every few seconds: throughput, latency percentiles, drops, alarms.

It runs on its own timer thread, so a stalled camera still shows up as a falling fps instead of silence.
With `echo_events` (events going to a file), alarm starts/ends and stream gaps are also printed briefly.
"""

from __future__ import annotations

import sys
import threading
from typing import Any, Optional, TextIO

from edgeanom.runtime.stats import RunStats
from edgeanom.runtime.types import SampleResult


def status_text(snap: dict[str, Any]) -> str:
    parts = [
        f"{snap['fps']:.1f} fps",
        f"latency p50 {snap['latency_ms_p50']:.1f} ms p99 {snap['latency_ms_p99']:.1f} ms",
        f"frames {snap['frames']}",
        f"drops {snap['drops']}",
        f"events {snap['anomalies']}",
    ]
    if snap.get("corrupt"):
        parts.append(f"corrupt {snap['corrupt']}")
    if snap.get("reconnects"):
        parts.append(f"reconnects {snap['reconnects']}")
    alarms = [name for name, s in snap.get("streams", {}).items() if s.get("alarm")]
    if alarms:
        parts.append("ALARM " + ", ".join(alarms))
    return "edgeanom: " + " | ".join(parts)


def _num(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) else str(value)


def event_text(event: dict[str, Any]) -> Optional[str]:
    kind = event.get("type")
    stream = event.get("stream")
    if kind == "start":
        return f"edgeanom: anomaly START {stream} #{event.get('index')} score {_num(event.get('score'))}"
    if kind == "end":
        return (
            f"edgeanom: anomaly END   {stream} #{event.get('index')} peak {_num(event.get('peak'))} "
            f"at #{event.get('peak_index')} ({event.get('samples')} samples)"
        )
    if kind == "disconnect":
        return f"edgeanom: {stream} lost ({event.get('reason')}); reconnecting"
    if kind == "reconnect":
        return f"edgeanom: {stream} back after {event.get('gap_s')} s"
    return None


class StatusLine:
    def __init__(
        self,
        stats: RunStats,
        interval_s: float = 5.0,
        stream: Optional[TextIO] = None,
        echo_events: bool = False,
    ) -> None:
        self.stats = stats
        self.interval_s = max(0.1, float(interval_s))
        self.echo_events = echo_events
        self._out = stream or sys.stderr
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._tick, name="status", daemon=True)
        self._thread.start()

    def _print(self, text: str) -> None:
        with self._lock:
            try:
                self._out.write(text + "\n")
                self._out.flush()
            except (OSError, ValueError):  # stderr closed: the status line is best effort
                pass

    def _tick(self) -> None:
        while not self._done.wait(self.interval_s):
            self._print(status_text(self.stats.snapshot()))

    def write(self, result: SampleResult) -> None:
        if self.echo_events:
            for event in result.events:
                self.write_event(event)

    def write_event(self, event: dict[str, Any]) -> None:
        if self.echo_events or event.get("type") in ("disconnect", "reconnect"):
            text = event_text(event)
            if text:
                self._print(text)

    def close(self) -> None:
        if not self._done.is_set():
            self._done.set()
            self._thread.join(timeout=1.0)
