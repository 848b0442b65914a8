"""ONNX Runtime runner (the embedded default): TensorRT EP, CUDA EP, then CPU, whatever the build offers."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from edgeanom.errors import EdgeanomError

PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


class OnnxRuntimeRunner:
    def __init__(
        self,
        model_path: Path,
        providers: Optional[Sequence[str]] = None,
        intra_op_threads: int = 0,
    ) -> None:
        import onnxruntime as ort

        if not Path(model_path).is_file():
            raise EdgeanomError(f"ONNX model '{model_path}' not found")
        available = ort.get_available_providers()
        chosen = [p for p in (providers or PREFERRED_PROVIDERS) if p in available] or ["CPUExecutionProvider"]
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = intra_op_threads
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(model_path), sess_options=opts, providers=chosen)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise EdgeanomError(f"ONNX Runtime cannot load '{model_path}': {exc}") from None
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.providers = self.session.get_providers()
        self.name = f"onnxruntime[{self.providers[0]}]"

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        values = self.session.run(self.output_names, {self.input_name: batch})
        return dict(zip(self.output_names, values))

    def close(self) -> None:
        self.session = None  # type: ignore[assignment]

    def __enter__(self) -> OnnxRuntimeRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
