"""FP16 ONNX: weights and activations in half precision inside, FP32 inputs and outputs at the edges.

Converted from the un-fused FP32 graph with onnxconverter-common (`keep_io_types`), so callers feed and read
float32 exactly as before; the fused score head is appended afterwards (`fused.append_score_head`), which keeps
the error reduction in FP32. TensorRT 11 builds its FP16 engine from this file (strongly typed network).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgeanom.errors import EdgeanomError

if TYPE_CHECKING:
    import onnx


def convert_to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """An FP16 copy of `model` with float32 graph inputs and outputs."""
    from onnx import TensorProto
    from onnxconverter_common import float16

    try:
        half = float16.convert_float_to_float16(
            model, keep_io_types=True, op_block_list=float16.DEFAULT_OP_BLOCK_LIST, disable_shape_infer=False
        )
    except Exception as exc:  # the converter raises plain Exceptions/ValueErrors on graphs it cannot handle
        raise EdgeanomError(f"FP16 conversion failed: {exc}") from None
    # The converter leaves stale (FP16) value_info on tensors it re-typed through casts; shape inference
    # recreates all of it when the graph is checked.
    del half.graph.value_info[:]
    for value in [*half.graph.input, *half.graph.output]:
        if value.type.tensor_type.elem_type != TensorProto.FLOAT:
            raise EdgeanomError(f"FP16 conversion left graph tensor '{value.name}' in a non-float32 type")
    return half
