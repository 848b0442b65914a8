"""SIGTERM / SIGINT in the middle of a run: every output is complete (no partial JSON line, the mp4 plays)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeanom.demo import write_video
from edgeanom.runtime.testing import image_bundle

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def _wait_for_lines(path: Path, count: int, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"run ended early: {proc.communicate()[1]}")
        if path.exists() and path.read_text().count("\n") >= count:
            return
        time.sleep(0.05)
    pytest.fail(f"{path} did not reach {count} lines")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_mid_run_leaves_complete_outputs(tmp_path: Path, sig: signal.Signals) -> None:
    frames = [np.full((32, 32, 3), 80 + (i % 5), np.uint8) for i in range(200)]
    for f in frames[40:60]:
        f[4:12, 4:12] = 255
    video = write_video(tmp_path / "long.avi", frames, fps=50.0)
    bundle = image_bundle(tmp_path / "model", frames[0], threshold=0.01, color="rgb")
    events, recording = tmp_path / "events.jsonl", tmp_path / "out.mp4"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edgeanom.cli.main",
            "run",
            "-m",
            str(bundle.path),
            "--video",
            str(video),
            "--realtime",
            "--events",
            str(events),
            "--record",
            str(recording),
            "--status-interval",
            "0.2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for_lines(events, 50, proc)  # mid-alarm: the start event is out, the end is not yet
    proc.send_signal(sig)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    text = events.read_text()
    assert text.endswith("\n")
    records = [json.loads(line) for line in text.splitlines()]  # every line is complete JSON
    samples = [r for r in records if r["kind"] == "sample"]
    assert 0 < len(samples) < 200
    assert records[-1]["kind"] == "summary" and records[-1]["stopped_by"] == sig.name
    ends = [r for r in records if r["kind"] == "event" and r["type"] == "end"]
    starts = [r for r in records if r["kind"] == "event" and r["type"] == "start"]
    assert len(starts) == len(ends) == 1, "an alarm open at the stop is closed by the flush"
    cap = cv2.VideoCapture(str(recording))
    decoded = 0
    while cap.read()[0]:
        decoded += 1
    cap.release()
    assert decoded == len(samples)
    assert f"finished ({sig.name})" in err
