"""Stream sources named on the command line: cameras, video files, image folders, sensors (table: registry.py)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Optional

from edgeanom.errors import EdgeanomError
from edgeanom.runtime.sources.base import NOTHING, CorruptInput, Source, SourceLost
from edgeanom.runtime.sources.camera import CameraSource, csi_pipeline
from edgeanom.runtime.sources.files import ImageFolderSource, VideoFileSource
from edgeanom.runtime.sources.registry import INPUTS, sensor_source
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


def make_sources(
    cameras: Sequence[str] = (),
    videos: Sequence[str | Path] = (),
    images: Sequence[str | Path] = (),
    sensors: Sequence[str] = (),
    *,
    realtime: bool = False,
    rate_hz: Optional[float] = None,
    loop: bool = False,
) -> list[Source]:
    """One source per flag, in the order cameras, videos, image folders, sensors (the stream ids)."""
    if sum(1 for s in sensors if s == "-") > 1:
        raise EdgeanomError("--sensor - (stdin) can be given only once")
    sources: list[Source] = []
    for flag, specs in (("camera", cameras), ("video", videos), ("images", images), ("sensor", sensors)):
        sources += [INPUTS[flag].open(spec, realtime=realtime, rate_hz=rate_hz, loop=loop) for spec in specs]
    names = [s.name for s in sources]
    for i, name in enumerate(names):
        if name in names[:i]:
            sources[i].name = f"{name}#{i}"  # two streams must never share a name
    return sources
