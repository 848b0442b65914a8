"""Capture normal data from a live source for `train --camera/--sensor --duration`.

Uses the same sources as `run` (edgeanom.runtime.sources), so the scene is learned through the exact
capture path it will later be watched through.
"""

from __future__ import annotations

import time
from typing import Any, Optional

import numpy as np

from edgeanom.errors import EdgeanomError


def capture_items(source: Any, duration: Optional[float], max_items: Optional[int]) -> list[Any]:
    """Read items until `duration` seconds pass, `max_items` are read, the stream ends or Ctrl-C.

    Corrupt items are skipped; a live source that drops ends the capture with what was read so far.
    """
    from edgeanom.runtime.sources import NOTHING, CorruptInput, SourceLost

    if duration is None and max_items is None:
        raise EdgeanomError(
            f"{source.name}: give --duration SECONDS or --max-frames N (how much normal data to learn)"
        )
    deadline = time.monotonic() + (float(duration) if duration is not None else float("inf"))
    items: list[Any] = []
    source.open()
    try:
        while time.monotonic() < deadline and (max_items is None or len(items) < max_items):
            try:
                item = source.read()
            except CorruptInput:
                continue
            except SourceLost:
                break
            if item is None:
                break
            if item is NOTHING:
                time.sleep(0.005)
                continue
            items.append(item)
    except KeyboardInterrupt:
        pass  # Ctrl-C ends the capture early; train on what we have
    finally:
        source.close()
    if not items:
        raise EdgeanomError(f"{source.name}: nothing was captured")
    return items


def capture_frames(camera: str, duration: Optional[float], max_frames: Optional[int]) -> list[Any]:
    """BGR frames from a camera (index, URL, GStreamer pipeline or csi:N)."""
    from edgeanom.runtime.sources import CameraSource

    return capture_items(CameraSource(camera), duration, max_frames)


def capture_sensor(spec: str, duration: Optional[float], max_rows: Optional[int]) -> Any:
    """Rows from a live sensor (serial://, mqtt://, or - for stdin) as a DataFrame.

    Lines are parsed by the runtime's RowParser, so a line that `run --sensor` reads one way trains the same
    way: CSV (comma, semicolon or tab; an optional header names the columns) or JSON objects/lists.
    Malformed lines are skipped, as `run` skips them.
    """
    import pandas as pd

    from edgeanom.runtime.sources import CorruptInput, RowParser, sensor_source

    items = capture_items(sensor_source(spec), duration, max_rows)
    parser = RowParser(None)
    rows: list[Any] = []
    for item in items:
        try:
            rows += parser.parse(item)
        except CorruptInput:
            continue
    if not rows:
        raise EdgeanomError(f"sensor {spec}: no numeric rows were captured")
    return pd.DataFrame(np.stack(rows), columns=parser.names)
