"""Runner stage timings without a GPU: the TensorRT runner over a fake TensorRT module and a fake CUDA API
(host buffers, a simulated GPU clock, graph capture that records instead of running), and the PyTorch
runner's staged path with fake CUDA events. The real CUDA/TensorRT paths are in test_export_tensorrt.py and
test_bench_gpu.py (skipped without a GPU)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from edgeanom.backends import tensorrt as trt_backend
from edgeanom.errors import EdgeanomError

SAMPLE = (1, 4, 4)
MAX_BATCH = 4
MS_PER_BYTE = 1 / 1024  # simulated copy cost (exact in binary, so timings compare exactly)
ENQUEUE_MS = 2.0
GRAPH_MS = 1.5
PLAN = "fp16-b4-0123456789abcdef.plan"


# --- a fake CUDA runtime: buffers in host memory, a GPU clock advanced by the work on the stream ----------
class FakeEvent:
    def __init__(self) -> None:
        self.t: float | None = None
        self.done = False


class FakeCuda:
    name = "fake-cuda"

    def __init__(self) -> None:
        self.mem: dict[int, np.ndarray] = {}
        self.now = 0.0  # simulated GPU time (ms)
        self.capturing: list[Callable[[], None]] | None = None
        self.events: list[FakeEvent] = []  # live events
        self.pending: list[FakeEvent] = []  # recorded since the last synchronize
        self.graphs_live = 0
        self.streams_live = 0
        self.fail_events = False

    def _new(self, nbytes: int) -> int:
        ptr = 0x1000 * (len(self.mem) + 1)
        self.mem[ptr] = np.zeros(max(int(nbytes), 1), np.uint8)
        return ptr

    def malloc(self, nbytes: int) -> int:
        return self._new(nbytes)

    def free(self, ptr: int) -> None:
        del self.mem[ptr]

    def pinned(self, shape: tuple[int, ...], dtype: np.dtype) -> tuple[np.ndarray, int]:
        count = int(np.prod(shape))
        ptr = self._new(count * np.dtype(dtype).itemsize)
        return self.mem[ptr].view(dtype)[:count].reshape(shape), ptr

    def free_pinned(self, ptr: int) -> None:
        del self.mem[ptr]

    def stream(self) -> str:
        self.streams_live += 1
        return "stream"

    def handle(self, stream: Any) -> int:
        return 7

    def _copy(self, dst: int, src: int, nbytes: int) -> None:
        assert self.capturing is None, "copies are never captured"
        self.mem[dst][:nbytes] = self.mem[src][:nbytes]
        self.now += nbytes * MS_PER_BYTE

    def htod(self, dst: int, src: int, nbytes: int, stream: Any) -> None:
        self._copy(dst, src, nbytes)

    def dtoh(self, dst: int, src: int, nbytes: int, stream: Any) -> None:
        self._copy(dst, src, nbytes)

    def run(self, work: Callable[[], None]) -> None:
        """A kernel launch: recorded into the graph while capturing, else run and charged ENQUEUE_MS."""
        if self.capturing is not None:
            self.capturing.append(work)
            return
        work()
        self.now += ENQUEUE_MS

    def synchronize(self, stream: Any) -> None:
        for ev in self.pending:
            ev.done = True
        self.pending = []

    def capture(self, stream: Any, enqueue: Callable[[], Any]) -> list[Callable[[], None]]:
        self.capturing = []
        try:
            enqueue()
            graph = self.capturing
        finally:
            self.capturing = None
        self.graphs_live += 1
        return graph

    def launch(self, graph: list[Callable[[], None]], stream: Any) -> None:
        for work in graph:
            work()
        self.now += GRAPH_MS

    def destroy_graph(self, graph: Any) -> None:
        self.graphs_live -= 1

    def destroy_stream(self, stream: Any) -> None:
        self.streams_live -= 1

    def event(self) -> FakeEvent:
        if self.fail_events:
            raise EdgeanomError("CUDA error in cudaEventCreate: cudaErrorNotSupported")
        ev = FakeEvent()
        self.events.append(ev)
        return ev

    def record(self, event: FakeEvent, stream: Any) -> None:
        assert self.capturing is None, "an event recorded during capture would become a graph node"
        event.t, event.done = self.now, False
        self.pending.append(event)

    def elapsed_ms(self, start: FakeEvent, end: FakeEvent) -> float:
        if not (start.done and end.done):  # cudaErrorNotReady in real CUDA
            raise EdgeanomError("CUDA error in cudaEventElapsedTime: cudaErrorNotReady")
        assert start.t is not None and end.t is not None
        return end.t - start.t

    def destroy_event(self, event: FakeEvent) -> None:
        self.events.remove(event)


# --- a fake TensorRT: one engine computing reconstruction = 2x and score = mean(x) per sample -------------
class FakeContext:
    def __init__(self, cuda: FakeCuda) -> None:
        self.cuda = cuda
        self.batch = MAX_BATCH
        self.addr: dict[str, int] = {}

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
        if not 1 <= shape[0] <= MAX_BATCH:
            return False
        self.batch = int(shape[0])
        return True

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return (self.batch,) if name == "score" else (self.batch, *SAMPLE)

    def set_tensor_address(self, name: str, ptr: int) -> None:
        self.addr[name] = ptr

    def _compute(self, n: int) -> None:
        size = n * int(np.prod(SAMPLE))
        x = self.cuda.mem[self.addr["input"]].view(np.float32)[:size].reshape(n, -1)
        self.cuda.mem[self.addr["reconstruction"]].view(np.float32)[:size] = (2 * x).ravel()
        self.cuda.mem[self.addr["score"]].view(np.float32)[:n] = x.mean(axis=1)

    def execute_async_v3(self, stream_handle: int) -> bool:
        n = self.batch  # a captured graph keeps the shapes it was captured with
        self.cuda.run(lambda: self._compute(n))
        return True


class FakeEngine:
    names = ("input", "reconstruction", "score")

    def __init__(self, cuda: FakeCuda) -> None:
        self.cuda = cuda
        self.num_io_tensors = len(self.names)

    def get_tensor_name(self, i: int) -> str:
        return self.names[i]

    def get_tensor_mode(self, name: str) -> str:
        return "in" if name == "input" else "out"

    def get_tensor_dtype(self, name: str) -> type:
        return np.float32

    def get_tensor_profile_shape(self, name: str, profile: int) -> list[tuple[int, ...]]:
        return [(1, *SAMPLE), (2, *SAMPLE), (MAX_BATCH, *SAMPLE)]

    def create_execution_context(self) -> FakeContext:
        return FakeContext(self.cuda)


def fake_tensorrt(cuda: FakeCuda) -> Any:
    class Logger:
        WARNING = 2

        def __init__(self, level: int) -> None:
            self.level = level

    class Runtime:
        def __init__(self, logger: Logger) -> None:
            pass

        def deserialize_cuda_engine(self, plan: bytes) -> FakeEngine | None:
            return FakeEngine(cuda) if plan == b"plan" else None

    return SimpleNamespace(
        __version__="10.3.0",
        Logger=Logger,
        Runtime=Runtime,
        TensorIOMode=SimpleNamespace(INPUT="in", OUTPUT="out"),
        nptype=lambda dtype: dtype,
    )


@pytest.fixture
def cuda(monkeypatch: pytest.MonkeyPatch) -> FakeCuda:
    fake = FakeCuda()
    monkeypatch.setattr(trt_backend, "cuda_api", lambda: fake)
    monkeypatch.setattr(trt_backend, "import_tensorrt", lambda: fake_tensorrt(fake))
    return fake


def cached_plan(root: Path, sidecar: bool = True) -> Path:
    """A plan as the engine cache stores it: `<precision>-b<max>-<digest>.plan` plus its sidecar JSON."""
    root.mkdir(parents=True, exist_ok=True)
    plan = root / PLAN
    plan.write_bytes(b"plan")
    if sidecar:
        key = {"tensorrt": "10.3.0", "gpu": "Orin", "compute_capability": "8.7", "precision": "fp16"}
        plan.with_suffix(".json").write_text(json.dumps({"format": 1, "file": PLAN, "key": key}))
    return plan


def batch(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, *SAMPLE), dtype=np.float32)


def copy_ms(n: int) -> tuple[float, float]:
    """Simulated (h2d, d2h) ms for n samples: the input, then the reconstruction and the score."""
    per_sample = int(np.prod(SAMPLE)) * 4
    return n * per_sample * MS_PER_BYTE, (n * per_sample + n * 4) * MS_PER_BYTE


def check_outputs(out: dict[str, np.ndarray], x: np.ndarray) -> None:
    np.testing.assert_array_equal(out["reconstruction"], 2 * x)
    np.testing.assert_allclose(out["score"], x.reshape(len(x), -1).mean(axis=1), rtol=1e-6)


# --- TensorRT runner --------------------------------------------------------------------------------------
def test_tensorrt_runner_times_each_stage_with_events(cuda: FakeCuda, tmp_path: Path) -> None:
    runner = trt_backend.TensorRTRunner(cached_plan(tmp_path / "engines"))
    assert runner.last_timings == {}
    assert runner.precision == "fp16" and runner.engine_cache_key == "fp16-b4-0123456789abcdef"
    assert runner.engine_info is not None and runner.engine_info["key"]["gpu"] == "Orin"
    x = batch(2)
    out = runner.infer(x)
    check_outputs(out, x)
    h2d, d2h = copy_ms(2)
    assert runner.last_timings == {"h2d_ms": h2d, "compute_ms": ENQUEUE_MS, "d2h_ms": d2h}
    runner.close()


def test_tensorrt_graph_replay_is_timed_as_compute(cuda: FakeCuda, tmp_path: Path) -> None:
    runner = trt_backend.TensorRTRunner(cached_plan(tmp_path))
    computes = []
    for seed in range(4):  # 1st: enqueue, 2nd: enqueue + capture, then replays of the graph
        x = batch(3, seed)
        check_outputs(runner.infer(x), x)  # the replayed graph reads this call's input
        computes.append(runner.last_timings["compute_ms"])
    assert computes == [ENQUEUE_MS, ENQUEUE_MS, GRAPH_MS, GRAPH_MS]
    assert cuda.graphs_live == 1
    x = batch(1, 9)  # another batch size: the graph is dropped, plain enqueue again
    check_outputs(runner.infer(x), x)
    assert runner.last_timings["compute_ms"] == ENQUEUE_MS and cuda.graphs_live == 0
    runner.close()


def test_a_failed_enqueue_during_capture_leaves_no_graph(cuda: FakeCuda, tmp_path: Path) -> None:
    runner = trt_backend.TensorRTRunner(cached_plan(tmp_path))
    real = runner.context.execute_async_v3
    runner.infer(batch(3))  # 1st: plain enqueue
    runner.context.execute_async_v3 = lambda h: (
        cuda.capturing is None and real(h)
    )  # fails only while captured
    x = batch(3, 1)
    check_outputs(runner.infer(x), x)  # 2nd: the plain enqueue works; its capture fails and is thrown away
    assert cuda.graphs_live == 0 and runner._graph is None and runner.use_cuda_graphs is False
    x = batch(3, 2)
    check_outputs(runner.infer(x), x)  # later calls enqueue plainly and stay right
    assert runner.last_timings["compute_ms"] == ENQUEUE_MS
    runner.close()


def test_tensorrt_chunks_sum_their_stage_times(cuda: FakeCuda, tmp_path: Path) -> None:
    runner = trt_backend.TensorRTRunner(cached_plan(tmp_path), cuda_graphs=False)
    x = batch(MAX_BATCH + 2)
    check_outputs(runner.infer(x), x)
    (h4, d4), (h2, d2) = copy_ms(MAX_BATCH), copy_ms(2)
    assert runner.last_timings == {"h2d_ms": h4 + h2, "compute_ms": 2 * ENQUEUE_MS, "d2h_ms": d4 + d2}
    empty = runner.infer(batch(0))
    assert empty["score"].shape == (0,)
    assert runner.last_timings == {"h2d_ms": 0.0, "compute_ms": 0.0, "d2h_ms": 0.0}
    with pytest.raises(EdgeanomError, match=r"input batch has shape \(2, 4, 4\)"):
        runner.infer(np.zeros((2, 4, 4), np.float32))
    assert runner.last_timings == {}  # no stale figures from the previous call
    runner.close()


def test_tensorrt_close_destroys_events_and_buffers(cuda: FakeCuda, tmp_path: Path) -> None:
    with trt_backend.TensorRTRunner(cached_plan(tmp_path)) as runner:
        for _ in range(3):
            runner.infer(batch(2))
        assert len(cuda.events) == 4 and cuda.graphs_live == 1
    assert cuda.events == [] and cuda.mem == {} and cuda.graphs_live == 0 and cuda.streams_live == 0
    runner.close()  # twice is fine


def test_tensorrt_timing_off_or_unavailable_leaves_no_timings(
    cuda: FakeCuda, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    plan = cached_plan(tmp_path)
    with trt_backend.TensorRTRunner(plan, stage_timing=False) as runner:
        check_outputs(runner.infer(batch(2)), batch(2))
        assert runner.last_timings == {} and cuda.events == []
    cuda.fail_events = True
    with caplog.at_level("INFO"), trt_backend.TensorRTRunner(plan) as runner:
        check_outputs(runner.infer(batch(2)), batch(2))
        assert runner.last_timings == {}
    assert any("no stage timings" in r.getMessage() for r in caplog.records)


def test_tensorrt_without_sidecar_uses_the_callers_precision(cuda: FakeCuda, tmp_path: Path) -> None:
    plan = cached_plan(tmp_path, sidecar=False)
    with trt_backend.TensorRTRunner(plan, precision="int8") as runner:
        assert runner.precision == "int8" and runner.engine_cache_key is None and runner.engine_info is None
    with trt_backend.TensorRTRunner(plan) as runner:
        assert runner.precision == "unknown"


def test_tensorrt_timings_feed_the_bench(cuda: FakeCuda, tmp_path: Path) -> None:
    from edgeanom.benchmarking.runner import _engine_key, _runner_timings

    with trt_backend.TensorRTRunner(cached_plan(tmp_path)) as runner:
        runner.infer(batch(2))
        h2d, d2h = copy_ms(2)
        assert _runner_timings(runner) == {"h2d": h2d, "compute": ENQUEUE_MS, "d2h": d2h}
        assert _engine_key(runner) == "fp16-b4-0123456789abcdef"


# --- PyTorch runner --------------------------------------------------------------------------------------
@pytest.fixture
def torch() -> Any:
    """torch, with its thread count restored after the test (the runner sets it process-wide)."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    yield torch
    torch.set_num_threads(before)


def doubler(torch: Any, clock: dict[str, float]) -> Any:
    """x -> 2x; each forward pass advances the fake GPU clock by 5 ms (its 'kernel time')."""

    class Doubler(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = torch.nn.Parameter(torch.tensor(2.0))

        def forward(self, x: Any) -> Any:
            clock["now"] += 5.0
            return x * self.scale

    return Doubler().eval()


def test_torch_cpu_defaults_to_one_thread_and_publishes_no_timings(torch: Any) -> None:
    from edgeanom.backends.torch import TorchRunner

    torch.set_num_threads(2)
    runner = TorchRunner(doubler(torch, {"now": 0.0}), "reconstruction")
    assert runner.threads == 1 and torch.get_num_threads() == 1
    x = batch(2)
    np.testing.assert_array_equal(runner.infer(x)["reconstruction"], 2 * x)
    assert runner.last_timings == {}  # host runtime: the bench times the whole call as compute
    assert TorchRunner(doubler(torch, {"now": 0.0}), "reconstruction", threads=2).threads == 2


def test_torch_staged_path_maps_events_to_stages(torch: Any) -> None:
    from edgeanom.backends.torch import CudaStageEvents, TorchRunner

    clock = {"now": 0.0}
    synced = []

    class ClockEvent:
        """A fake CUDA event: record() stamps the clock (and itself costs 0.25 ms)."""

        def record(self) -> None:
            self.t = clock["now"]
            clock["now"] += 0.25

        def synchronize(self) -> None:
            synced.append(self)

        def elapsed_time(self, end: ClockEvent) -> float:
            return end.t - self.t

    runner = TorchRunner(doubler(torch, clock), "reconstruction", device="cpu")
    runner._stages = CudaStageEvents(ClockEvent)  # the CUDA path, with fake events and unpinned buffers
    for n in (3, 1, 3):
        x = batch(n, n)
        np.testing.assert_array_equal(runner.infer(x)["reconstruction"], 2 * x)
        assert runner.last_timings == {"h2d_ms": 0.25, "compute_ms": 5.25, "d2h_ms": 0.25}
    assert len(synced) == 3 and all(ev is runner._stages.events[-1] for ev in synced)  # waited on D2H
    assert runner._staging.numel() == 3 * int(np.prod(SAMPLE))  # staging buffer reused, not regrown
    runner.close()
    assert runner._stages is None


def _torch_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


@pytest.mark.gpu
@pytest.mark.skipif(not _torch_cuda(), reason="needs torch with a CUDA device")
def test_torch_cuda_runner_publishes_event_timings(torch: Any) -> None:
    from edgeanom.backends.torch import TorchRunner

    model = torch.nn.Conv2d(1, 1, 3, padding=1).cuda().eval()
    runner = TorchRunner(model, "reconstruction", device="cuda")
    x = batch(4)
    got = runner.infer(x)["reconstruction"]
    with torch.inference_mode():
        want = model(torch.from_numpy(x).cuda()).cpu().numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert set(runner.last_timings) == {"h2d_ms", "compute_ms", "d2h_ms"}
    assert all(v >= 0 for v in runner.last_timings.values()) and runner.last_timings["compute_ms"] > 0


def test_cuda_python_without_a_usable_driver_falls_back_to_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeanom.engines import cuda as cuda_mod

    def too_new() -> Any:
        raise EdgeanomError("CUDA error in cudaGetDeviceCount: cudaErrorInsufficientDriver")

    monkeypatch.setattr(cuda_mod, "_CudaPython", too_new)
    monkeypatch.setattr(cuda_mod, "_CudaTorch", lambda: "torch-api")
    assert cuda_mod.cuda_api() == "torch-api"

    def no_gpu() -> Any:
        raise EdgeanomError("no CUDA device found (torch.cuda.is_available() is False)")

    monkeypatch.setattr(cuda_mod, "_CudaTorch", no_gpu)
    with pytest.raises(
        EdgeanomError, match=r"cudaErrorInsufficientDriver.*cuda-python>=12,<13.*torch: no CUDA device"
    ):
        cuda_mod.cuda_api()
