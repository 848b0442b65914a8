"""--record: annotated frames go into an mp4 that OpenCV decodes back, with the alarm border on flagged frames."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from _sinks_common import alarm_sequence, make_result
from edgeanom.demo import read_video
from edgeanom.errors import EdgeanomError
from edgeanom.runtime.sinks.record import VideoRecorder

SIZE = (180, 240)  # H, W: large enough that annotate() does not enlarge it


def _decode(path) -> list[np.ndarray]:
    return read_video(path)


def _border_is_red(frame: np.ndarray) -> bool:
    """Mean colour of a strip inside the right-hand border (away from the caption and the score bar)."""
    h, w = frame.shape[:2]
    b, g, r = frame[h // 4 : 3 * h // 4, w - 3 : w - 1].reshape(-1, 3).mean(axis=0)
    return r > 180 and g < 80 and b < 80


def test_recording_plays_back_with_alarm_border(tmp_path):
    out = tmp_path / "run.mp4"
    samples = alarm_sequence(30, start=10, end=20, size=SIZE)
    rec = VideoRecorder(out, fps=25)
    for s in samples:
        rec.write(s)
    rec.close()
    rec.close()  # idempotent

    assert rec.codec == "mp4v"
    assert rec.paths == {0: out}
    frames = _decode(out)
    assert len(frames) == 30
    assert frames[0].shape == (*SIZE, 3)
    red = [_border_is_red(f) for f in frames]
    assert red == [s.flag for s in samples], f"red border per frame {red}"
    cap = cv2.VideoCapture(str(out))
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(25, abs=0.5)
    cap.release()


def test_frames_of_another_size_are_resized_and_streams_get_their_own_file(tmp_path):
    out = tmp_path / "multi.mp4"
    rec = VideoRecorder(out, fps=10)
    for i in range(6):
        rec.write(make_result(i, size=SIZE if i < 3 else (120, 200)))  # stream 0 changes size midway
        rec.write(make_result(i, stream=1, stream_name="camera:1", size=(200, 300)))
    rec.write(make_result(6, with_frame=False))  # a sensor window: nothing to draw
    rec.close()
    rec.write(make_result(7, size=SIZE))  # after close: ignored, no error

    second = tmp_path / "multi.stream1.mp4"
    assert rec.paths == {0: out, 1: second}
    assert rec.frames_written == {0: 6, 1: 6}
    first_frames, second_frames = _decode(out), _decode(second)
    assert [f.shape for f in first_frames] == [(*SIZE, 3)] * 6
    assert [f.shape for f in second_frames] == [(200, 300, 3)] * 6


def test_no_frames_no_file(tmp_path):
    rec = VideoRecorder(tmp_path / "sensor.mp4", fps=10)
    rec.write(make_result(0, with_frame=False))
    rec.close()
    assert not (tmp_path / "sensor.mp4").exists()


def test_small_frames_are_enlarged_consistently(tmp_path):
    rec = VideoRecorder(tmp_path / "small.mp4", fps=10)
    for s in alarm_sequence(5, start=2, end=4, size=(32, 48)):
        rec.write(s)
    rec.close()
    frames = _decode(tmp_path / "small.mp4")
    assert [f.shape for f in frames] == [(160, 240, 3)] * 5  # 32x48 enlarged 5x to reach 160 px


def test_bad_paths_are_reported(tmp_path):
    with pytest.raises(EdgeanomError, match="does not exist"):
        VideoRecorder(tmp_path / "missing" / "out.mp4", fps=10)
    with pytest.raises(EdgeanomError, match=r"\.mp4"):
        VideoRecorder(tmp_path / "out.txt", fps=10)
    (tmp_path / "clip.mp4").mkdir()
    with pytest.raises(EdgeanomError, match=r"clip\.mp4: is a directory"):
        VideoRecorder(tmp_path / "clip.mp4", fps=10)


def test_segments_play_after_a_hard_kill(tmp_path):
    """The process dies without closing anything (os._exit, like kill -9 or a power cut): every finished
    segment plays; only the one being written is lost."""
    import subprocess
    import sys
    import textwrap

    out = tmp_path / "rec.mp4"
    code = textwrap.dedent(
        f"""
        import os, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from _sinks_common import make_result
        from edgeanom.runtime.sinks.record import VideoRecorder
        rec = VideoRecorder({str(out)!r}, fps=10, segment_s=1.0)
        for i in range(35):
            rec.write(make_result(i))
        os._exit(0)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    finished = [out, tmp_path / "rec.0001.mp4", tmp_path / "rec.0002.mp4"]
    assert [len(_decode(p)) for p in finished] == [10, 10, 10]
    assert (tmp_path / "rec.0003.mp4").exists()  # the segment in progress, not finished


def test_one_file_when_segments_are_off_and_the_list_of_segments(tmp_path):
    rec = VideoRecorder(tmp_path / "one.mp4", fps=10, segment_s=0)
    for i in range(25):
        rec.write(make_result(i))
    rec.close()
    assert rec.segments == {0: [tmp_path / "one.mp4"]} and len(_decode(tmp_path / "one.mp4")) == 25
    rec = VideoRecorder(tmp_path / "cut.mp4", fps=10, segment_s=1.0)
    for i in range(25):
        rec.write(make_result(i))
    rec.close()
    assert [p.name for p in rec.segments[0]] == ["cut.mp4", "cut.0001.mp4", "cut.0002.mp4"]
    assert [len(_decode(p)) for p in rec.segments[0]] == [10, 10, 5]
    with pytest.raises(EdgeanomError, match="--record-segment must be >= 0 seconds"):
        VideoRecorder(tmp_path / "x.mp4", fps=10, segment_s=-1)


@pytest.fixture
def tiny_disk(tmp_path):
    """A real 400 KB filesystem (tmpfs), so the disk fills while a recording is written."""
    import shutil
    import subprocess

    mount = tmp_path / "tiny"
    mount.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command: cannot make a small filesystem")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()[:120]}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_full_disk_stops_the_recording_keeps_whole_files_and_says_so(tiny_disk, monkeypatch):
    """The disk fills while a segment is written (the free-space check is told there is room, so the write
    itself fails): that file is removed, the earlier files still play, and close() reports the failure in one
    line (the run goes on scoring until then)."""
    from collections import namedtuple

    import edgeanom.runtime.sinks.record as record

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(record.shutil, "disk_usage", lambda p: usage(1 << 40, 0, 1 << 40))
    warnings: list[str] = []
    noise = np.random.default_rng(0)
    rec = VideoRecorder(tiny_disk / "rec.mp4", fps=10, segment_s=0.5, warn=warnings.append)
    rec.annotator = lambda r: noise.integers(0, 255, (*SIZE, 3), dtype=np.uint8)  # incompressible frames
    for i in range(200):
        rec.write(make_result(i, size=SIZE))
    with pytest.raises(EdgeanomError) as err:
        rec.close()
    message = str(err.value)
    assert (
        message.startswith(f"--record {tiny_disk / 'rec.mp4'}: recording stopped: ") and "\n" not in message
    )
    assert "could not be written (" in message and "MB free on" in message
    assert warnings and warnings[0].endswith("detection goes on")
    kept = rec.segments.get(0, [])
    assert kept and f"the {len(kept)} file(s) before it are complete" in message
    for path in kept:  # every file left on the disk plays to its end
        assert len(_decode(path)) == 5, path
    assert sorted(p.name for p in tiny_disk.iterdir()) == sorted(p.name for p in kept)


def test_too_little_room_for_the_next_segment_stops_before_writing_it(tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    import edgeanom.runtime.sinks.record as record

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(record.shutil, "disk_usage", lambda p: usage(10 << 20, 9 << 20, 1 << 20))
    rec = VideoRecorder(tmp_path / "rec.mp4", fps=10, segment_s=0.5, warn=lambda s: None)
    for i in range(12):
        rec.write(make_result(i, size=SIZE))
    with pytest.raises(
        EdgeanomError, match=r"the next file needs about 8 MB \(1\.0 MB free on .*\); the 1 file"
    ):
        rec.close()
    assert rec.paths == {0: tmp_path / "rec.mp4"} and len(_decode(tmp_path / "rec.mp4")) == 5
    assert shutil.disk_usage is not None
