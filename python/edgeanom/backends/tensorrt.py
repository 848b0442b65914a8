"""TensorRT runner: a serialized engine (`.plan`) behind the Runner interface, for `edgeanom run --backend tensorrt`.

TensorRT 10/11 named-tensor API: `set_input_shape` + `set_tensor_address` + `execute_async_v3` on one CUDA
stream. Host buffers are page-locked (fast, asynchronous copies) and device buffers are allocated once for the
engine's largest batch, so no inference allocates. When the batch size repeats, the enqueue is captured into a
CUDA graph and replayed (lower launch overhead; recaptured when the batch size changes).

CUDA memory and streams come from cuda-python (`cuda.bindings.runtime`, or `cuda.cudart` in older releases),
else from torch when it has CUDA. `TensorRTRunner.from_bundle` finds the bundle's engine for this GPU and
TensorRT version in the engine cache, or builds it on first use.

Each `infer` brackets its H2D copy, enqueue (or graph launch) and D2H copies with CUDA events on the stream and
publishes the GPU times as `last_timings` (trtexec's H2D / GPU compute / D2H), which `edgeanom bench` reports;
a host clock around an asynchronous enqueue would measure the queue, not the work.
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from edgeanom.engines.cuda import (  # noqa: F401 (re-exported for tests and callers)
    INSTALL_HINT,
    STAGES,
    StageEvents,
    cuda_api,
    import_tensorrt,
    tensorrt_major,
    tensorrt_unavailable,
)
from edgeanom.errors import EdgeanomError

if TYPE_CHECKING:
    from edgeanom.backends.registry import BackendOptions
    from edgeanom.bundle import Bundle

log = logging.getLogger(__name__)


class EngineLoadError(EdgeanomError):
    """The plan file could not be deserialized (other TensorRT version, other GPU, damaged file)."""


def read_sidecar(plan_path: Path) -> Optional[dict[str, Any]]:
    """The engine cache's sidecar JSON next to a plan (its key, size, build options), or None."""
    sidecar = Path(plan_path).with_suffix(".json")
    try:
        entry = json.loads(sidecar.read_text())
    except (OSError, ValueError):
        return None
    return entry if isinstance(entry, dict) else None


def _sum_stages(parts: list[dict[str, float]]) -> dict[str, float]:
    return {f"{name}_ms": float(sum(p[f"{name}_ms"] for p in parts)) for name in STAGES}


# --- the runner -------------------------------------------------------------------------------------------
class TensorRTRunner:
    """Runs one engine with a single input; `infer(batch)` returns every output by name (float32 on host).

    After each `infer`, `last_timings` holds the GPU times in ms of its H2D copy, compute and D2H copies
    (`{"h2d_ms", "compute_ms", "d2h_ms"}`, summed over chunks when the batch exceeds the engine's profile;
    empty with `stage_timing=False` or when CUDA events are unavailable). `precision` (fp32/fp16/int8) and
    `engine_cache_key` (the cached plan's name, `<precision>-b<max batch>-<key digest>`) come from the engine
    cache's sidecar; without one, `precision` is the caller's hint (else "unknown") and the key is None.
    """

    def __init__(
        self,
        plan_path: Path,
        cuda_graphs: bool = True,
        *,
        precision: Optional[str] = None,
        stage_timing: bool = True,
    ) -> None:
        trt = import_tensorrt()
        self.plan_path = Path(plan_path)
        if not self.plan_path.is_file():
            raise EdgeanomError(f"TensorRT engine '{self.plan_path}' not found")
        self.engine_info = read_sidecar(self.plan_path)
        key = (self.engine_info or {}).get("key") or {}
        self.precision = str(key.get("precision") or precision or "unknown")
        cached_file = (self.engine_info or {}).get("file")
        self.engine_cache_key: Optional[str] = Path(str(cached_file)).stem if cached_file else None
        self.last_timings: dict[str, float] = {}
        self._stages: Optional[StageEvents] = None
        self.cuda = cuda_api()
        self._trt_logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._trt_logger)
        self.engine = self._runtime.deserialize_cuda_engine(self.plan_path.read_bytes())
        if self.engine is None:
            raise EngineLoadError(
                f"TensorRT {trt.__version__} cannot load engine '{self.plan_path}' (built by another TensorRT "
                "version or for another GPU, or the file is damaged)"
            )
        self.context = self.engine.create_execution_context()
        if self.context is None:  # out of device memory, most often
            raise EdgeanomError(
                f"TensorRT could not create an execution context for '{self.plan_path}' (GPU memory exhausted?)"
            )
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        if len(inputs) != 1:
            raise EdgeanomError(
                f"engine '{self.plan_path}' has inputs {inputs}; edgeanom runs single-input models"
            )
        self.input_name = inputs[0]
        self.output_names = [n for n in names if n not in inputs]
        self.dtypes = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}
        lo, _opt, hi = (tuple(s) for s in self.engine.get_tensor_profile_shape(self.input_name, 0))
        self.sample_shape = tuple(int(d) for d in hi[1:])
        self.min_batch, self.max_batch = int(lo[0]), int(hi[0])
        self.name = f"tensorrt[{trt.__version__}, {self.cuda.name}]"
        self.use_cuda_graphs = cuda_graphs
        self._stream = self.cuda.stream()
        if stage_timing:
            try:
                self._stages = StageEvents(self.cuda, self._stream)
            except EdgeanomError as exc:  # timing is a report, never a reason not to run
                log.info("CUDA events unavailable (%s); no stage timings", exc)
        self._device: dict[str, int] = {}
        self._host: dict[str, np.ndarray] = {}
        self._host_ptr: dict[str, int] = {}
        self._graph: Any = None
        self._shape_batch = 0
        self._last_batch = 0
        self._allocate()

    def _allocate(self) -> None:
        """Device and pinned host buffers for the largest batch; addresses are bound to the context once."""
        self.context.set_input_shape(self.input_name, (self.max_batch, *self.sample_shape))
        self._shape_batch = self.max_batch
        for name in [self.input_name, *self.output_names]:
            shape = tuple(int(d) for d in self.context.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise EdgeanomError(f"engine output '{name}' has data-dependent shape {shape}; not supported")
            host, ptr = self.cuda.pinned(shape, self.dtypes[name])
            self._host[name] = host
            self._host_ptr[name] = ptr
            self._device[name] = self.cuda.malloc(host.nbytes)
            self.context.set_tensor_address(name, self._device[name])

    @classmethod
    def from_bundle(
        cls,
        bundle: Bundle,
        precision: str = "fp32",
        max_batch: Optional[int] = None,
        cuda_graphs: bool = True,
        workspace_mb: Optional[int] = None,
    ) -> TensorRTRunner:
        """The runner for the bundle's engine matching this GPU and TensorRT; built on first use.

        An engine that TensorRT refuses to load is removed and rebuilt once, with one log line saying why.
        """
        from edgeanom.engines.build import ensure_engine

        path, _built = ensure_engine(
            bundle, precision=precision, max_batch=max_batch, workspace_mb=workspace_mb
        )
        options: dict[str, Any] = {"cuda_graphs": cuda_graphs, "precision": precision}
        try:
            return cls(path, **options)
        except EngineLoadError as exc:
            log.warning("%s: rebuilding it", exc)
            path, _built = ensure_engine(
                bundle, precision=precision, max_batch=max_batch, workspace_mb=workspace_mb, discard=path
            )
            return cls(path, **options)

    # --- inference --------------------------------------------------------------------------------------
    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        self.last_timings = {}
        x = np.asarray(batch)
        if x.ndim != len(self.sample_shape) + 1 or tuple(x.shape[1:]) != self.sample_shape:
            raise EdgeanomError(
                f"input batch has shape {x.shape}, the engine expects (N, {', '.join(map(str, self.sample_shape))})"
            )
        timed: list[dict[str, float]] = []
        if len(x) == 0:
            outputs = {
                n: np.empty((0, *self._host[n].shape[1:]), dtype=np.float32) for n in self.output_names
            }
        elif len(x) > self.max_batch:  # the profile's limit: run in chunks
            parts = [self._infer(x[i : i + self.max_batch], timed) for i in range(0, len(x), self.max_batch)]
            outputs = {n: np.concatenate([p[n] for p in parts]) for n in self.output_names}
        else:
            outputs = self._infer(x, timed)
        if self._stages is not None:
            self.last_timings = _sum_stages(timed)  # zeros for an empty batch: no GPU work
        return outputs

    def _mark(self, i: int) -> None:
        if self._stages is not None:
            self._stages.mark(i)

    def _infer(self, x: np.ndarray, timed: list[dict[str, float]]) -> dict[str, np.ndarray]:
        """One chunk within the profile; appends its stage times (ms) to `timed` when events are on."""
        n = len(x)
        host_in = self._host[self.input_name]
        np.copyto(host_in[:n], x, casting="same_kind")
        self._mark(0)
        self.cuda.htod(
            self._device[self.input_name], self._host_ptr[self.input_name], host_in[:n].nbytes, self._stream
        )
        self._mark(1)
        if self._shape_batch != n:  # a captured graph is only valid for the shapes it was captured with
            self._drop_graph()
            if not self.context.set_input_shape(self.input_name, (n, *self.sample_shape)):
                raise EdgeanomError(
                    f"engine '{self.plan_path}' rejects batch {n} (its profile: 1..{self.max_batch})"
                )
            self._shape_batch = n
        self._enqueue(n)
        self._mark(2)
        outputs = {}
        for name in self.output_names:
            shape = tuple(int(d) for d in self.context.get_tensor_shape(name))
            host = self._host[name].reshape(-1)[: int(np.prod(shape))].reshape(shape)
            outputs[name] = host
            self.cuda.dtoh(self._host_ptr[name], self._device[name], host.nbytes, self._stream)
        self._mark(3)
        self.cuda.synchronize(self._stream)  # every event on the stream has completed too
        if self._stages is not None:
            timed.append(self._stages.elapsed_ms())
        return {name: host.astype(np.float32, copy=True) for name, host in outputs.items()}

    def _enqueue(self, n: int) -> None:
        """Replay the CUDA graph when the batch size did not change; else enqueue (and capture on the
        second batch of the same size, after TensorRT's shape-dependent setup ran once)."""
        handle = self.cuda.handle(self._stream)
        if self.use_cuda_graphs and self._graph is not None:
            self.cuda.launch(self._graph, self._stream)
            return
        if not self.context.execute_async_v3(handle):
            raise EdgeanomError(f"TensorRT failed to enqueue engine '{self.plan_path}' for batch {n}")
        if self.use_cuda_graphs and self._last_batch == n:
            self._capture(handle)
        self._last_batch = n

    def _drop_graph(self) -> None:
        if self._graph is not None:
            self.cuda.destroy_graph(self._graph)
            self._graph = None

    def _capture(self, handle: int) -> None:
        self._drop_graph()
        enqueued: list[bool] = []
        try:
            graph = self.cuda.capture(
                self._stream, lambda: enqueued.append(bool(self.context.execute_async_v3(handle)))
            )
        except EdgeanomError as exc:  # some engines/drivers cannot be captured: keep plain enqueues
            log.info("CUDA graph capture failed (%s); running without CUDA graphs", exc)
            self.use_cuda_graphs = False
            return
        if not (enqueued and all(enqueued)):
            # the enqueue failed while being recorded: the graph holds a partial launch and must never run
            self.cuda.destroy_graph(graph)
            log.info("TensorRT enqueue failed during CUDA graph capture; running without CUDA graphs")
            self.use_cuda_graphs = False
            return
        self._graph = graph

    # --- lifetime --------------------------------------------------------------------------------------
    def close(self) -> None:
        if getattr(self, "cuda", None) is None:
            return
        with contextlib.suppress(EdgeanomError):
            self.cuda.synchronize(self._stream)
        if self._stages is not None:
            self._stages.close()
            self._stages = None
        self._drop_graph()
        for ptr in self._device.values():
            self.cuda.free(ptr)
        for ptr in self._host_ptr.values():
            self.cuda.free_pinned(ptr)
        self._device, self._host, self._host_ptr = {}, {}, {}
        self.cuda.destroy_stream(self._stream)
        self.context = None
        self.engine = None
        self.cuda = None

    def __enter__(self) -> TensorRTRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


# --- the backend table's entry points (edgeanom.backends.registry) ----------------------------------------
def unavailable(bundle: Optional[Bundle] = None) -> Optional[str]:
    reason = tensorrt_unavailable()
    return f"tensorrt: {reason}" if reason else None


def open_for_bundle(bundle: Bundle, options: BackendOptions) -> TensorRTRunner:
    return TensorRTRunner.from_bundle(bundle, precision=options.precision, max_batch=options.max_batch)
