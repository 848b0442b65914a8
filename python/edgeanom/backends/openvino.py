"""OpenVINO runner: Intel CPUs and integrated GPUs, from the same ONNX graph ONNX Runtime loads.

OpenVINO reads the ONNX file itself (no conversion step, no files written). The CPU plugin may compute in
bf16 on CPUs that have it; fp32 bundles pin `INFERENCE_PRECISION_HINT` to f32 so scores match the other
backends, and fp16 runs the bundle's FP16 graph. An Intel GPU is used when OpenVINO sees one
(`EDGEANOM_OPENVINO_DEVICE` names another device, e.g. CPU).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from edgeanom.backends.onnx_files import graph_for, graph_unavailable
from edgeanom.errors import EdgeanomError, first_line

if TYPE_CHECKING:
    from edgeanom.backends.registry import BackendOptions
    from edgeanom.bundle import Bundle

DEVICE_ENV = "EDGEANOM_OPENVINO_DEVICE"


def pick_device(available: Sequence[str]) -> str:
    """The device to compile for: $EDGEANOM_OPENVINO_DEVICE, else an Intel GPU when present, else CPU."""
    wanted = os.environ.get(DEVICE_ENV)
    if wanted:
        if wanted.split(".")[0] not in {d.split(".")[0] for d in available} and wanted not in ("AUTO",):
            raise EdgeanomError(
                f"{DEVICE_ENV}={wanted}: OpenVINO sees only {', '.join(available) or 'no device'}"
            )
        return wanted
    return next((d for d in available if d.startswith("GPU")), "CPU")


class OpenVinoRunner:
    """A compiled OpenVINO model; `infer(batch)` -> {output name: array}."""

    def __init__(
        self,
        model_path: Path,
        threads: int = 0,
        *,
        precision: str = "fp32",
        reuse_outputs: bool = False,
        sample_shape: Optional[Sequence[int]] = None,
        device: Optional[str] = None,
    ) -> None:
        import openvino as ov

        if not Path(model_path).is_file():
            raise EdgeanomError(f"ONNX model '{model_path}' not found")
        core = ov.Core()
        self.device = device or pick_device(core.available_devices)
        config: dict[str, Any] = {
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": "f16" if precision == "fp16" else "f32",
        }
        if threads > 0 and self.device == "CPU":
            config["INFERENCE_NUM_THREADS"] = int(threads)
        try:
            model = core.read_model(str(model_path))
            compiled = core.compile_model(model, self.device, config)
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses with multi-line messages
            raise EdgeanomError(
                f"OpenVINO cannot load '{model_path}' on {self.device}: {first_line(exc)}"
            ) from None
        graph = list(model.inputs[0].get_partial_shape())[1:]
        if sample_shape is not None:
            fixed = [(g.get_length(), int(b)) for g, b in zip(graph, sample_shape) if g.is_static]
            if len(graph) != len(sample_shape) or any(g != b for g, b in fixed):
                raise EdgeanomError(
                    f"{model_path}: the graph takes samples of shape {[str(g) for g in graph]}, the bundle's "
                    f"input.shape says {list(sample_shape)}"
                )
        self.model_path = Path(model_path)
        self._compiled = compiled
        self._request = compiled.create_infer_request()
        self._outputs = list(compiled.outputs)
        self.output_names = [o.get_any_name() for o in self._outputs]
        self.input_name = compiled.inputs[0].get_any_name()
        self.reuse_outputs = reuse_outputs
        self.max_batch: Optional[int] = None
        self.name = f"openvino[{self.device}]"

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        try:
            results = self._request.infer({0: batch}, share_inputs=True)
        except Exception as exc:
            raise EdgeanomError(
                f"OpenVINO inference failed on a batch of shape {batch.shape}: {first_line(exc)}"
            ) from None
        # the arrays may live in the request's buffers: copy unless the caller copies before the next call
        return {
            name: (results[out] if self.reuse_outputs else np.array(results[out]))
            for name, out in zip(self.output_names, self._outputs)
        }

    def close(self) -> None:
        self._request = None
        self._compiled = None

    def __enter__(self) -> OpenVinoRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- the backend table's entry points (edgeanom.backends.registry) ----------------------------------------
def unavailable(bundle: Optional[Bundle] = None) -> Optional[str]:
    import importlib.util

    if importlib.util.find_spec("openvino") is None:
        return "openvino: not installed (pip install 'edgeanom[openvino]')"
    if bundle is not None and bundle.model_family == "sklearn":
        return f"openvino: bundle {bundle.path} is a scikit-learn graph (ai.onnx.ml operators OpenVINO lacks)"
    return None


def precision_unavailable(precision: str, bundle: Optional[Bundle] = None) -> Optional[str]:
    return graph_unavailable("OpenVINO", precision, bundle)


def open_for_bundle(bundle: Bundle, options: BackendOptions) -> OpenVinoRunner:
    return OpenVinoRunner(
        graph_for(bundle, options.precision),
        threads=options.threads,
        precision=options.precision,
        reuse_outputs=options.reuse_outputs,
        sample_shape=bundle.input_shape,
    )
