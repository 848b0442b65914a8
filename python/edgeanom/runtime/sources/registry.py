"""The source table: each `run` input flag, and each sensor URL scheme, mapped to the class that opens it.

`run`, `train --camera/--sensor`, `bench` and `info` read these tables. Adding a source is one module with a
class that follows `edgeanom.runtime.sources.base.Source`, plus one line here; `unavailable()` says why a
source cannot open on this machine (a missing optional package) before anything starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

from edgeanom.errors import EdgeanomError
from edgeanom.runtime.requirements import missing_package, require_packages
from edgeanom.runtime.sources.base import Source
from edgeanom.runtime.sources.camera import CameraSource
from edgeanom.runtime.sources.files import ImageFolderSource, VideoFileSource
from edgeanom.runtime.sources.sensors import CsvFileSource, MqttSource, SerialSource, StdinSource


@dataclass(frozen=True)
class SourceKind:
    """One entry: how to build the source from the flag's value, and what it needs installed."""

    name: str
    factory: Callable[..., Source]
    needs: tuple[str, ...] = ()  # importable modules
    description: str = ""

    def unavailable(self) -> Optional[str]:
        return missing_package(self.name, self.needs)

    def open(self, spec: Any, **options: Any) -> Source:
        require_packages(self.name, self.needs)
        return self.factory(spec, **options)


def _csv(spec: Any, rate_hz: Optional[float] = None, **_: Any) -> Source:
    from pathlib import Path

    return CsvFileSource(Path(spec), rate_hz=rate_hz)


# Sensor specs by URL scheme ("-" is stdin, a plain path a CSV file).
SENSOR_SCHEMES: dict[str, SourceKind] = {
    s.name: s
    for s in (
        SourceKind("serial", lambda spec, **_: SerialSource(spec), ("serial",), "serial://PORT?baud=N"),
        SourceKind("mqtt", lambda spec, **_: MqttSource(spec), ("paho",), "mqtt://host:port/topic"),
        SourceKind("mqtts", lambda spec, **_: MqttSource(spec), ("paho",), "mqtts://host:port/topic (TLS)"),
    )
}
STDIN = SourceKind("stdin", lambda spec, **_: StdinSource(), (), "- (lines on standard input)")
CSV_FILE = SourceKind("csv", _csv, (), "a CSV file replayed row by row")


def sensor_source(spec: str, rate_hz: Optional[float] = None) -> Source:
    """`-` (stdin), `serial://PORT?baud=N`, `mqtt[s]://host:port/topic`, or a CSV file path."""
    spec = str(spec)
    if spec == "-":
        return STDIN.open(spec)
    scheme, sep, _ = spec.partition("://")
    if spec.startswith("serial:") and not sep:
        scheme, sep = "serial", ":"
    if sep:
        kind = SENSOR_SCHEMES.get(scheme)
        if kind is None:
            raise EdgeanomError(
                f"sensor '{spec}': expected a CSV file, '-', "
                + ", ".join(k.description for k in SENSOR_SCHEMES.values())
            )
        return kind.open(spec)
    return CSV_FILE.open(spec, rate_hz=rate_hz)


# `run` input flags: --camera, --video, --images, --sensor (in this order they become stream ids).
INPUTS: dict[str, SourceKind] = {
    s.name: s
    for s in (
        SourceKind(
            "camera", lambda spec, **_: CameraSource(spec), ("cv2",), "index, URL, GStreamer or csi:N"
        ),
        SourceKind(
            "video",
            lambda spec, realtime=False, loop=False, **_: VideoFileSource(spec, realtime=realtime, loop=loop),
            ("cv2",),
            "a video file",
        ),
        SourceKind("images", lambda spec, **_: ImageFolderSource(spec), ("cv2",), "a folder of images"),
        SourceKind("sensor", lambda spec, rate_hz=None, **_: sensor_source(spec, rate_hz), (), "sensor rows"),
    )
}


def describe_sources() -> list[dict[str, Any]]:
    """Every input and sensor scheme with whether it can open here (for `edgeanom info`)."""
    kinds = [*INPUTS.values(), STDIN, CSV_FILE, *SENSOR_SCHEMES.values()]
    return [{"name": k.name, "description": k.description, "unavailable": k.unavailable()} for k in kinds]
