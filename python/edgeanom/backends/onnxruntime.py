"""ONNX Runtime runner (the embedded default): TensorRT EP, CUDA EP, then CPU, whatever the build offers.

On CPU the runner can write outputs into buffers it keeps per batch size (IOBinding), which saves an
allocation and a copy per batch; callers that keep outputs across calls must leave `reuse_outputs` off.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from edgeanom.backends.onnx_files import graph_for, graph_unavailable
from edgeanom.errors import EdgeanomError

if TYPE_CHECKING:
    from edgeanom.backends.registry import BackendOptions
    from edgeanom.bundle import Bundle

PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")

_NUMPY_OF_ORT = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": np.bool_,
}


class OnnxRuntimeRunner:
    """An InferenceSession with full graph optimisation; `infer(batch)` -> {output name: array}."""

    def __init__(
        self,
        model_path: Path,
        providers: Optional[Sequence[str]] = None,
        intra_op_threads: int = 0,
        *,
        reuse_outputs: bool = False,
        spin_wait: Optional[bool] = None,
        provider_options: Optional[dict[str, dict[str, Any]]] = None,
        disabled_optimizers: Sequence[str] = (),
        sample_shape: Optional[Sequence[int]] = None,
    ) -> None:
        """`intra_op_threads` 0 lets ONNX Runtime choose (one per core). `spin_wait` False stops idle worker
        threads from spinning, which leaves the cores to decoding threads in a streaming pipeline.
        `sample_shape` (the bundle's input.shape) is checked against the graph's input at once."""
        import onnxruntime as ort

        if not Path(model_path).is_file():
            raise EdgeanomError(f"ONNX model '{model_path}' not found")
        available = ort.get_available_providers()
        chosen = [p for p in (providers or PREFERRED_PROVIDERS) if p in available] or ["CPUExecutionProvider"]
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.intra_op_num_threads = int(intra_op_threads)
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        if spin_wait is not None:
            opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin_wait else "0")
        options = [dict((provider_options or {}).get(p, {})) for p in chosen]
        try:
            extra = {"disabled_optimizers": list(disabled_optimizers)} if disabled_optimizers else {}
            self.session = ort.InferenceSession(
                str(model_path), sess_options=opts, providers=chosen, provider_options=options, **extra
            )
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise EdgeanomError(f"ONNX Runtime cannot load '{model_path}': {exc}") from None
        self.model_path = Path(model_path)
        inputs = self.session.get_inputs()
        if sample_shape is not None:
            graph = list(inputs[0].shape[1:])
            fixed = [(g, int(b)) for g, b in zip(graph, sample_shape) if isinstance(g, int)]
            if len(graph) != len(sample_shape) or any(g != b for g, b in fixed):
                raise EdgeanomError(
                    f"{model_path}: the graph takes samples of shape {graph}, the bundle's input.shape says "
                    f"{list(sample_shape)}"
                )
        self.input_name = inputs[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.providers = self.session.get_providers()
        self.name = f"onnxruntime[{self.providers[0]}]"
        batch_dim = inputs[0].shape[0] if inputs[0].shape else None
        self.max_batch: Optional[int] = batch_dim if isinstance(batch_dim, int) and batch_dim > 0 else None
        self._bound = reuse_outputs and self.providers[0] == "CPUExecutionProvider" and self._static_outputs()
        self._binding: Any = self.session.io_binding() if self._bound else None
        self._outputs: dict[int, dict[str, np.ndarray]] = {}  # batch size -> reused output buffers

    def _static_outputs(self) -> bool:
        """Output shapes known up to the batch axis, so buffers can be allocated ahead of the run."""
        for out in self.session.get_outputs():
            dims = out.shape or []
            if out.type not in _NUMPY_OF_ORT or not dims or not all(isinstance(d, int) for d in dims[1:]):
                return False
        return True

    def _buffers(self, n: int) -> dict[str, np.ndarray]:
        bufs = self._outputs.get(n)
        if bufs is None:
            if len(self._outputs) > 8:  # a few batch sizes recur (full batches, the last partial one)
                self._outputs.clear()
            bufs = {
                o.name: np.empty((n, *o.shape[1:]), dtype=_NUMPY_OF_ORT[o.type])
                for o in self.session.get_outputs()
            }
            self._outputs[n] = bufs
        return bufs

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if self.max_batch is not None and batch.shape[0] > self.max_batch:
            raise EdgeanomError(
                f"batch of {batch.shape[0]} exceeds the model's fixed batch size {self.max_batch} ({self.model_path})"
            )
        if not self._bound:
            values = self.session.run(self.output_names, {self.input_name: batch})
            return dict(zip(self.output_names, values))
        bufs = self._buffers(batch.shape[0])
        binding = self._binding
        binding.bind_cpu_input(self.input_name, batch)
        for name, buf in bufs.items():
            binding.bind_output(name, "cpu", 0, buf.dtype, buf.shape, buf.ctypes.data)
        self.session.run_with_iobinding(binding)
        return bufs

    def close(self) -> None:
        self.session = None  # type: ignore[assignment]
        self._binding = None
        self._outputs.clear()

    def __enter__(self) -> OnnxRuntimeRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def provider_options_for(bundle_path: Path, precision: str = "fp32") -> dict[str, dict[str, Any]]:
    """TensorRT EP settings: engines cached inside the bundle, FP16 when asked; CUDA EP defaults."""
    cache = Path(bundle_path) / "engines" / "ort-trt"
    return {
        "TensorrtExecutionProvider": {
            "trt_engine_cache_enable": "True",
            "trt_engine_cache_path": os.fspath(cache),
            "trt_fp16_enable": "True" if precision == "fp16" else "False",
        },
    }


# --- the backend table's entry points (edgeanom.backends.registry) ----------------------------------------
def unavailable(bundle: Optional[Bundle] = None) -> Optional[str]:
    import importlib.util

    return None if importlib.util.find_spec("onnxruntime") else "onnxruntime: not installed"


def precision_unavailable(precision: str, bundle: Optional[Bundle] = None) -> Optional[str]:
    return graph_unavailable("ONNX Runtime", precision, bundle)


def open_for_bundle(bundle: Bundle, options: BackendOptions) -> OnnxRuntimeRunner:
    """Called by the registry after `precision_unavailable` passed for this bundle."""
    return OnnxRuntimeRunner(
        graph_for(bundle, options.precision),
        intra_op_threads=options.threads,
        reuse_outputs=options.reuse_outputs,
        spin_wait=options.spin_wait,
        provider_options=provider_options_for(bundle.path, options.precision),
        # the CPU NCHWc layout pass is FP32-only and crashes on some FP16 graphs (LSTM models, onnxruntime 1.32)
        disabled_optimizers=("NchwcTransformer",) if options.precision == "fp16" else (),
        sample_shape=bundle.input_shape,
    )
