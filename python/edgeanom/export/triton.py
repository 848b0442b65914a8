"""Write a Triton Inference Server model repository for a bundle's ONNX model or TensorRT engine.

Layout (Triton's defaults): `<repo>/<name>/config.pbtxt` and `<repo>/<name>/1/model.onnx` (platform
`onnxruntime_onnx`) or `<repo>/<name>/1/model.plan` (platform `tensorrt_plan`). The config states the batch
limit, every input and output with its type and per-sample dims (read from the ONNX graph, so they cannot
drift from the model), dynamic batching and the instance group. Plain text is written here; tests parse it
with Triton's own ModelConfig protobuf.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from edgeanom.errors import EdgeanomError

# ONNX TensorProto element type -> Triton data type.
_ONNX_TO_TRITON = {
    1: "TYPE_FP32",
    10: "TYPE_FP16",
    11: "TYPE_FP64",
    6: "TYPE_INT32",
    7: "TYPE_INT64",
    9: "TYPE_BOOL",
}
PLATFORMS = {".onnx": ("onnxruntime_onnx", "model.onnx"), ".plan": ("tensorrt_plan", "model.plan")}


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output as Triton sees it: per-sample dims (no batch axis), -1 for dynamic."""

    name: str
    data_type: str
    dims: tuple[int, ...]


def onnx_io(onnx_path: Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Inputs and outputs of an ONNX graph whose first axis is the batch."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)

    def spec(value: object) -> TensorSpec:
        t = value.type.tensor_type  # type: ignore[attr-defined]
        name = value.name  # type: ignore[attr-defined]
        if t.elem_type not in _ONNX_TO_TRITON:
            raise EdgeanomError(
                f"{onnx_path}: tensor '{name}' has ONNX type {t.elem_type}, which Triton cannot take"
            )
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
        if not dims:
            raise EdgeanomError(f"{onnx_path}: tensor '{name}' has no batch axis")
        return TensorSpec(name, _ONNX_TO_TRITON[t.elem_type], tuple(dims[1:]))

    initializers = {i.name for i in model.graph.initializer}
    inputs = [spec(v) for v in model.graph.input if v.name not in initializers]
    return inputs, [spec(v) for v in model.graph.output]


def model_config(
    name: str,
    platform: str,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    *,
    max_batch_size: int,
    instances: int = 1,
    kind: str = "KIND_AUTO",
    preferred_batch_sizes: Sequence[int] = (),
    max_queue_delay_us: int = 100,
    parameters: Optional[dict[str, str]] = None,
    backend: Optional[str] = None,
) -> str:
    """config.pbtxt text for a batched model with dynamic batching. KIND_AUTO lets Triton place the instances
    (GPUs when it has them, else the CPU), so one repository loads on both; `parameters` (strings) travel with
    the model, e.g. the bundle's threshold, for clients that need the verdict."""
    if max_batch_size < 1:
        raise EdgeanomError(f"Triton max_batch_size must be >= 1, got {max_batch_size}")
    if kind not in KINDS:
        raise EdgeanomError(f"instance kind must be one of {', '.join(KINDS)}, got {kind!r}")

    def tensors(items: Sequence[TensorSpec]) -> str:
        blocks = []
        for t in items:
            # A tensor that is only the batch axis (e.g. `score` [N]) is declared [1] and reshaped to [].
            dims = ", ".join(map(str, t.dims or (1,)))
            reshape = "" if t.dims else "\n    reshape: { shape: [ ] }"
            blocks.append(
                f'  {{\n    name: "{t.name}"\n    data_type: {t.data_type}\n    dims: [ {dims} ]{reshape}\n  }}'
            )
        return ",\n".join(blocks)

    preferred = sorted({b for b in preferred_batch_sizes if 1 <= b <= max_batch_size})
    lines = [
        f'name: "{name}"',
        f'backend: "{backend}"' if backend else f'platform: "{platform}"',
        f"max_batch_size: {max_batch_size}",
        f"input [\n{tensors(inputs)}\n]",
        f"output [\n{tensors(outputs)}\n]",
        "dynamic_batching {",
        *([f"  preferred_batch_size: [ {', '.join(map(str, preferred))} ]"] if preferred else []),
        f"  max_queue_delay_microseconds: {int(max_queue_delay_us)}",
        "}",
        f"instance_group [\n  {{\n    count: {int(instances)}\n    kind: {kind}\n  }}\n]",
    ]
    for key, value in sorted((parameters or {}).items()):
        lines.append(
            f"parameters {{\n  key: {json.dumps(key)}\n  value: {{ string_value: {json.dumps(str(value))} }}\n}}"
        )
    return "\n".join(lines) + "\n"


KINDS = ("KIND_AUTO", "KIND_GPU", "KIND_CPU")


def safe_model_name(text: str) -> str:
    """A directory-safe Triton model name."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.")
    return name or "edgeanom"


def write_model_repository(
    repo: Path,
    name: str,
    model_file: Path,
    *,
    max_batch_size: int,
    io_from: Optional[Path] = None,
    instances: int = 1,
    kind: Optional[str] = None,
    max_queue_delay_us: int = 100,
    parameters: Optional[dict[str, str]] = None,
) -> Path:
    """Copy the model into `repo/name/1/` and write `repo/name/config.pbtxt`; returns the config path.

    `io_from` is the ONNX graph the inputs/outputs are read from (the model itself for ONNX; the ONNX an
    engine was built from for a `.plan`). `kind` None: KIND_GPU for an engine (it runs on a GPU only), KIND_AUTO
    for ONNX.
    """
    model_file = Path(model_file)
    suffix = model_file.suffix.lower()
    if suffix not in PLATFORMS:
        raise EdgeanomError(f"{model_file}: Triton export takes a .onnx or .plan file")
    if not model_file.is_file():
        raise EdgeanomError(f"{model_file}: model file not found")
    source = Path(io_from) if io_from is not None else model_file
    if source.suffix.lower() != ".onnx":
        raise EdgeanomError(f"{model_file}: pass the ONNX file the engine was built from to read its inputs")
    platform, default_file = PLATFORMS[suffix]
    inputs, outputs = onnx_io(source)
    name = safe_model_name(name)
    model_dir = Path(repo) / name
    (model_dir / "1").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(model_file, model_dir / "1" / default_file)
    config = model_config(
        name,
        platform,
        inputs,
        outputs,
        max_batch_size=max_batch_size,
        instances=instances,
        kind=kind or ("KIND_GPU" if suffix == ".plan" else "KIND_AUTO"),
        parameters=parameters,
        preferred_batch_sizes=[b for b in (max_batch_size // 2, max_batch_size) if b >= 1],
        max_queue_delay_us=max_queue_delay_us,
    )
    (model_dir / "config.pbtxt").write_text(config)
    return model_dir / "config.pbtxt"


PYTHON_MODEL = '''"""edgeanom: the bundle's exported graph in ONNX Runtime, for a Triton build with only the Python backend.

Written by `edgeanom export --triton`. Triton's dynamic batcher hands several requests at once: they are run
as one batch and split again. Needs numpy and onnxruntime (onnxruntime-gpu for the CUDA provider) in the
Python environment the backend's stub uses.
"""

from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        import onnxruntime as ort

        graph = Path(args["model_repository"]) / args["model_version"] / "model.onnx"
        wanted = ("CUDAExecutionProvider", "CPUExecutionProvider")
        providers = [p for p in wanted if p in ort.get_available_providers()]
        self.session = ort.InferenceSession(str(graph), providers=providers)
        self.input = self.session.get_inputs()[0].name
        self.outputs = [o.name for o in self.session.get_outputs()]

    def execute(self, requests):
        batches = [pb_utils.get_input_tensor_by_name(r, self.input).as_numpy() for r in requests]
        x = np.concatenate(batches).astype(np.float32, copy=False)
        values = self.session.run(self.outputs, {self.input: x})
        responses, start = [], 0
        for batch in batches:
            end = start + len(batch)
            tensors = [pb_utils.Tensor(n, np.ascontiguousarray(v[start:end])) for n, v in zip(self.outputs, values)]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start = end
        return responses
'''


def write_python_backend_model(
    repo: Path,
    name: str,
    onnx_file: Path,
    *,
    max_batch_size: int,
    max_queue_delay_us: int = 100,
    parameters: Optional[dict[str, str]] = None,
) -> Path:
    """The same graph for a Triton build with only the Python backend (e.g. the `tritonserver` in the
    nvidia-pytriton wheel): `repo/name/1/model.py` runs `model.onnx` in ONNX Runtime; CPU instances."""
    onnx_file = Path(onnx_file)
    if onnx_file.suffix.lower() != ".onnx" or not onnx_file.is_file():
        raise EdgeanomError(f"{onnx_file}: the Python-backend model serves an existing .onnx graph")
    inputs, outputs = onnx_io(onnx_file)
    name = safe_model_name(name)
    model_dir = Path(repo) / name
    (model_dir / "1").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(onnx_file, model_dir / "1" / "model.onnx")
    (model_dir / "1" / "model.py").write_text(PYTHON_MODEL)
    config = model_config(
        name,
        "",
        inputs,
        outputs,
        max_batch_size=max_batch_size,
        kind="KIND_CPU",
        parameters=parameters,
        preferred_batch_sizes=[b for b in (max_batch_size // 2, max_batch_size) if b >= 1],
        max_queue_delay_us=max_queue_delay_us,
        backend="python",
    )
    (model_dir / "config.pbtxt").write_text(config)
    return model_dir / "config.pbtxt"
