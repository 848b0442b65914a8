"""PyTorch reference runner: the bundle's checkpoint run eagerly, for parity checks and training machines."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from edgeanom.bundle import Bundle
from edgeanom.errors import EdgeanomError


class TorchRunner:
    """`infer(batch)` -> {the bundle's ONNX output name: array}, computed by the torch model under no_grad."""

    def __init__(self, model: Any, output_name: str, device: str = "cpu", threads: int = 0) -> None:
        import torch

        if threads > 0:
            torch.set_num_threads(int(threads))
        self.model = model
        self.device = device
        self.input_name = "input"
        self.output_names = [output_name]
        self.name = f"torch[{device}]"
        self.max_batch: Optional[int] = None

    @classmethod
    def from_bundle(cls, bundle: Bundle, threads: int = 0, device: Optional[str] = None) -> TorchRunner:
        import torch

        from edgeanom.train.checkpoint import load_model

        if bundle.model_family != "torch":
            raise EdgeanomError(
                f"bundle {bundle.path}: '{bundle.model_type}' is a scikit-learn model; run it with "
                "--backend onnxruntime"
            )
        dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
        model = load_model(bundle, device=dev)
        return cls(model, str(bundle.onnx.get("output", "reconstruction")), device=dev, threads=threads)

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        import torch

        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device)
        with torch.inference_mode():
            out = self.model(x)
        if isinstance(out, (tuple, list)):
            out = out[0]
        return {self.output_names[0]: out.detach().to("cpu").numpy()}

    def close(self) -> None:
        self.model = None

    def __enter__(self) -> TorchRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
