"""Stream sources named on the command line: cameras, video files, image folders, sensors."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Optional

from edgeanom.errors import EdgeanomError
from edgeanom.runtime.sources.base import NOTHING, CorruptInput, Source, SourceLost
from edgeanom.runtime.sources.camera import CameraSource, csi_pipeline
from edgeanom.runtime.sources.files import ImageFolderSource, VideoFileSource
from edgeanom.runtime.sources.sensors import (
    CsvFileSource,
    MqttSource,
    RowParser,
    SerialSource,
    StdinSource,
    Windower,
)

__all__ = [
    "NOTHING",
    "CameraSource",
    "CorruptInput",
    "CsvFileSource",
    "ImageFolderSource",
    "MqttSource",
    "RowParser",
    "SerialSource",
    "Source",
    "SourceLost",
    "StdinSource",
    "VideoFileSource",
    "Windower",
    "csi_pipeline",
    "make_sources",
    "sensor_source",
]


def sensor_source(spec: str, rate_hz: Optional[float] = None) -> Source:
    """`-` (stdin), `serial://PORT?baud=N`, `mqtt://host:port/topic`, or a CSV file path."""
    spec = str(spec)
    if spec == "-":
        return StdinSource()
    if spec.startswith("serial:"):
        return SerialSource(spec)
    if spec.startswith("mqtt://"):
        return MqttSource(spec)
    if "://" in spec:
        raise EdgeanomError(
            f"sensor '{spec}': expected a CSV file, '-', serial://PORT or mqtt://host:port/topic"
        )
    return CsvFileSource(Path(spec), rate_hz=rate_hz)


def make_sources(
    cameras: Sequence[str] = (),
    videos: Sequence[str | Path] = (),
    images: Sequence[str | Path] = (),
    sensors: Sequence[str] = (),
    *,
    realtime: bool = False,
    rate_hz: Optional[float] = None,
) -> list[Source]:
    """One source per flag, in the order cameras, videos, image folders, sensors (the stream ids)."""
    sources: list[Source] = [CameraSource(c) for c in cameras]
    sources += [VideoFileSource(v, realtime=realtime) for v in videos]
    sources += [ImageFolderSource(d) for d in images]
    if sum(1 for s in sensors if s == "-") > 1:
        raise EdgeanomError("--sensor - (stdin) can be given only once")
    sources += [sensor_source(s, rate_hz) for s in sensors]
    names = [s.name for s in sources]
    for i, name in enumerate(names):
        if name in names[:i]:
            sources[i].name = f"{name}#{i}"  # two streams must never share a name
    return sources
