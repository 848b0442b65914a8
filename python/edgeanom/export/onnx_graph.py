"""ONNX graphs from the bundle's checkpoint: export, validation and atomic saving.

Every graph `export` writes has opset >= 17, a named input (`input`), named outputs, a dynamic batch axis on
each of them, and passes `onnx.checker` (full check) and strict shape inference.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeanom.errors import EdgeanomError, first_line
from edgeanom.fileio import atomic_write

if TYPE_CHECKING:
    import onnx

MIN_OPSET = 17


def export_checkpoint_model(model: Any) -> onnx.ModelProto:
    """The torch model as an FP32 ONNX graph (the train package's exporter: legacy exporter, opset 17)."""
    import onnx
    import torch

    from edgeanom.models.onnx_export import export_onnx

    with tempfile.TemporaryDirectory(prefix="edgeanom-export-") as tmp, warnings.catch_warnings():
        # The tracer warns about Python-side shape logic (LSTM models); parity checks catch real divergence.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        path = Path(tmp) / "model.onnx"
        export_onnx(model, path)
        return onnx.load(str(path))


def opset_of(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def check_graph(model: onnx.ModelProto, what: str, min_opset: int = MIN_OPSET) -> onnx.ModelProto:
    """Run the checker and strict shape inference; require the opset and a dynamic batch axis everywhere.

    Returns the model with inferred value_info (what TensorRT and Triton read shapes from).
    """
    import onnx

    opset = opset_of(model)
    if opset < min_opset:
        raise EdgeanomError(f"{what}: opset {opset} is below {min_opset}")
    try:
        onnx.checker.check_model(model, full_check=True)
        inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise EdgeanomError(f"{what}: the ONNX graph is invalid ({first_line(exc)})") from None
    init = {i.name for i in model.graph.initializer}
    for value in [*[i for i in model.graph.input if i.name not in init], *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if not value.name:
            raise EdgeanomError(f"{what}: a graph input or output has no name")
        if not dims or dims[0].HasField("dim_value"):
            raise EdgeanomError(f"{what}: tensor '{value.name}' has no dynamic batch axis")
    return inferred


def save_model(model: onnx.ModelProto, path: Path) -> Path:
    """Write the serialized graph atomically (readers never see half a file)."""
    data = model.SerializeToString()
    atomic_write(Path(path), lambda fh: fh.write(data))
    return Path(path)


def io_names(model: onnx.ModelProto) -> tuple[list[str], list[str]]:
    init = {i.name for i in model.graph.initializer}
    return [i.name for i in model.graph.input if i.name not in init], [o.name for o in model.graph.output]
