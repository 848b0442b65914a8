"""Learning from a live source: captures go through the runtime's sources (video file and stdin here)."""

from __future__ import annotations

import io
import sys

import cv2
import numpy as np
import pytest

from edgeanom.errors import EdgeanomError
from edgeanom.train.capture import capture_items, capture_sensor


def _video(path, n=12):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 24))
    for i in range(n):
        writer.write(np.full((24, 32, 3), 10 * i, np.uint8))
    writer.release()
    return path


def test_capture_stops_at_max_items_and_at_end_of_stream(tmp_path):
    from edgeanom.runtime.sources import VideoFileSource

    path = _video(tmp_path / "clip.avi")
    frames = capture_items(VideoFileSource(path), duration=None, max_items=5)
    assert len(frames) == 5 and frames[0].shape == (24, 32, 3)
    assert len(capture_items(VideoFileSource(path), duration=30.0, max_items=None)) == 12
    with pytest.raises(EdgeanomError, match="give --duration SECONDS or --max-frames"):
        capture_items(VideoFileSource(path), duration=None, max_items=None)


class _Flaky:
    """A live-like source: nothing yet, a corrupt item, then frames, then it drops."""

    name = "camera:test"

    def __init__(self):
        from edgeanom.runtime.sources import NOTHING, CorruptInput, SourceLost

        self.script = [
            NOTHING,
            CorruptInput("bad frame"),
            "f1",
            NOTHING,
            "f2",
            SourceLost("unplugged"),
            "never",
        ]
        self.closed = False

    def open(self):
        pass

    def read(self):
        item = self.script.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    def close(self):
        self.closed = True


def test_capture_skips_corrupt_items_and_keeps_frames_when_the_source_drops():
    src = _Flaky()
    assert capture_items(src, duration=10.0, max_items=None) == ["f1", "f2"]
    assert src.closed


def test_capture_sensor_rows_from_stdin(monkeypatch):
    text = "time,a,b\n" + "".join(f"{i},{np.sin(i / 3):.4f},{i % 5}\n" for i in range(50))
    monkeypatch.setattr(sys, "stdin", io.StringIO(text))
    df = capture_sensor("-", duration=10.0, max_rows=None)
    assert list(df.columns) == ["time", "a", "b"] and len(df) == 50
    monkeypatch.setattr(sys, "stdin", io.StringIO('{"a": 1, "b": 2}\n{"a": 3, "b": 4}\n'))
    df = capture_sensor("-", duration=10.0, max_rows=None)
    assert df.to_dict("list") == {"a": [1, 3], "b": [2, 4]}


def test_cli_trains_on_sensor_rows_piped_to_stdin_and_on_a_sensor_file(tmp_path):
    pytest.importorskip("torch")
    from typer.testing import CliRunner

    from edgeanom.bundle import load_bundle
    from edgeanom.cli.main import app

    t = np.arange(300)
    text = "time,a,b\n" + "".join(f"{i},{np.sin(i / 4):.4f},{np.cos(i / 6):.4f}\n" for i in t)
    common = ["--window", "16", "--stride", "4", "--epochs", "2", "--threads", "1", "-q"]
    res = CliRunner().invoke(
        app,
        ["train", "--sensor", "-", "--duration", "30", "--out", str(tmp_path / "live"), *common],
        input=text,
    )
    assert res.exit_code == 0, res.output
    live = load_bundle(tmp_path / "live")
    assert (
        live.input_shape == (16, 2)
        and live.preprocess["columns"] == ["a", "b"]
        and live.preprocess["time_column"] == "time"
    )
    (tmp_path / "pump.csv").write_text(text)
    res = CliRunner().invoke(
        app, ["train", "--sensor", str(tmp_path / "pump.csv"), "--out", str(tmp_path / "file"), *common]
    )
    assert res.exit_code == 0, res.output
    assert load_bundle(tmp_path / "file").meta["data"]["fingerprint"] == live.meta["data"]["fingerprint"]
