"""Graph simplification with onnxslim (constant folding, shape-op elimination, fusions).

The result is only a candidate: `export` keeps it when its inputs and outputs are unchanged and its outputs
match the original graph on the parity samples; otherwise the original graph is kept.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    import onnx

log = logging.getLogger(__name__)


def simplify(model: onnx.ModelProto) -> Optional[onnx.ModelProto]:
    """The simplified graph, or None when onnxslim fails or changes the graph's interface."""
    try:
        import onnxslim

        slim = onnxslim.slim(model)
    except Exception as exc:  # onnxslim raises whatever its passes raise
        log.info("onnxslim could not simplify the graph (%s); keeping it as exported", exc)
        return None
    if slim is None or not _same_interface(_interface(model), _interface(slim)):
        return None
    return slim


def _same_interface(before: Any, after: Any) -> bool:
    """Same tensors, types and ranks; a symbolic per-sample dim may become static, the batch axis may not."""
    for old_side, new_side in zip(before, after):
        if [(n, t, len(d)) for n, t, d in old_side] != [(n, t, len(d)) for n, t, d in new_side]:
            return False
        for (_, _, old), (_, _, new) in zip(old_side, new_side):
            if new and isinstance(new[0], int) and (not old or new[0] != old[0]):
                return False  # the batch axis must stay dynamic
            if any(
                o != n and not (isinstance(o, str) and isinstance(n, int)) for o, n in zip(old[1:], new[1:])
            ):
                return False
    return True


def _interface(
    model: onnx.ModelProto,
) -> tuple[list[tuple[str, int, list[object]]], list[tuple[str, int, list[object]]]]:
    def describe(values: object) -> list[tuple[str, int, list[object]]]:
        out = []
        for v in values:  # type: ignore[attr-defined]
            t = v.type.tensor_type
            dims = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in t.shape.dim]
            out.append((v.name, t.elem_type, dims))
        return out

    init = {i.name for i in model.graph.initializer}
    return describe([i for i in model.graph.input if i.name not in init]), describe(model.graph.output)


def node_count(model: onnx.ModelProto) -> int:
    return len(model.graph.node)
