"""`RunStats.snapshot()` as Prometheus text exposition format (version 0.0.4), for the web view's `/metrics`.

Counters and per-stream gauges carry a ``stream`` label (``sum()`` them for totals); latency percentiles are
given over all streams (``edgeanom_latency_seconds``) and per stream (``edgeanom_stream_latency_seconds``),
because percentiles cannot be summed. Numeric snapshot fields without a mapping here are exported as
``edgeanom_<field>`` gauges, so new counters show up without touching this file.
"""

from __future__ import annotations

import math
import re
from typing import Any, Optional

from edgeanom._version import __version__

# snapshot key -> (metric name, type, help)
PER_STREAM: dict[str, tuple[str, str, str]] = {
    "frames": ("edgeanom_frames_total", "counter", "Frames or sensor windows scored."),
    "drops": (
        "edgeanom_dropped_frames_total",
        "counter",
        "Stale frames replaced by newer ones before scoring.",
    ),
    "anomalies": ("edgeanom_anomalies_total", "counter", "Alarms raised (alarm start events)."),
    "corrupt": (
        "edgeanom_corrupt_samples_total",
        "counter",
        "Corrupt frames or malformed sensor lines skipped.",
    ),
    "reconnects": (
        "edgeanom_reconnects_total",
        "counter",
        "Times a live source was reopened after dropping out.",
    ),
    "gaps": ("edgeanom_gaps_total", "counter", "Gaps in a stream (source outages)."),
    "drift_events": (
        "edgeanom_drift_events_total",
        "counter",
        "Times the stream drifted away from the training data (adaptive stage drift start events).",
    ),
    "drift": ("edgeanom_drift", "gauge", "1 while the stream is drifted from the training data, else 0."),
    "fps": ("edgeanom_fps", "gauge", "Samples scored per second over the last few seconds."),
    "alarm": ("edgeanom_alarm", "gauge", "1 while the stream is in alarm, else 0."),
    "last_score": ("edgeanom_score", "gauge", "Raw anomaly score of the newest sample."),
}
QUANTILES = {"latency_ms_p50": "0.5", "latency_ms_p99": "0.99"}
LATENCY_HELP = "Capture-to-scored latency percentile over recent samples, in seconds."
GLOBAL: dict[str, tuple[str, str, str]] = {
    "uptime_s": ("edgeanom_uptime_seconds", "gauge", "Seconds since the run started."),
}
_SKIP = {"streams", "backend", *PER_STREAM, *QUANTILES, *GLOBAL}


def render_metrics(snapshot: dict[str, Any], live: Optional[dict[str, dict[str, Any]]] = None) -> str:
    """Render a snapshot (plus optional per-stream ``live`` values such as alarm/last_score) as text."""
    out: list[str] = []
    streams: dict[str, dict[str, Any]] = {
        name: dict(v) for name, v in (snapshot.get("streams") or {}).items()
    }
    for name, values in (live or {}).items():
        merged = streams.setdefault(name, {})
        for key, value in values.items():
            merged.setdefault(key, value)

    _family(
        out,
        "edgeanom_info",
        "gauge",
        "Version and inference backend of this run.",
        [({"version": __version__, "backend": str(snapshot.get("backend") or "")}, 1)],
    )
    for key, (name, kind, help_text) in PER_STREAM.items():
        if streams:
            samples = [({"stream": s}, v[key]) for s, v in streams.items() if key in v]
        else:
            samples = [({}, snapshot[key])] if key in snapshot else []
        _family(out, name, kind, help_text, samples)
    _family(
        out,
        "edgeanom_latency_seconds",
        "gauge",
        LATENCY_HELP,
        [({"quantile": q}, _ms(snapshot[k])) for k, q in QUANTILES.items() if k in snapshot],
    )
    _family(
        out,
        "edgeanom_stream_latency_seconds",
        "gauge",
        LATENCY_HELP + " Per stream.",
        [
            ({"stream": s, "quantile": q}, _ms(v[k]))
            for s, v in streams.items()
            for k, q in QUANTILES.items()
            if k in v
        ],
    )
    for key, (name, kind, help_text) in GLOBAL.items():
        if key in snapshot:
            _family(out, name, kind, help_text, [({}, snapshot[key])])
    for key, value in snapshot.items():
        if key not in _SKIP and isinstance(value, (int, float)):
            _family(
                out,
                "edgeanom_" + re.sub(r"[^a-zA-Z0-9_]", "_", key),
                "gauge",
                f"RunStats field {key!r}.",
                [({}, value)],
            )
    return "\n".join(out) + "\n"


def _family(
    out: list[str], name: str, kind: str, help_text: str, samples: list[tuple[dict[str, str], Any]]
) -> None:
    lines = [f"{name}{_labels(labels)} {_value(v)}" for labels, v in samples if _value(v) is not None]
    if lines:
        out += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", *lines]


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items())
    return "{" + inner + "}"


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _ms(value: Any) -> Any:
    return None if value is None else float(value) / 1000.0


def _value(value: Any) -> Optional[str]:
    if value is None:
        return None
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    f = float(value)
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    return repr(f)
