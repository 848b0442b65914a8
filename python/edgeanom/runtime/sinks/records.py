"""Plain-dict views of samples and events, shared by the MQTT, anomaly and web sinks.

Output is strict JSON: non-finite floats (the +inf score of a non-finite input) become ``null``, so browsers'
``JSON.parse`` and other strict parsers accept every message.
"""

from __future__ import annotations

import json
import time
from typing import Any

from edgeanom.jsonutil import to_jsonable
from edgeanom.runtime.types import SampleResult


def sample_record(result: SampleResult) -> dict[str, Any]:
    """The scalar fields of a SampleResult (no pixels), named as in the JSON Lines ``sample`` lines."""
    record = {
        "time": result.time,
        "stream": result.stream_name,
        "stream_id": result.stream,
        "index": result.index,
        "score": result.score,
        "normalised": result.normalised,
        "threshold": result.threshold,
        "flag": bool(result.flag),
        "latency_ms": result.latency_ms,
    }
    for optional in ("surprise", "smoothed", "ref"):
        value = getattr(result, optional, None)
        if value is not None:
            record[optional] = value
    return record


def event_record(event: dict[str, Any], result: SampleResult | None = None) -> dict[str, Any]:
    """An alarm or out-of-band event with the context a consumer needs to act on it alone.

    The stream name (``stream``) and id (``stream_id``) come from the sample; the sample's time, threshold
    and score are added where the event lacks them. ``kind`` is "event", as in the JSON Lines output.
    """
    out: dict[str, Any] = {"kind": "event"}
    out.update(event)
    if result is not None:
        out.setdefault("time", result.time)
        out["stream_id"] = result.stream
        out["stream"] = result.stream_name
        out.setdefault("threshold", result.threshold)
        out.setdefault("score", result.score)
    out.setdefault("time", time.time())
    return out


def dumps(value: Any) -> str:
    """Compact strict JSON of ``value``."""
    return json.dumps(to_jsonable(value), separators=(",", ":"), allow_nan=False, default=str)
