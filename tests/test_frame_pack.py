"""Frame packing for video models (`--frame-pack`, bundle field preprocess.image.pack).

The packer is checked against a float64 reference of its definition; then a tiny `frame-pred` bundle trained
on a generated moving-pattern video must give the same scores through `edgeanom run`, `evaluate_bundle` and a
hand-written pack -> Preprocessor -> ONNX Runtime -> Scorer loop, and flag an injected object.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any, Optional

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from bundle_factory import preprocess_only_bundle
from edgeanom.bundle import Bundle, load_bundle
from edgeanom.cli.main import app
from edgeanom.demo import read_video, write_video
from edgeanom.errors import EdgeanomError
from edgeanom.preprocess import FramePacker, Preprocessor, pack_sequence

SIZE = 32
SPACING = 2
TRAIN_FRAMES = 128
TEST_FRAMES = 60
ANOMALY = (30, 40)  # [start, end) frames of the test video with an object moving through the scene
TRAIN_ARGS = [
    *("--frame-pack", str(SPACING), "--image-size", str(SIZE), "--param", "width=8"),
    *("--batch-size", "8", "--lr", "0.003", "--threads", "1"),
]


# --- the packer ----------------------------------------------------------------------------------------------
def _reference_pack(grey: list[np.ndarray], spacing: int, count: int = 3) -> list[np.ndarray]:
    """The definition: channel i = grey frame t - i*s (index clamped at 0), newest first; for three frames
    that is (B, G, R) = (t, t - s, t - 2s)."""
    return [
        np.stack([grey[max(t - i * spacing, 0)] for i in range(count)], axis=-1) for t in range(len(grey))
    ]


@pytest.mark.parametrize("spacing", [1, 2, 5])
def test_packer_equals_a_float64_reference(spacing: int) -> None:
    rng = np.random.default_rng(spacing)
    bgr = [rng.integers(0, 256, (12, 10, 3), dtype=np.uint8) for _ in range(17)]
    f64 = [f.astype(np.float64) for f in bgr]
    luma = [0.114 * f[..., 0] + 0.587 * f[..., 1] + 0.299 * f[..., 2] for f in f64]
    packed = pack_sequence(bgr, spacing)
    assert all(p.dtype == np.uint8 and p.shape == (12, 10, 3) for p in packed)
    for got, want in zip(packed, _reference_pack(luma, spacing)):
        assert np.abs(got.astype(np.float64) - want).max() <= 0.51  # luma rounded to uint8

    grey = [rng.integers(0, 256, (12, 10), dtype=np.uint8) for _ in range(17)]
    for count in (2, 3, 8):
        packer = FramePacker(spacing, count)
        for t, (got, want) in enumerate(
            zip((packer.push(g) for g in grey), _reference_pack(grey, spacing, count))
        ):
            np.testing.assert_array_equal(got, want)
            assert packer.warm == (t >= (count - 1) * spacing)


def _image_bundle(tmp_path: Path, image: dict[str, Any]) -> Bundle:
    return preprocess_only_bundle(tmp_path, "frame-pred", [3, 12, 10], image)


def test_preprocessed_channels_run_oldest_to_newest(tmp_path: Path) -> None:
    bundle = _image_bundle(tmp_path, {"size": [12, 10], "color": "rgb", "pack": {"frames": 3, "spacing": 2}})
    pre = Preprocessor(bundle)
    packer = pre.new_packer()
    assert isinstance(packer, FramePacker) and packer.spacing == 2
    rng = np.random.default_rng(7)
    grey = [rng.integers(0, 256, (12, 10), dtype=np.uint8) for _ in range(9)]
    x = pre([packer.push(g) for g in grey])
    for t in range(len(grey)):
        want = np.stack([grey[max(t - 4, 0)], grey[max(t - 2, 0)], grey[t]]).astype(np.float64) / 255.0
        np.testing.assert_allclose(x[t], want, rtol=0, atol=1e-7)
    assert Preprocessor(_image_bundle(tmp_path, {"size": [12, 10], "color": "rgb"})).new_packer() is None

    long = _image_bundle(tmp_path, {"size": [7, 6], "color": "rgb", "pack": {"frames": 8, "spacing": 1}})
    long.meta["input"]["shape"] = [8, 7, 6]
    pre, packer = Preprocessor(long), Preprocessor(long).new_packer()
    assert packer is not None and packer.frames == 8 and pre.image is not None
    x = pre([packer.push(g) for g in grey])  # 12x10 frames shrunk to 7x6 (no exact ratio), channel by channel
    assert x.shape == (9, 8, 7, 6)
    for t in range(len(grey)):
        want = [cv2.resize(grey[max(t - 7 + i, 0)], (6, 7), interpolation=cv2.INTER_AREA) for i in range(8)]
        # OpenCV's many-channel area resize may round a pixel the other way: at most one grey level
        np.testing.assert_allclose(x[t], np.stack(want).astype(np.float64) / 255.0, rtol=0, atol=1.01 / 255)


def test_packer_restarts_on_a_new_frame_size_and_on_reset() -> None:
    packer = FramePacker(1)
    first, second = np.full((8, 8), 10, np.uint8), np.full((8, 8), 20, np.uint8)
    packer.push(first)
    np.testing.assert_array_equal(packer.push(second)[0, 0], [20, 10, 10])
    bigger = np.full((6, 9), 30, np.uint8)  # e.g. a camera that came back at another resolution
    np.testing.assert_array_equal(packer.push(bigger)[0, 0], [30, 30, 30])
    packer.reset()
    np.testing.assert_array_equal(packer.push(second)[0, 0], [20, 20, 20])


def test_bad_pack_specs_are_clear_errors(tmp_path: Path) -> None:
    for spacing in (0, 1.5, "2"):
        with pytest.raises(EdgeanomError, match="spacing must be >= 1"):
            FramePacker(spacing)  # type: ignore[arg-type]
    for frames in (1, 33, 2.5):
        with pytest.raises(EdgeanomError, match=r"frames must be a whole number in \[2, 32\]"):
            FramePacker(2, frames=frames)  # type: ignore[arg-type]
    with pytest.raises(EdgeanomError, match="needs color 'rgb'"):
        Preprocessor(_image_bundle(tmp_path, {"size": [12, 10], "color": "gray", "pack": {"spacing": 1}}))
    with pytest.raises(EdgeanomError, match=r"preprocess\.image\.pack must be"):
        Preprocessor(_image_bundle(tmp_path, {"size": [12, 10], "color": "rgb", "pack": {"frames": 3}}))


# --- a trained frame-pred bundle -----------------------------------------------------------------------------
def _pattern_frames(n: int, seed: int, anomaly: Optional[tuple[int, int]] = None) -> list[np.ndarray]:
    """A grating drifting one pixel per frame (grey stored as BGR), with sensor noise; optionally a bright
    square moving down through frames [start, end)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    frames = []
    for t in range(n):
        v = 128 + 70 * np.sin(2 * np.pi * (xx - t) / 16.0) * np.cos(2 * np.pi * yy / 16.0)
        grey = np.clip(v + rng.normal(0, 2.0, v.shape), 0, 255).astype(np.uint8)
        frame = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
        if anomaly is not None and anomaly[0] <= t < anomaly[1]:
            top = 4 + 2 * (t - anomaly[0])
            frame[top : top + 8, 20:28] = 250
        frames.append(frame)
    return frames


def _decode(video: Path) -> list[np.ndarray]:
    return read_video(video)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import torch

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("frame_pack")
    train_video = write_video(root / "train.avi", _pattern_frames(TRAIN_FRAMES, seed=0), fps=25.0)
    test_video = write_video(root / "test.avi", _pattern_frames(TEST_FRAMES, 1, ANOMALY), fps=25.0)
    out = root / "model"
    result = CliRunner().invoke(
        app,
        ["train", "--video", str(train_video), "--out", str(out), "--epochs", "3", "--quiet", *TRAIN_ARGS],
    )
    assert result.exit_code == 0, result.output
    return {"root": root, "train": train_video, "test": test_video, "bundle": out}


def test_bundle_records_the_packing_and_frame_pred_is_the_default(trained: dict[str, Path]) -> None:
    bundle = load_bundle(trained["bundle"])
    assert bundle.preprocess["image"] == {
        "size": [SIZE, SIZE],
        "color": "rgb",
        "resize": "fast-area",
        "pack": {"frames": 3, "spacing": SPACING},
    }
    assert bundle.model_type == "frame-pred" and bundle.input_shape == (3, SIZE, SIZE)
    assert bundle.meta["data"]["split"] == "temporal"
    # each video's first (3 - 1) * SPACING frames have no past: run gives them no sample, so train learns none
    warmup = 2 * SPACING
    assert bundle.meta["data"]["n_frames"] == TRAIN_FRAMES - warmup
    assert bundle.meta["data"]["n_warmup_frames"] == warmup


def _run_scores(bundle: Path, videos: list[Path], events: Path) -> dict[str, list[dict]]:
    args = ["run", "-m", str(bundle), "--events", str(events), "--batch", "4", "--status-interval", "0"]
    for v in videos:
        args += ["--video", str(v)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    by_stream: dict[str, list[dict]] = {}
    for line in events.read_text().splitlines():
        rec = json.loads(line)
        if rec["kind"] == "sample":
            by_stream.setdefault(rec["stream"], []).append(rec)
    return {k: sorted(v, key=lambda r: r["index"]) for k, v in by_stream.items()}


def _hand_scores(
    bundle_dir: Path, frames: list[np.ndarray], spacing: int = SPACING, count: int = 3
) -> np.ndarray:
    """pack -> Preprocessor -> ONNX Runtime -> Scorer, written out without the library's loops."""
    import onnxruntime as ort

    from edgeanom.scorer import Scorer

    bundle = load_bundle(bundle_dir)
    x = Preprocessor(bundle)(pack_sequence(frames, spacing, count)).copy()
    session = ort.InferenceSession(str(bundle.onnx_path), providers=["CPUExecutionProvider"])
    (recon,) = session.run([bundle.onnx["output"]], {bundle.onnx["input"]: x})
    return np.asarray(Scorer(bundle)(x, {bundle.onnx["output"]: recon}).scores, dtype=np.float64)


def test_run_eval_and_hand_scores_agree_and_the_object_is_flagged(trained: dict[str, Path]) -> None:
    from edgeanom.evaluate.api import evaluate_bundle

    root = trained["root"]
    second = shutil.copy(trained["test"], root / "test_copy.avi")  # a second stream: its own packer
    streams = _run_scores(trained["bundle"], [trained["test"], Path(second)], root / "events.jsonl")
    assert sorted(streams) == ["video:test.avi", "video:test_copy.avi"]
    run = {k: np.array([r["score"] for r in v]) for k, v in streams.items()}

    labels = np.zeros(TEST_FRAMES, dtype=np.int8)
    labels[ANOMALY[0] : ANOMALY[1]] = 1
    report = evaluate_bundle(
        trained["bundle"], trained["test"], labels=labels, report_dir=root / "report", plots=False, threads=1
    )
    with (root / "report" / "scores.csv").open() as fh:
        evaluated = np.array([float(r["score"]) for r in csv.DictReader(fh)])

    frames = _decode(trained["test"])
    assert len(frames) == TEST_FRAMES
    by_hand = _hand_scores(trained["bundle"], frames)
    # run emits no sample until a stream has 2S frames of past (warm-up, like a window model's first window);
    # from then on every frame is scored exactly as eval and the hand loop score it.
    warm = 2 * SPACING
    for name, scores in run.items():
        assert [r["index"] for r in streams[name]] == list(range(warm, TEST_FRAMES))
        np.testing.assert_allclose(scores, by_hand[warm:], rtol=1e-5, atol=1e-9)
    # eval scores what run scores: the warm-up frames are left out and counted
    np.testing.assert_allclose(evaluated, by_hand[warm:], rtol=1e-5, atol=1e-9)
    assert report["data"]["n_warmup"] == warm
    assert report["n_normal"] + report["n_anomalous"] == TEST_FRAMES - warm
    labels_file = root / "labels.txt"
    labels_file.write_text("\n".join(map(str, labels)) + "\n")
    cli = CliRunner().invoke(
        app,
        ["eval", "-m", str(trained["bundle"]), "--data", str(trained["test"]), "--labels", str(labels_file)],
    )
    assert cli.exit_code == 0, cli.output
    assert f"{warm} frames not scored" in " ".join(cli.output.split())
    assert report["auroc"] >= 0.95

    # Every frame with the object is flagged at the bundle's threshold and, once the object has left the packed past, normal frames score far lower.
    by_index = {s["index"]: s for s in streams["video:test.avi"]}
    start, end = ANOMALY
    assert all(by_index[i]["flag"] for i in range(start, end))
    quiet = [s["score"] for i, s in by_index.items() if i < start or i >= end + 2 * SPACING]
    assert min(by_index[i]["score"] for i in range(start, end)) > 3.0 * max(quiet)


def test_eval_of_sequences_shorter_than_the_packing_is_a_clear_error(
    trained: dict[str, Path], tmp_path: Path
) -> None:
    from edgeanom.evaluate.api import evaluate_bundle
    from edgeanom.preprocess import pack_warmup

    warm = pack_warmup(load_bundle(trained["bundle"]).preprocess["image"]["pack"])
    assert warm == 2 * SPACING
    short = write_video(tmp_path / "short.avi", _pattern_frames(warm, seed=3), fps=25.0)
    with pytest.raises(
        EdgeanomError, match=rf"short\.avi: every sequence is shorter .* \({warm} frames of past"
    ):
        evaluate_bundle(trained["bundle"], short, labels=np.zeros(warm, np.int8), plots=False, threads=1)


def test_frames_and_camera_capture_pack_like_the_video_file(
    trained: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In-memory frames (one sequence) and a live capture give the very tensors the video file gave."""
    import edgeanom.runtime.sources as sources
    from edgeanom.train.api import train_bundle

    expected = load_bundle(trained["bundle"]).meta["data"]["fingerprint"]
    frames = _decode(trained["train"])
    from_memory = train_bundle(
        frames=frames,
        out=tmp_path / "memory",
        frame_pack=SPACING,
        image_size=SIZE,
        epochs=1,
        batch_size=8,
        width=8,
        threads=1,
        progress=False,
    )
    assert from_memory.model_type == "frame-pred"
    assert from_memory.preprocess["image"]["pack"] == {"frames": 3, "spacing": SPACING}
    assert from_memory.meta["data"]["fingerprint"] == expected

    class FakeCamera:
        """Delivers the decoded training frames as a camera would, then ends."""

        kind, drop_stale, reconnect, fps = "frames", True, True, None

        def __init__(self, spec: str) -> None:
            self.name, self.last_ref, self._next = f"camera:{spec}", None, 0

        def open(self) -> None:
            self._next = 0

        def read(self) -> Optional[np.ndarray]:
            self._next += 1
            return frames[self._next - 1] if self._next <= len(frames) else None

        def close(self) -> None:
            pass

    monkeypatch.setattr(sources, "CameraSource", FakeCamera)
    out = tmp_path / "camera"
    result = CliRunner().invoke(
        app,
        [
            *("train", "--camera", "fake", "--max-frames", str(TRAIN_FRAMES)),
            *("--out", str(out), "--epochs", "1", "--quiet", *TRAIN_ARGS),
        ],
    )
    assert result.exit_code == 0, result.output
    captured = load_bundle(out)
    assert captured.model_type == "frame-pred"
    assert captured.meta["data"]["fingerprint"] == expected


def test_frame_step_picks_frames_after_packing() -> None:
    """--frame-step keeps every N-th packed frame: the spacing still counts source frames, as in `run`; the
    warm-up frames (positions 0-3 here, no full past yet) give no sample."""
    from edgeanom.train.api import _image_records
    from edgeanom.train.config import build_options

    frames = _pattern_frames(16, seed=3)
    records, ordered, _, _, n_warmup = _image_records(
        frames, None, build_options(frame_pack=SPACING, frame_step=3, max_frames=3)
    )
    kept = list(records)
    assert ordered and [r.position for r in kept] == [6, 9, 12]
    assert n_warmup() == 2 * SPACING
    packed = pack_sequence(frames, SPACING)
    for r in kept:
        np.testing.assert_array_equal(r.frame, packed[r.position])


def test_train_on_videos_shorter_than_the_packing_is_a_one_line_error(tmp_path: Path) -> None:
    from edgeanom.train.api import train_bundle

    short = write_video(tmp_path / "short.avi", _pattern_frames(2 * SPACING, seed=5), fps=25.0)
    with pytest.raises(EdgeanomError, match=r"short\.avi: every sequence is shorter .* \(4 frames of past"):
        train_bundle(data=short, out=tmp_path / "m", frame_pack=SPACING, epochs=1)


def test_frame_pack_option_errors(tmp_path: Path) -> None:
    from edgeanom.train.api import train_bundle

    frames = _pattern_frames(8, seed=4)
    with pytest.raises(EdgeanomError, match="--color rgb"):
        train_bundle(frames=frames, out=tmp_path / "m", frame_pack=1, color="gray", epochs=1)
    with pytest.raises(EdgeanomError, match="packs video frames, but the data are vectors"):
        train_bundle(table=np.zeros((20, 3)), out=tmp_path / "m", frame_pack=1, epochs=1)
    with pytest.raises(EdgeanomError, match="--frame-pack must be >= 1"):
        train_bundle(frames=frames, out=tmp_path / "m", frame_pack=-1, epochs=1)


def test_clip_lstm_reads_the_last_eight_frames_through_train_run_and_export(
    trained: dict[str, Path], tmp_path: Path
) -> None:
    """The video head of the feature models: a longer packed clip, scored at its newest frame."""
    import torch

    from edgeanom.export.pipeline import ExportOptions, export_bundle
    from edgeanom.models.backbones import Backbone

    torch.manual_seed(0)
    weights = tmp_path / "mnv3.pth"
    torch.save(Backbone("mobilenet_v3_small", 3).trunk.state_dict(), weights)
    out = tmp_path / "clip"
    args = ["train", "--video", str(trained["train"]), "--out", str(out), "--model-type", "clip-lstm"]
    args += ["--backbone", "mobilenet_v3_small", "--backbone-weights", str(weights), "--frame-pack", "1"]
    args += ["--image-size", str(SIZE), "--epochs", "2", "--threads", "1", "--quiet"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    bundle = load_bundle(out)
    assert bundle.preprocess["image"]["pack"] == {"frames": 8, "spacing": 1}
    assert bundle.input_shape == (8, SIZE, SIZE) and bundle.onnx["output"] == "score"

    streams = _run_scores(out, [trained["test"]], tmp_path / "events.jsonl")
    run = streams["video:test.avi"]
    assert [r["index"] for r in run] == list(range(7, TEST_FRAMES))  # scored once 7 frames of past exist
    by_hand = _hand_scores(out, _decode(trained["test"]), spacing=1, count=8)
    np.testing.assert_allclose([r["score"] for r in run], by_hand[7:], rtol=1e-5, atol=1e-9)

    # --data frames are packed as the bundle packs them (eight frames, not the default three)
    exported = export_bundle(out, ExportOptions(fp16=True, data=trained["test"]))
    assert "fp16" in exported.files and all(r.ok is not False for r in exported.parity)
    assert any(r.inputs == "data" for r in exported.parity), [r.inputs for r in exported.parity]

    shorter = CliRunner().invoke(app, [*args[:-1], "--pack-frames", "4", "--out", str(tmp_path / "c4"), "-q"])
    assert shorter.exit_code == 0, shorter.output
    assert load_bundle(tmp_path / "c4").input_shape == (4, SIZE, SIZE)
