"""The sink table: which sinks a run's options ask for, in delivery order, and how each is built.

Events go first, so an alarm is on record before anything slower sees it. Adding a sink is one module with a
class that follows `edgeanom.runtime.types.Sink`, plus one `SinkKind` line here. Sink modules are imported
only when their option is set, so a run without MQTT never imports paho.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from edgeanom.runtime.requirements import missing_package, require_packages
from edgeanom.runtime.stats import RunStats
from edgeanom.runtime.types import Sink


@dataclass
class SinkContext:
    """What sinks may need besides the options: run statistics, the sources, a message hook, a stop hook."""

    stats: RunStats
    sources: list[Any]
    say: Callable[[str], None]
    stop: Callable[..., None]


@dataclass(frozen=True)
class SinkKind:
    name: str
    target: str  # "module:Class"
    wanted: Callable[[Any], bool]  # from the run options
    build: Callable[[Any, Any, SinkContext], Sink]  # (class, options, context) -> sink
    needs: tuple[str, ...] = ()

    def unavailable(self) -> str | None:
        return missing_package(self.name, self.needs)

    def create(self, opts: Any, ctx: SinkContext) -> Sink:
        require_packages(self.name, self.needs)
        module, _, cls = self.target.partition(":")
        return self.build(getattr(importlib.import_module(module), cls), opts, ctx)


def _mqtt(cls: Any, opts: Any, ctx: SinkContext) -> Sink:
    sink = cls(opts.mqtt, stats=ctx.stats, status_interval_s=opts.status_interval or 5.0)
    ctx.say(f"publishing events to {opts.mqtt}")
    return sink


def _record(cls: Any, opts: Any, ctx: SinkContext) -> Sink:
    fps = next((s.fps for s in ctx.sources if s.kind == "frames" and s.fps), None) or 25.0
    return cls(Path(opts.record), fps, segment_s=opts.record_segment, warn=ctx.say)


def _serve(cls: Any, opts: Any, ctx: SinkContext) -> Sink:
    server = cls(
        opts.serve, ctx.stats, token=opts.serve_token, auth=not opts.serve_no_auth, streams=len(ctx.sources)
    )
    ctx.say(f"live view: {server.url} (listening on {server.listening})")
    return server


_P = "edgeanom.runtime.sinks."
SINKS: tuple[SinkKind, ...] = (
    SinkKind(
        "events",
        _P + "jsonl:JsonlSink",
        lambda o: o.events is not None or o.events_to_stdout,
        lambda cls, o, _c: cls(o.events, samples=not o.events_only),
    ),
    SinkKind(
        "status",
        _P + "status:StatusLine",
        lambda o: bool(o.status_interval and o.status_interval > 0),
        lambda cls, o, c: cls(c.stats, o.status_interval, echo_events=o.events is not None),
    ),
    SinkKind("mqtt", _P + "mqtt:MqttSink", lambda o: bool(o.mqtt), _mqtt, ("paho",)),
    SinkKind(
        "save-anomalies",
        _P + "anomalies:AnomalySaver",
        lambda o: bool(o.save_anomalies),
        lambda cls, o, _c: cls(Path(o.save_anomalies)),
    ),
    SinkKind("record", _P + "record:VideoRecorder", lambda o: bool(o.record), _record),
    SinkKind("serve", _P + "serve:WebServer", lambda o: bool(o.serve), _serve),
    SinkKind(
        "show",
        _P + "show:ShowWindow",
        lambda o: bool(o.show),
        lambda cls, _o, c: cls(on_quit=lambda: c.stop("quit")),
    ),
)


def describe_sinks() -> list[dict[str, Any]]:
    """Every sink with whether it can run here (for `edgeanom info`)."""
    return [{"name": k.name, "unavailable": k.unavailable()} for k in SINKS]
