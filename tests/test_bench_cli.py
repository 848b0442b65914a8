"""`edgeanom bench` end to end on tiny real bundles (ONNX Runtime on CPU), through Typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from bundle_factory import make_bundle
from edgeanom.benchmarking import runner as bench_runner
from edgeanom.benchmarking.report import validate_report
from edgeanom.cli.main import app

cli = CliRunner()
FAST = ["--warmup-s", "0.1", "--duration-s", "0.3"]


@pytest.fixture(scope="module")
def image_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("bundles") / "image", kind="image", fp16=True)


@pytest.fixture(scope="module")
def bench_run(image_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench")
    args = ["bench", "--model", str(image_bundle), "--backend", "onnxruntime"]
    args += [
        "--precision",
        "fp32",
        "--precision",
        "fp16",
        "--precision",
        "int8",
        "--batch",
        "1",
        "--batch",
        "4",
    ]
    args += [*FAST, "--report", str(out / "r.json"), "--plot", str(out / "r.png")]
    result = cli.invoke(app, args)
    return {"result": result, "json": out / "r.json", "png": out / "r.png"}


def test_bench_runs_every_configuration_and_reports_skips(bench_run: dict[str, Any]) -> None:
    result = bench_run["result"]
    assert result.exit_code == 0, result.output
    assert "int8: only the TensorRT backend builds INT8 engines" in result.output
    doc = json.loads(bench_run["json"].read_text())
    keys = [r["key"] for r in doc["results"]]
    assert keys == [
        "onnxruntime/fp32/b1",
        "onnxruntime/fp32/b4",
        "onnxruntime/fp16/b1",
        "onnxruntime/fp16/b4",
    ]
    assert [s["precision"] for s in doc["skipped"]] == ["int8"]
    assert "onnxruntime" in result.output and "frames/s" in result.output


def test_report_matches_the_schema(bench_run: dict[str, Any]) -> None:
    doc = json.loads(bench_run["json"].read_text())
    validate_report(doc)
    assert doc["schema_version"] == 1
    assert doc["bundle"]["input_shape"] == [1, 32, 32]
    assert doc["settings"]["batches"] == [1, 4]
    assert doc["environment"]["packages"]["onnxruntime"]["version"]


def test_figures_are_consistent(bench_run: dict[str, Any]) -> None:
    doc = json.loads(bench_run["json"].read_text())
    for r in doc["results"]:
        batch = r["config"]["batch"]
        st = r["stages_ms"]
        assert r["frames"] == r["iterations"] * batch
        assert r["iterations"] >= bench_runner.MIN_ITERATIONS
        assert r["throughput_fps"] == pytest.approx(r["frames"] / r["wall_s"])
        # ONNX Runtime on CPU: no transfers, no decode for synthetic frames; latency is the compute time
        assert st["h2d"] is None and st["d2h"] is None and st["decode"] is None
        assert r["device_timing"] == "host"
        assert r["latency_ms"] == st["compute"]
        for stage in ("preprocess", "compute", "infer", "score", "total"):
            assert st[stage]["count"] == r["iterations"], stage
        assert (
            st["total"]["mean"] >= st["preprocess"]["mean"] + st["infer"]["mean"] + st["score"]["mean"] - 1e-6
        )
        assert r["end_to_end_ms"] == st["total"]
        pf = r["per_frame_ms"]["end_to_end"]
        assert pf["p50"] == pytest.approx(st["total"]["p50"] / batch)
        assert len(r["samples_ms"]["end_to_end"]) == r["iterations"]
        assert r["memory"]["peak_rss_mb"] > 0
        assert r["power"] is None  # no tegrastats here
    assert doc["results"][2]["precision_used"] == "fp16"


def test_plot_is_a_real_png(bench_run: dict[str, Any]) -> None:
    data = bench_run["png"].read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    img = cv2.imread(str(bench_run["png"]))
    assert img is not None and img.shape == (528, 1760, 3)
    assert img.std() > 10  # something was drawn


def test_all_backends_skip_what_is_missing(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "window", kind="window")
    result = cli.invoke(app, ["bench", str(bundle), "--backend", "all", "--batch", "2", *FAST])
    assert result.exit_code == 0, result.output
    assert "onnxruntime" in result.output
    out = " ".join(result.output.split())
    assert "torch: bundle has no PyTorch checkpoint" in out
    assert "tensorrt:" in out


def test_vector_bundle_with_power_sampling(tmp_path: Path) -> None:
    """The tegrastats path end to end: a stand-in process prints real Orin Nano lines during the run."""
    import sys

    bundle = make_bundle(tmp_path / "vector", kind="vector", features=8)
    line = (
        "RAM 2639/7620MB (lfb 9x4MB) GR3D_FREQ 0% tj@45.968C VDD_IN 5000mW/5000mW VDD_CPU_GPU_CV 700mW/700mW"
    )
    script = f"import time\nwhile True:\n    print({line!r}, flush=True)\n    time.sleep(0.01)\n"
    plan = bench_runner.BenchPlan(
        bundle_dir=bundle,
        backends=["onnxruntime"],
        batches=[8],
        warmup_s=0.05,
        duration_s=0.3,
        tegrastats_command=[sys.executable, "-c", script],
    )
    doc = bench_runner.run_bench(plan)
    validate_report(doc)
    (r,) = doc["results"]
    p = r["power"]
    assert p is not None and p["samples"] >= 1 and p["input_rail"] == "VDD_IN"
    assert p["input_w"] == pytest.approx(5.0)
    assert p["cpu_gpu_w"] == pytest.approx(0.7)
    assert p["energy_mj_per_frame"] == pytest.approx(5.0 * r["wall_s"] / r["frames"] * 1000)
    assert p["max_temperature_c"] == {"tj": pytest.approx(45.968)}


def test_video_source_times_decoding(tmp_path: Path, image_bundle: Path) -> None:
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    rng = np.random.default_rng(0)
    for _ in range(6):
        writer.write(rng.integers(0, 256, size=(48, 64, 3), dtype=np.uint8))
    writer.release()
    out = tmp_path / "v.json"
    args = ["bench", str(image_bundle), "--backend", "onnxruntime", "--batch", "4", "--source", str(video)]
    result = cli.invoke(app, [*args, *FAST, "--json", str(out)])
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    (r,) = doc["results"]
    assert doc["settings"]["source"] == "video:clip.avi"
    assert r["stages_ms"]["decode"]["count"] == r["iterations"]
    assert r["frames"] > 6  # the 6-frame clip was looped


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batch", "0"], "--batch: expected a positive integer, got '0'"),
        (["--batch", "2", "--batch", "a"], "--batch: expected a positive integer, got 'a'"),
        (["--backend", "cuda"], "--backend: 'cuda' is not one of"),
        (["--precision", "fp64"], "--precision: 'fp64' is not one of"),
        (["--threads", "-1"], "--threads: expected a positive integer, got '-1'"),
        (["--source", "missing.mp4"], "--source: video file 'missing.mp4' not found"),
    ],
)
def test_bad_options_are_one_line_errors(image_bundle: Path, args: list[str], message: str) -> None:
    result = cli.invoke(app, ["bench", str(image_bundle), *args, *FAST])
    assert result.exit_code == 2, result.output
    assert f"error: {message}" in result.output


def test_missing_bundle(tmp_path: Path) -> None:
    result = cli.invoke(app, ["bench", str(tmp_path / "nope"), *FAST])
    assert result.exit_code == 2
    assert "error: no model bundle at" in result.output


def test_sensor_bundle_rejects_a_video_source(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "vec", kind="vector")
    result = cli.invoke(app, ["bench", str(bundle), "--source", "camera", *FAST])
    assert result.exit_code == 2
    assert "need an image bundle" in result.output


def test_interrupt_keeps_what_was_measured(
    image_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = bench_runner.measure_config
    calls = {"n": 0}

    def interrupted_on_second(*args: Any, **kwargs: Any) -> dict[str, Any]:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(bench_runner, "measure_config", interrupted_on_second)
    out = tmp_path / "partial.json"
    args = [
        "bench",
        str(image_bundle),
        "--backend",
        "onnxruntime",
        "--batch",
        "1",
        "--batch",
        "2",
        "--batch",
        "4",
        *FAST,
        "--json",
        str(out),
    ]
    result = cli.invoke(app, args)
    assert result.exit_code == 130, result.output
    doc = json.loads(out.read_text())
    validate_report(doc)
    assert doc["interrupted"] is True
    assert [r["key"] for r in doc["results"]] == ["onnxruntime/fp32/b1"]
