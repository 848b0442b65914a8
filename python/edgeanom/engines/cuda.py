"""CUDA and TensorRT entry points shared by the TensorRT runner and the engine builder.

cuda-python (`cuda.bindings.runtime`, or `cuda.cudart` in older releases) when installed, else torch with CUDA;
`tensorrt_unavailable()` says why the TensorRT path cannot run here. Nothing here imports tensorrt, cuda-python
or torch until a function is called.
"""

from __future__ import annotations

import ctypes
from typing import Any, Optional

import numpy as np

from edgeanom.errors import EdgeanomError

STAGES = ("h2d", "compute", "d2h")  # the event-timed stages of one inference, in stream order

INSTALL_HINT = (
    "install TensorRT's Python bindings: on a desktop GPU `pip install 'edgeanom[trt]'` (tensorrt, cuda-python); "
    "on a Jetson they ship with JetPack (`sudo apt-get install python3-libnvinfer`, then "
    "`pip install 'cuda-python>=12,<13'`)"
)


# --- CUDA: the handful of runtime calls the runner needs -----------------------------------------------------
class _CudaPython:
    """CUDA runtime through cuda-python. Every call returns (error, value...); errors become EdgeanomError."""

    name = "cuda-python"

    def __init__(self) -> None:
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            from cuda import cudart  # cuda-python < 12.6
        self.rt = cudart
        count = self._check(cudart.cudaGetDeviceCount(), "cudaGetDeviceCount")
        if not count:
            raise EdgeanomError("no CUDA device found (cudaGetDeviceCount returned 0)")
        self._check(cudart.cudaSetDevice(0), "cudaSetDevice")

    def _check(self, result: Any, what: str) -> Any:
        err, *rest = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            name = self.rt.cudaGetErrorName(err)[1]
            raise EdgeanomError(f"CUDA error in {what}: {name.decode() if isinstance(name, bytes) else name}")
        return rest[0] if len(rest) == 1 else (tuple(rest) if rest else None)

    def device(self) -> tuple[str, str]:
        prop = self._check(self.rt.cudaGetDeviceProperties(0), "cudaGetDeviceProperties")
        name = prop.name.decode(errors="replace") if isinstance(prop.name, bytes) else str(prop.name)
        return name.rstrip("\x00").strip(), f"{prop.major}.{prop.minor}"

    def malloc(self, nbytes: int) -> int:
        return int(self._check(self.rt.cudaMalloc(max(int(nbytes), 1)), "cudaMalloc"))

    def free(self, ptr: int) -> None:
        self.rt.cudaFree(ptr)

    def pinned(self, shape: tuple[int, ...], dtype: np.dtype) -> tuple[np.ndarray, int]:
        nbytes = max(int(np.prod(shape)) * np.dtype(dtype).itemsize, 1)
        ptr = int(self._check(self.rt.cudaMallocHost(nbytes), "cudaMallocHost"))
        raw = (ctypes.c_byte * nbytes).from_address(ptr)
        return np.frombuffer(raw, dtype=dtype, count=int(np.prod(shape))).reshape(shape), ptr

    def free_pinned(self, ptr: int) -> None:
        self.rt.cudaFreeHost(ptr)

    def stream(self) -> Any:
        return self._check(self.rt.cudaStreamCreate(), "cudaStreamCreate")

    def handle(self, stream: Any) -> int:
        return int(stream)

    def htod(self, dst: int, src: int, nbytes: int, stream: Any) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._check(self.rt.cudaMemcpyAsync(dst, src, nbytes, kind, stream), "cudaMemcpyAsync")

    def dtoh(self, dst: int, src: int, nbytes: int, stream: Any) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._check(self.rt.cudaMemcpyAsync(dst, src, nbytes, kind, stream), "cudaMemcpyAsync")

    def synchronize(self, stream: Any) -> None:
        self._check(self.rt.cudaStreamSynchronize(stream), "cudaStreamSynchronize")

    def capture(self, stream: Any, enqueue: Any) -> Any:
        """Record `enqueue()` on `stream` into an instantiated CUDA graph."""
        mode = self.rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        self._check(self.rt.cudaStreamBeginCapture(stream, mode), "cudaStreamBeginCapture")
        try:
            enqueue()
        finally:
            graph = self._check(self.rt.cudaStreamEndCapture(stream), "cudaStreamEndCapture")
        try:
            return self._check(self.rt.cudaGraphInstantiate(graph, 0), "cudaGraphInstantiate")
        finally:
            self.rt.cudaGraphDestroy(graph)

    def launch(self, graph: Any, stream: Any) -> None:
        self._check(self.rt.cudaGraphLaunch(graph, stream), "cudaGraphLaunch")

    def destroy_graph(self, graph: Any) -> None:
        self.rt.cudaGraphExecDestroy(graph)

    def destroy_stream(self, stream: Any) -> None:
        self.rt.cudaStreamDestroy(stream)

    def event(self) -> Any:
        """A CUDA event with timing enabled (cudaEventDefault)."""
        return self._check(self.rt.cudaEventCreate(), "cudaEventCreate")

    def record(self, event: Any, stream: Any) -> None:
        self._check(self.rt.cudaEventRecord(event, stream), "cudaEventRecord")

    def elapsed_ms(self, start: Any, end: Any) -> float:
        """GPU time between two completed events (cudaErrorNotReady until both ran)."""
        return float(self._check(self.rt.cudaEventElapsedTime(start, end), "cudaEventElapsedTime"))

    def destroy_event(self, event: Any) -> None:
        self.rt.cudaEventDestroy(event)


class _CudaTorch:
    """The same calls through torch's CUDA allocator and streams (when cuda-python is not installed)."""

    name = "torch"

    def __init__(self) -> None:
        import torch

        if not torch.cuda.is_available():
            raise EdgeanomError("no CUDA device found (torch.cuda.is_available() is False)")
        self.torch = torch
        self._keep: dict[int, Any] = {}  # ptr -> tensor, so memory lives until freed

    def device(self) -> tuple[str, str]:
        p = self.torch.cuda.get_device_properties(0)
        return p.name, f"{p.major}.{p.minor}"

    def malloc(self, nbytes: int) -> int:
        t = self.torch.empty(max(int(nbytes), 1), dtype=self.torch.uint8, device="cuda")
        self._keep[t.data_ptr()] = t
        return int(t.data_ptr())

    def free(self, ptr: int) -> None:
        self._keep.pop(ptr, None)

    def pinned(self, shape: tuple[int, ...], dtype: np.dtype) -> tuple[np.ndarray, int]:
        nbytes = max(int(np.prod(shape)) * np.dtype(dtype).itemsize, 1)
        t = self.torch.empty(nbytes, dtype=self.torch.uint8, pin_memory=True)
        self._keep[t.data_ptr()] = t
        arr = t.numpy().view(dtype)[: int(np.prod(shape))].reshape(shape)
        return arr, int(t.data_ptr())

    def free_pinned(self, ptr: int) -> None:
        self._keep.pop(ptr, None)

    def stream(self) -> Any:
        return self.torch.cuda.Stream()

    def handle(self, stream: Any) -> int:
        return int(stream.cuda_stream)

    def _copy(self, dst: int, src: int, nbytes: int, stream: Any) -> None:
        """Copy the first `nbytes` between two buffers this object allocated (looked up by base address)."""
        with self.torch.cuda.stream(stream):
            self._keep[dst][:nbytes].copy_(self._keep[src][:nbytes], non_blocking=True)

    def htod(self, dst: int, src: int, nbytes: int, stream: Any) -> None:
        self._copy(dst, src, nbytes, stream)

    def dtoh(self, dst: int, src: int, nbytes: int, stream: Any) -> None:
        self._copy(dst, src, nbytes, stream)

    def synchronize(self, stream: Any) -> None:
        stream.synchronize()

    def capture(self, stream: Any, enqueue: Any) -> Any:
        graph = self.torch.cuda.CUDAGraph()
        with self.torch.cuda.graph(graph, stream=stream):
            enqueue()
        return graph

    def launch(self, graph: Any, stream: Any) -> None:
        with self.torch.cuda.stream(stream):
            graph.replay()

    def destroy_graph(self, graph: Any) -> None:
        del graph

    def destroy_stream(self, stream: Any) -> None:
        del stream

    def event(self) -> Any:
        return self.torch.cuda.Event(enable_timing=True)

    def record(self, event: Any, stream: Any) -> None:
        event.record(stream)

    def elapsed_ms(self, start: Any, end: Any) -> float:
        return float(start.elapsed_time(end))

    def destroy_event(self, event: Any) -> None:
        del event  # torch destroys the CUDA event with the Python object


def cuda_api() -> Any:
    """cuda-python when it works, else torch with CUDA; a clear error when neither can reach a GPU.

    cuda-python that cannot talk to the driver (cuda-python 13 needs driver R580+, JetPack 6's is older:
    cudaErrorInsufficientDriver) is treated like a missing one, so torch gets its chance."""
    why = "cuda-python is not installed"
    try:
        return _CudaPython()
    except ImportError:
        pass
    except EdgeanomError as exc:
        why = f"cuda-python cannot use the GPU ({exc}; JetPack 6 needs cuda-python 12: pip install 'cuda-python>=12,<13')"
    try:
        return _CudaTorch()
    except ImportError:
        torch_why = "torch is not installed"
    except EdgeanomError as exc:
        torch_why = f"torch: {exc}"
    raise EdgeanomError(
        f"the TensorRT runner needs cuda-python or torch with CUDA for GPU memory and streams: {why}; {torch_why}"
    )


def import_tensorrt() -> Any:
    try:
        import tensorrt
    except ImportError:
        raise EdgeanomError(f"TensorRT is not installed: {INSTALL_HINT}") from None
    return tensorrt


def tensorrt_major(trt: Any) -> int:
    return int(str(trt.__version__).split(".")[0])


class StageEvents:
    """Four CUDA events on one stream bounding H2D, compute and D2H: mark(i) records boundary i."""

    def __init__(self, cuda: Any, stream: Any) -> None:
        self.cuda = cuda
        self.stream = stream
        self.events: list[Any] = []
        try:
            for _ in range(len(STAGES) + 1):
                self.events.append(cuda.event())
        except BaseException:
            self.close()
            raise

    def mark(self, i: int) -> None:
        self.cuda.record(self.events[i], self.stream)

    def elapsed_ms(self) -> dict[str, float]:
        """Stage times of the last marked inference; call after the stream was synchronized."""
        ev = self.events
        return {f"{name}_ms": self.cuda.elapsed_ms(ev[i], ev[i + 1]) for i, name in enumerate(STAGES)}

    def close(self) -> None:
        for event in self.events:
            self.cuda.destroy_event(event)
        self.events = []


def tensorrt_unavailable() -> Optional[str]:
    """Why the TensorRT backend cannot run here, or None when it can (TensorRT and a CUDA device present)."""
    import importlib.util

    if importlib.util.find_spec("tensorrt") is None:
        return "TensorRT is not installed"
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart  # older cuda-python
        except ImportError:
            return "cuda-python is not installed (pip install 'edgeanom[trt]')"
    try:
        err, count = cudart.cudaGetDeviceCount()
    except Exception as exc:  # no driver
        return f"no CUDA driver ({exc})"
    if int(err) != 0 or count < 1:
        return "no CUDA device"
    return None
