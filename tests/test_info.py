"""`edgeanom info` and `edgeanom info --json` on this machine, in-process through Typer's CliRunner."""

from __future__ import annotations

import json
import re

import cv2
import numpy as np
import onnxruntime as ort
from typer.testing import CliRunner

from edgeanom import __version__, environment
from edgeanom.cli.info import info_lines
from edgeanom.cli.main import app

runner = CliRunner()


def test_info_json_has_the_expected_keys_and_real_versions() -> None:
    result = runner.invoke(app, ["info", "--json"])
    assert result.exit_code == 0, result.output
    env = json.loads(result.output)
    for key in (
        "edgeanom",
        "python",
        "cpu",
        "memory",
        "packages",
        "cuda",
        "jetson",
        "scoring",
        "temperatures_c",
    ):
        assert key in env, key
    assert env["edgeanom"] == __version__
    pk = env["packages"]
    assert pk["numpy"] == np.__version__
    assert pk["onnxruntime"]["version"] == ort.__version__
    assert "CPUExecutionProvider" in pk["onnxruntime"]["providers"]
    assert pk["opencv"]["version"] == cv2.__version__
    gst = re.search(r"^\s*GStreamer:\s*YES", cv2.getBuildInformation(), re.MULTILINE) is not None
    assert pk["opencv"]["gstreamer"] is gst
    assert env["cpu"]["cores_logical"] >= 1 and "model" in env["cpu"]
    if not environment.is_jetson():
        assert env["jetson"] is None


def test_info_human_output_names_every_component() -> None:
    result = runner.invoke(app, ["info"])
    assert result.exit_code == 0, result.output
    for label in ("edgeanom", "numpy", "onnxruntime", "opencv", "torch", "tensorrt", "cpu", "scoring core"):
        assert label in result.output, label
    assert "CPUExecutionProvider" in result.output


def test_build_flag_parsing() -> None:
    info = (
        "  Video I/O:\n    GStreamer:                   YES (1.20.3)\n    FFMPEG:                      NO\n"
    )
    assert environment._build_flag(info, "GStreamer") is True
    assert environment._build_flag(info, "FFMPEG") is False
    assert environment._build_flag(info, "NVIDIA CUDA") is None


def test_info_lines_for_a_jetson_with_a_gpu() -> None:
    env = {
        "edgeanom": "0.1.0",
        "python": "3.10.12",
        "platform": "Linux-aarch64",
        "packages": {
            "numpy": "1.26.4",
            "onnxruntime": {
                "version": "1.20.0",
                "providers": ["CUDAExecutionProvider", "CPUExecutionProvider"],
            },
            "opencv": {"version": "4.8.0", "gstreamer": True},
            "torch": {"version": "2.5.0", "cuda_build": "12.6", "cuda_available": True},
            "tensorrt": {"version": "10.3.0"},
        },
        "cuda": {
            "devices": [{"index": 0, "name": "Orin", "memory_total_mb": 7620, "compute_capability": "8.7"}],
            "driver": "540.4.0",
            "cuda_runtime": "12.6",
        },
        "jetson": {
            "module": "NVIDIA Jetson Orin Nano Developer Kit",
            "l4t": "36.4.3",
            "jetpack": "6.2",
            "nvpmodel": {"name": "MAXN_SUPER", "id": 2},
            "jetson_clocks": {"on": False},
        },
        "cpu": {"model": "Cortex-A78AE", "arch": "aarch64", "cores_logical": 6, "cores_usable": 6},
        "scoring": {"compiler": "GCC 11.4", "threads": 6},
    }
    text = "\n".join(f"{k}: {v}" for k, v in info_lines(env))
    assert "opencv: 4.8.0 (GStreamer: yes)" in text
    assert "cuda:0: Orin (7620 MB, sm 8.7), driver 540.4.0, CUDA 12.6" in text
    assert "l4t / jetpack: 36.4.3 / 6.2" in text
    assert "nvpmodel: MAXN_SUPER (id 2)" in text
    assert "jetson_clocks: no" in text
    assert "tensorrt: 10.3.0" in text
    assert "scoring core: GCC 11.4, 6 threads" in text


def test_info_reports_the_backend_source_and_sink_tables() -> None:
    import importlib.util
    import subprocess
    import sys

    from edgeanom.backends.registry import BACKENDS
    from edgeanom.runtime.sinks.registry import SINKS

    env = json.loads(runner.invoke(app, ["info", "--json"]).output)
    backends = {b["name"]: b for b in env["backends"]}
    assert list(backends) == [*BACKENDS, "triton://HOST:PORT/MODEL"]  # the table, then remote Triton
    assert backends["triton://HOST:PORT/MODEL"]["unavailable"] is None  # tritonclient is installed
    assert backends["onnxruntime"]["unavailable"] is None
    if importlib.util.find_spec("tensorrt") is None:
        assert "TensorRT is not installed" in backends["tensorrt"]["unavailable"]
    assert [s["name"] for s in env["sinks"]] == [k.name for k in SINKS]
    assert {"camera", "video", "sensor", "mqtt", "mqtts"} <= {s["name"] for s in env["sources"]}
    # the same view in the human output, through `python -m edgeanom`
    out = subprocess.run(
        [sys.executable, "-m", "edgeanom", "info"], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    assert re.search(r"backends\s+onnxruntime", out) and "outputs" in out
