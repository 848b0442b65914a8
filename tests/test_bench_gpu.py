"""Device-stage timing: runner-published timings and torch on CPU (run here), and the CUDA-event /
TensorRT paths, which skip cleanly on machines without CUDA or TensorRT. The torch runner's own staging
is tested with fake events in test_backends_timing.py."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bundle_factory import make_bundle
from edgeanom.benchmarking.runner import BenchConfig, measure_config, open_backend
from edgeanom.benchmarking.sources import SyntheticSource
from edgeanom.bundle import load_bundle

torch = pytest.importorskip("torch")

HAS_CUDA = bool(torch.cuda.is_available())
HAS_TRT = importlib.util.find_spec("tensorrt") is not None
needs_cuda = pytest.mark.skipif(
    not HAS_CUDA, reason="needs a CUDA device (torch.cuda.is_available() is False)"
)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return load_bundle(make_bundle(tmp_path_factory.mktemp("gpu") / "b", kind="image", size=32))


def _model() -> Any:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 1, 1))


def _torch_runner(device: str) -> Any:
    from edgeanom.backends.torch import TorchRunner

    return TorchRunner(_model().to(device).eval(), "reconstruction", device=device)


class PublishingRunner:
    """Stands in for a TensorRT runner that publishes its own CUDA-event stage times per call."""

    name = "fake-tensorrt"
    precision = "fp16"
    engine_cache_key = "sm87-trt10.3-fp16-b4-abc123"

    def __init__(self) -> None:
        self.output_names = ["reconstruction"]
        self.last_timings: dict[str, float] = {}

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        self.last_timings = {"h2d_ms": 0.25, "compute_ms": 1.5, "d2h_ms": 0.125}
        return {"reconstruction": np.zeros_like(batch)}


def test_runner_published_timings_make_the_latency(bundle: Any) -> None:
    r = measure_config(
        bundle, PublishingRunner(), BenchConfig("tensorrt", "fp16", 4), SyntheticSource(bundle), 0.0, 0.1
    )
    st = r["stages_ms"]
    assert r["device_timing"] == "cuda-events"
    assert (st["h2d"]["p50"], st["compute"]["p50"], st["d2h"]["p50"]) == (0.25, 1.5, 0.125)
    assert r["latency_ms"]["p50"] == pytest.approx(1.875) and r["latency_ms"]["max"] == pytest.approx(1.875)
    assert r["engine_cache_key"] == "sm87-trt10.3-fp16-b4-abc123" and r["precision_used"] == "fp16"


def test_torch_on_cpu_times_the_whole_call_as_compute(bundle: Any) -> None:
    from edgeanom.backends.torch import TorchRunner

    model = torch.nn.Sequential(torch.nn.Conv2d(1, 1, 3, padding=1), torch.nn.Sigmoid()).eval()
    runner = TorchRunner(model, "reconstruction", device="cpu")
    r = measure_config(bundle, runner, BenchConfig("torch", "fp32", 2), SyntheticSource(bundle), 0.0, 0.1)
    assert r["device_timing"] == "host" and r["stages_ms"]["h2d"] is None
    assert r["latency_ms"] == r["stages_ms"]["compute"]
    assert r["runner"] == "torch[cpu]"


@pytest.mark.gpu
@needs_cuda
def test_torch_cuda_runner_publishes_event_timings() -> None:
    runner = _torch_runner("cuda")
    x = np.random.default_rng(0).random((4, 1, 64, 64), dtype=np.float32)
    out = runner.infer(x)["reconstruction"]
    with torch.inference_mode():
        expected = runner.model(torch.from_numpy(x).cuda()).cpu().numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    assert set(runner.last_timings) == {"h2d_ms", "compute_ms", "d2h_ms"}
    assert runner.last_timings["compute_ms"] > 0


@pytest.mark.gpu
@needs_cuda
def test_torch_cuda_runner_is_timed_with_events(bundle: Any) -> None:
    runner = _torch_runner("cuda")
    r = measure_config(bundle, runner, BenchConfig("torch", "fp32", 4), SyntheticSource(bundle), 0.1, 0.3)
    assert r["device_timing"] == "cuda-events"
    assert r["stages_ms"]["h2d"]["count"] == r["iterations"]
    assert r["memory"]["gpu"]["torch_peak_allocated_mb"] > 0


@pytest.mark.tensorrt
@pytest.mark.skipif(not (HAS_TRT and HAS_CUDA), reason="needs TensorRT and a CUDA device")
def test_tensorrt_backend_bench(bundle: Any, tmp_path: Path) -> None:
    runner = open_backend(bundle, BenchConfig("tensorrt", "fp16", 4))
    try:
        r = measure_config(
            bundle, runner, BenchConfig("tensorrt", "fp16", 4), SyntheticSource(bundle), 0.2, 0.5
        )
    finally:
        runner.close()
    assert r["throughput_fps"] > 0 and r["latency_ms"] is not None
