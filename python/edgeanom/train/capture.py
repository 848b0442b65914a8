"""Capture normal data from a live source for `train --camera/--sensor --duration`.

Uses the same sources as `run` (edgeanom.runtime.sources), so the scene is learned through the exact
capture path it will later be watched through.
"""

from __future__ import annotations

import io
import json
import time
from typing import Any, Optional

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

    CSV lines (with an optional header) and JSON objects keyed by column name are accepted.
    """
    import pandas as pd

    from edgeanom.runtime.sources import sensor_source

    items = capture_items(sensor_source(spec), duration, max_rows)
    lines = [(i.decode("utf-8", "replace") if isinstance(i, bytes) else str(i)).strip() for i in items]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    if not lines:
        raise EdgeanomError(f"sensor {spec}: only empty lines were captured")
    if lines[0][0] in "[{":
        records: list[Any] = []
        for ln in lines:
            try:
                value = json.loads(ln)
            except json.JSONDecodeError:
                continue
            records += value if isinstance(value, list) else [value]
        return pd.DataFrame.from_records(records)
    sep = max((",", ";", "\t"), key=lines[0].count)
    first = lines[0].split(sep)
    header = "infer" if any(_not_number(f) for f in first[1:]) else None
    df = pd.read_csv(io.StringIO("\n".join(lines)), sep=sep, header=header, on_bad_lines="skip")
    if header is None:
        df.columns = [f"c{i}" for i in range(df.shape[1])]
    return df


def _not_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return True
    return False
