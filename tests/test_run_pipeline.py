"""`edgeanom run` on real files: video -> ONNX Runtime -> C++ scorer -> alarms -> JSONL / recording.

The bundles are hand-built (`edgeanom.runtime.testing`): the model's "reconstruction" is the expected
background, so a frame's score is its MSE from it, and the frames where anomalies were painted are known.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from edgeanom.cli.main import app
from edgeanom.demo import write_video
from edgeanom.runtime.alarms import AlarmSettings
from edgeanom.runtime.launch import RunOptions, run_stream
from edgeanom.runtime.pipeline import Pipeline, PipelineConfig
from edgeanom.runtime.sources import VideoFileSource
from edgeanom.runtime.testing import ScriptedCamera, image_bundle

SIZE = 32
ANOMALIES = [(20, 26), (41, 44)]  # [start, end) frames with a bright square
FRAMES = 60
BG_VALUE = 90


def _background() -> np.ndarray:
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    bg = np.stack([BG_VALUE + xx, BG_VALUE + yy, np.full_like(xx, BG_VALUE)], axis=-1)
    return bg.astype(np.uint8)


def _frames(n: int = FRAMES, anomalies=ANOMALIES, seed: int = 0, bright: int = 255) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    bg = _background()
    out = []
    for t in range(n):
        f = np.clip(bg + rng.normal(0, 1.5, bg.shape), 0, 255).astype(np.uint8)
        if any(a <= t < b for a, b in anomalies):
            f[8:20, 10:22] = bright
        out.append(f)
    return out


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("scene")
    video = write_video(root / "clip.avi", _frames(), fps=25.0)
    bundle = image_bundle(root / "model", _background(), threshold=0.01, color="rgb")
    return {"root": root, "video": video, "bundle": bundle.path}


def _read_jsonl(path: Path) -> list[dict]:
    text = path.read_text()
    assert text.endswith("\n"), "JSONL must end with a complete line"
    return [json.loads(line) for line in text.splitlines()]


def _alarm_intervals(records: list[dict], stream_id: int = 0) -> list[tuple[int, int]]:
    return [
        (r["start_index"], r["index"])
        for r in records
        if r["kind"] == "event" and r["type"] == "end" and r["stream_id"] == stream_id
    ]


def test_video_end_to_end_events_at_injected_frames_and_recording_decodes(scene: dict[str, Path]) -> None:
    events = scene["root"] / "events.jsonl"
    recording = scene["root"] / "annotated.mp4"
    result = CliRunner().invoke(
        app,
        [
            "run",
            "--model",
            str(scene["bundle"]),
            "--video",
            str(scene["video"]),
            "--events",
            str(events),
            "--record",
            str(recording),
            "--backend",
            "onnxruntime",
            "--status-interval",
            "0",
        ],
    )
    assert result.exit_code == 0, result.output
    records = _read_jsonl(events)
    samples = [r for r in records if r["kind"] == "sample"]
    assert [s["index"] for s in samples] == list(range(FRAMES))
    flagged = [s["index"] for s in samples if s["flag"]]
    expected = [t for a, b in ANOMALIES for t in range(a, b)]
    assert flagged == expected
    assert _alarm_intervals(records) == ANOMALIES
    starts = [r for r in records if r["kind"] == "event" and r["type"] == "start"]
    assert [s["index"] for s in starts] == [a for a, _ in ANOMALIES]
    for s in samples:
        assert set(s) >= {"time", "stream", "index", "score", "normalised", "threshold", "flag", "latency_ms"}
        assert (s["normalised"] > 0.5) == s["flag"]
    summary = records[-1]
    assert (
        summary["kind"] == "summary"
        and summary["frames"] == FRAMES
        and summary["anomalies"] == len(ANOMALIES)
    )
    # The recording decodes back, one annotated frame per input frame.
    cap = cv2.VideoCapture(str(recording))
    decoded = 0
    while cap.read()[0]:
        decoded += 1
    cap.release()
    assert decoded == FRAMES


def test_scores_match_a_float64_reference(scene: dict[str, Path]) -> None:
    """Scores in the JSONL equal MSE(frame/255, background/255) computed in float64 from the decoded video."""
    events = scene["root"] / "parity.jsonl"
    result = CliRunner().invoke(
        app,
        [
            "run",
            "-m",
            str(scene["bundle"]),
            "--video",
            str(scene["video"]),
            "--events",
            str(events),
            "--batch",
            "5",
            "--status-interval",
            "0",
        ],
    )
    assert result.exit_code == 0, result.output
    scores = [r["score"] for r in _read_jsonl(events) if r["kind"] == "sample"]
    cap = cv2.VideoCapture(str(scene["video"]))
    bg = cv2.cvtColor(_background(), cv2.COLOR_BGR2RGB).astype(np.float64) / 255.0
    reference = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB).astype(np.float64) / 255.0
        reference.append(float(np.mean((rgb - bg) ** 2)))
    cap.release()
    np.testing.assert_allclose(scores, reference, rtol=1e-4, atol=1e-7)


def test_stdout_is_jsonl_by_default(scene: dict[str, Path]) -> None:
    result = CliRunner().invoke(
        app,
        [
            "run",
            "-m",
            str(scene["bundle"]),
            "--video",
            str(scene["video"]),
            "--events-only",
            "--max-frames",
            "30",
        ],
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(x) for x in result.stdout.splitlines()]
    assert [x["type"] for x in lines if x["kind"] == "event"] == ["start", "end"]
    assert (
        lines[-1]["kind"] == "summary"
        and lines[-1]["frames"] == 30
        and lines[-1]["stopped_by"] == "max-frames"
    )


class _BatchSpy:
    """Wraps a runner and records each batch's size."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.name = "spy"
        self.sizes: list[int] = []

    def infer(self, batch):
        self.sizes.append(int(batch.shape[0]))
        return self.inner.infer(batch)

    def close(self) -> None:
        self.inner.close()


class _Collect:
    def __init__(self) -> None:
        self.results = []
        self.events = []
        self.closed = 0

    def write(self, result) -> None:
        self.results.append(result)

    def write_event(self, event) -> None:
        self.events.append(event)

    def close(self) -> None:
        self.closed += 1


def test_multi_stream_batches_one_frame_per_stream_and_alarms_per_stream(
    scene: dict[str, Path], tmp_path: Path
) -> None:
    from edgeanom.backends import open_runner
    from edgeanom.bundle import load_bundle

    other = write_video(tmp_path / "other.avi", _frames(50, anomalies=[(5, 9)], seed=3), fps=25.0)
    bundle = load_bundle(scene["bundle"])
    runner = _BatchSpy(open_runner(bundle, "onnxruntime"))
    sink = _Collect()
    sources = [VideoFileSource(scene["video"]), VideoFileSource(other)]
    pipe = Pipeline(bundle, runner, sources, [sink], config=PipelineConfig(batch=1, warmup=False))
    summary = pipe.run()
    assert max(runner.sizes) == 2, "two streams must share batches"
    assert sum(runner.sizes) == FRAMES + 50
    by_stream = {0: [], 1: []}
    for r in sink.results:
        by_stream[r.stream].append(r)
    assert [r.index for r in by_stream[0]] == list(range(FRAMES))
    assert [r.index for r in by_stream[1]] == list(range(50))
    assert [r.index for r in by_stream[1] if r.flag] == [5, 6, 7, 8]
    assert [r.index for r in by_stream[0] if r.flag] == [t for a, b in ANOMALIES for t in range(a, b)]
    assert summary.stats["streams"]["video:other.avi"]["anomalies"] == 1
    assert sink.closed == 1


def test_alarm_options_k_of_n_and_threshold_override(scene: dict[str, Path]) -> None:
    from edgeanom.backends import open_runner
    from edgeanom.bundle import load_bundle

    bundle = load_bundle(scene["bundle"])
    sink = _Collect()
    # k=4 of n=4: the 3-frame anomaly (41..43) is too short to raise an alarm; the 6-frame one starts late.
    pipe = Pipeline(
        bundle,
        open_runner(bundle, "onnxruntime"),
        [VideoFileSource(scene["video"])],
        [sink],
        alarms=AlarmSettings(k=4, n=4),
    )
    pipe.run()
    assert [r.index for r in sink.results if r.flag] == [23, 24, 25]
    sink2 = _Collect()
    Pipeline(
        bundle,
        open_runner(bundle, "onnxruntime"),
        [VideoFileSource(scene["video"])],
        [sink2],
        alarms=AlarmSettings(threshold=1.0),
    ).run()
    assert not any(r.flag for r in sink2.results)
    assert all(r.threshold == 1.0 for r in sink2.results)


def test_corrupt_images_are_skipped_counted_and_reported(scene: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    frames = _frames(6, anomalies=[(3, 4)])
    for i, f in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:03d}.png"), f)
    (folder / "002.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    events = tmp_path / "e.jsonl"
    result = CliRunner().invoke(
        app,
        [
            "run",
            "-m",
            str(scene["bundle"]),
            "--images",
            str(folder),
            "--events",
            str(events),
            "--status-interval",
            "0",
        ],
    )
    assert result.exit_code == 0, result.output
    records = _read_jsonl(events)
    samples = [r for r in records if r["kind"] == "sample"]
    assert [s["index"] for s in samples] == [0, 1, 3, 4, 5]
    assert [s["ref"] for s in samples] == ["000.png", "001.png", "003.png", "004.png", "005.png"]
    assert [s["index"] for s in samples if s["flag"]] == [3]
    assert records[-1]["corrupt"] == 1
    assert records[-1]["corrupt_examples"] == ["images:imgs: 002.png: cannot decode image"]
    assert "002.png: cannot decode image" in result.output


def test_missing_bundle_says_how_to_make_one(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["run", "--model", str(tmp_path / "nope"), "--camera", "0"])
    assert result.exit_code == 2
    assert "edgeanom train --camera 0 --duration 120" in result.output


def test_camera_that_cannot_be_opened_names_it_and_what_was_tried(scene: dict[str, Path]) -> None:
    result = CliRunner().invoke(app, ["run", "-m", str(scene["bundle"]), "--camera", "57"])
    assert result.exit_code == 2
    assert "cannot open camera '57'" in result.output
    assert "device index 57" in result.output
    result = CliRunner().invoke(app, ["run", "-m", str(scene["bundle"]), "--camera", "csi:0"])
    assert result.exit_code == 2
    assert "nvarguscamerasrc" in result.output or "GStreamer" in result.output


def test_no_input_and_wrong_source_kind_are_clear_errors(scene: dict[str, Path], tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["run", "-m", str(scene["bundle"])])
    assert result.exit_code == 2 and "no input" in result.output
    csv = tmp_path / "s.csv"
    csv.write_text("a,b\n1,2\n")
    result = CliRunner().invoke(app, ["run", "-m", str(scene["bundle"]), "--sensor", str(csv)])
    assert result.exit_code == 2 and "takes images" in result.output


def test_live_source_reconnects_with_backoff_and_marks_the_gap(scene: dict[str, Path]) -> None:
    from edgeanom.backends import open_runner
    from edgeanom.bundle import load_bundle

    bundle = load_bundle(scene["bundle"])
    camera = ScriptedCamera(_background(), drop_after=4, failed_reopens=2, after_reconnect=3)
    sink = _Collect()
    pipe = Pipeline(
        bundle,
        open_runner(bundle, "onnxruntime"),
        [camera],
        [sink],
        config=PipelineConfig(backoff_s=(0.01, 0.04)),
    )
    summary = pipe.run()
    kinds = [e["type"] for e in sink.events]
    assert kinds[:2] == ["disconnect", "reconnect"], kinds
    reconnect = sink.events[1]
    assert reconnect["attempts"] == 3 and reconnect["gap_s"] >= 0.01 + 0.02
    assert camera.open_attempts == 4
    assert summary.stats["reconnects"] == 1
    assert 1 <= len(sink.results) <= 7


def test_live_stream_keeps_only_the_newest_frame(scene: dict[str, Path]) -> None:
    """A camera faster than inference: stale frames are dropped and counted, latency does not grow."""
    from edgeanom.backends import open_runner
    from edgeanom.bundle import load_bundle

    bundle = load_bundle(scene["bundle"])
    inner = open_runner(bundle, "onnxruntime")

    class Slow(_BatchSpy):
        def infer(self, batch):
            time.sleep(0.02)
            return super().infer(batch)

    camera = ScriptedCamera(_background(), drop_after=10**9, interval_s=0.001, name="camera:fast")
    sink = _Collect()
    pipe = Pipeline(bundle, Slow(inner), [camera], [sink], config=PipelineConfig(max_frames=15))
    summary = pipe.run()
    assert len(sink.results) == 15
    assert summary.stats["drops"] > 15
    indices = [r.index for r in sink.results]
    assert indices == sorted(indices) and indices[-1] > 30  # frames were skipped, in order
    # Each scored frame waited at most about one inference (20 ms), never a growing queue.
    assert max(r.latency_ms for r in sink.results[3:]) < 1000


def test_stop_from_another_thread_flushes_and_closes(scene: dict[str, Path]) -> None:
    from edgeanom.backends import open_runner
    from edgeanom.bundle import load_bundle

    bundle = load_bundle(scene["bundle"])
    camera = ScriptedCamera(_background(), drop_after=10**9, interval_s=0.002)
    sink = _Collect()
    pipe = Pipeline(bundle, open_runner(bundle, "onnxruntime"), [camera], [sink])
    threading.Timer(0.3, pipe.stop).start()
    summary = pipe.run()
    assert summary.stopped_by == "signal"
    assert sink.closed == 1 and sink.events[-1]["type"] == "summary"
    assert len(sink.results) == summary.stats["frames"] > 0


def test_loop_plays_a_video_again_with_frame_numbers_counting_on(scene: dict[str, Path]) -> None:
    events = scene["root"] / "loop.jsonl"
    opts = RunOptions(
        model=scene["bundle"],
        videos=[scene["video"]],
        events=events,
        status_interval=0,
        install_signal_handlers=False,
        loop=True,
        max_frames=2 * FRAMES + 5,
    )
    run_stream(opts)
    samples = [r for r in _read_jsonl(events) if r["kind"] == "sample"]
    assert [r["index"] for r in samples] == list(range(2 * FRAMES + 5))
    starts = [r["start_index"] for r in _read_jsonl(events) if r["kind"] == "event" and r["type"] == "end"]
    assert starts[: len(ANOMALIES)] == [a for a, _ in ANOMALIES]  # the second pass alarms again, later
    assert any(s >= FRAMES for s in starts)


def test_a_small_video_decodes_on_one_ffmpeg_thread_and_every_frame_arrives(
    scene: dict[str, Path], tmp_path: Path
) -> None:
    """`run` gives each stream its own capture thread, so for small frames FFmpeg's own frame threads are
    switched off (they cost CPU that inference needs); the file still yields every frame, identical to OpenCV's
    default decode. Frames over 640x480 keep FFmpeg's threads (the capture thread limits such a stream)."""
    import cv2

    from edgeanom.demo import read_video
    from edgeanom.runtime.sources.files import DECODE_THREADS

    large = tmp_path / "large.avi"
    writer = cv2.VideoWriter(str(large), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (800, 608))
    for _ in range(3):
        writer.write(np.full((608, 800, 3), 120, np.uint8))
    writer.release()
    big = VideoFileSource(large)
    big.open()
    default = cv2.VideoCapture(str(large), cv2.CAP_FFMPEG)
    assert big._cap.get(cv2.CAP_PROP_N_THREADS) == default.get(cv2.CAP_PROP_N_THREADS)
    default.release()
    assert sum(big.read() is not None for _ in range(4)) == 3
    big.close()

    source = VideoFileSource(scene["video"])
    source.open()
    assert source._cap.get(cv2.CAP_PROP_N_THREADS) == DECODE_THREADS == 1
    ours = []
    while (frame := source.read()) is not None:
        ours.append(frame)
    source.close()
    theirs = read_video(scene["video"])  # OpenCV's default decode
    assert len(ours) == len(theirs) == FRAMES
    assert all(np.array_equal(a, b) for a, b in zip(ours, theirs))
