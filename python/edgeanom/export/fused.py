"""Fused scoring: append the anomaly score (and, for images, the per-pixel error map) to an ONNX graph.

A GPU engine then hands back N scores instead of N reconstructions, so the device-to-host copy and the CPU
reduction disappear. The head is built from plain ONNX ops, always in FP32 (also behind an FP16 model, whose
FP32 output feeds it), and computes exactly what the C++ core (`edgeanom.scoring`) computes:

- ``mse``/``mae``: mean of (w *) d^2 / |d| over all elements of a sample; ``sse``: the sum; ``rmse``:
  sqrt(mse); ``max``: the largest w * |d|. d = input - reconstruction, w the optional per-element weights.
- Deep SVDD: the squared distance of the embedding to the centre (``sse`` against a broadcast centre).
- ``error_map`` [N, H, W]: channel mean of d^2, before any blur (the Scorer blurs with `scoring.blur_maps`).
- A non-finite sample scores +inf (and a non-finite pixel maps to +inf), the core's policy.

Head nodes and tensors are named ``score_head/...`` so TensorRT 10 builds can pin them to FP32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from edgeanom.errors import EdgeanomError

if TYPE_CHECKING:
    import onnx

    from edgeanom.bundle import Bundle

from edgeanom.engines.build import HEAD_PREFIX

SCORE_OUTPUT = "score"
MAP_OUTPUT = "error_map"
METRICS = ("mse", "mae", "sse", "rmse", "max")


@dataclass(frozen=True)
class ScoreSpec:
    """How a sample's score is computed from the model output (mirrors the bundle's `score` section)."""

    metric: str = "mse"
    weights: Optional[np.ndarray] = None  # per-sample shape, multiplies d^2 / |d|
    center: Optional[np.ndarray] = None  # Deep SVDD centre, [1, D]
    error_map: bool = False  # image reconstruction models: also output the per-pixel map

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise EdgeanomError(f"score.metric must be one of {METRICS}, got {self.metric!r}")

    @classmethod
    def from_bundle(cls, bundle: Bundle) -> ScoreSpec:
        spec = bundle.score
        center = bundle.center()
        weights = spec.get("weights")
        if center is not None:
            return cls(metric="sse", center=center)
        return cls(
            metric=str(spec.get("metric", "mse")),
            weights=None
            if weights is None
            else np.asarray(weights, dtype=np.float32).reshape(bundle.input_shape),
            error_map=bundle.input_kind == "image",
        )

    @property
    def outputs(self) -> dict[str, Optional[str]]:
        """The bundle's `onnx.fused` record: output names of the fused graph."""
        return {"score": SCORE_OUTPUT, "error_map": MAP_OUTPUT if self.error_map else None}


class _HeadBuilder:
    """Collects head nodes and constants with prefixed names; knows the opset's reduce signatures."""

    def __init__(self, opset: int) -> None:
        self.opset = opset
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []

    def name(self, text: str) -> str:
        return HEAD_PREFIX + text

    def const(self, label: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        name = self.name(label)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def op(
        self, op_type: str, inputs: list[str], label: str, output: Optional[str] = None, **attrs: Any
    ) -> str:
        from onnx import helper

        out = output or self.name(label)
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=self.name(label), **attrs))
        return out

    def reduce(self, op_type: str, x: str, axis: int, label: str, output: Optional[str] = None) -> str:
        """Reduce over one axis without keeping it. ReduceSum takes axes as an input since opset 13,
        ReduceMax/ReduceMean since opset 18."""
        takes_input = op_type == "ReduceSum" or self.opset >= 18
        if takes_input:
            axes = self.const(f"{label}_axes", np.array([axis], dtype=np.int64))
            return self.op(op_type, [x, axes], label, output, keepdims=0)
        return self.op(op_type, [x], label, output, axes=[axis], keepdims=0)

    def non_finite_to_inf(self, value: str, check: str, label: str, output: str) -> str:
        """`output` = +inf where `check` is NaN, else `value` (NaN arises from NaN, inf - inf, inf * 0).

        NaN is the one value not equal to itself; Equal + Where parse on every TensorRT version we target.
        """
        inf = self.const(f"{label}_inf", np.array(np.inf, dtype=np.float32))
        is_number = self.op("Equal", [check, check], f"{label}_is_number")
        return self.op("Where", [is_number, value, inf], label, output)


def append_score_head(
    model: onnx.ModelProto, spec: ScoreSpec, input_name: str = "input", output_name: Optional[str] = None
) -> onnx.ModelProto:
    """A copy of `model` whose outputs are `score` [N] (and `error_map` [N, H, W] when asked for).

    `output_name` is the model output the head reads (reconstruction or embedding; default: the only one).
    The raw output is no longer a graph output, so engines do not copy it back.
    """
    import onnx
    from onnx import TensorProto, helper

    graph = model.graph
    outputs = {o.name: o for o in graph.output}
    if output_name is None:
        if len(outputs) != 1:
            raise EdgeanomError(f"model has outputs {list(outputs)}; say which one the score head reads")
        output_name = next(iter(outputs))
    if output_name not in outputs:
        raise EdgeanomError(f"model has no output '{output_name}' (outputs: {', '.join(outputs)})")
    if input_name not in {i.name for i in graph.input}:
        raise EdgeanomError(f"model has no input '{input_name}'")
    if SCORE_OUTPUT in outputs or any(n.name.startswith(HEAD_PREFIX) for n in graph.node):
        raise EdgeanomError("model already has a fused score head")
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 13:
        raise EdgeanomError(f"model opset {opset} is too old for the fused score head (need >= 13)")

    h = _HeadBuilder(opset)
    raw = output_name
    if outputs[output_name].type.tensor_type.elem_type != TensorProto.FLOAT:
        raw = h.op("Cast", [output_name], "output_fp32", to=TensorProto.FLOAT)

    new_outputs = []
    if spec.center is not None:
        center = h.const("center", np.asarray(spec.center, dtype=np.float32).reshape(1, -1))
        flat = h.op("Flatten", [raw], "flatten", axis=1)
        diff = h.op("Sub", [flat, center], "diff")
        sq = h.op("Mul", [diff, diff], "sq")
        total = h.reduce("ReduceSum", sq, 1, "sum")
        h.non_finite_to_inf(total, total, "score", SCORE_OUTPUT)
    else:
        diff = h.op("Sub", [input_name, raw], "diff")
        sq = None if spec.metric in ("mae", "max") else h.op("Mul", [diff, diff], "sq")
        elem = sq if sq is not None else h.op("Abs", [diff], "abs")
        if spec.weights is not None:
            elem = h.op("Mul", [elem, h.const("weights", spec.weights[np.newaxis])], "weighted")
        flat = h.op("Flatten", [elem], "flatten", axis=1)
        if spec.metric == "max":
            value = h.reduce("ReduceMax", flat, 1, "max")
            # max ignores NaN on some backends: check with a sum that any non-finite element turns into NaN
            zero = h.const("zero", np.array(0.0, dtype=np.float32))
            check = h.reduce("ReduceSum", h.op("Mul", [flat, zero], "times_zero"), 1, "check")
        else:
            value = h.reduce("ReduceSum", flat, 1, "sum")
            if spec.metric in ("mse", "mae", "rmse"):
                count = _sample_size(graph, input_name)
                value = h.op(
                    "Mul", [value, h.const("inv_count", np.array(1.0 / count, dtype=np.float32))], "mean"
                )
            if spec.metric == "rmse":
                value = h.op("Sqrt", [value], "sqrt")
            check = value
        h.non_finite_to_inf(value, check, "score", SCORE_OUTPUT)
        if spec.error_map:
            sq = sq if sq is not None else h.op("Mul", [diff, diff], "sq")
            channels = _dims(graph, input_name)[1]
            csum = h.reduce("ReduceSum", sq, 1, "channel_sum")
            cmean = h.op(
                "Mul", [csum, h.const("inv_channels", np.array(1.0 / channels, dtype=np.float32))], "map"
            )
            h.non_finite_to_inf(cmean, cmean, "error_map", MAP_OUTPUT)
            new_outputs.append(
                helper.make_tensor_value_info(
                    MAP_OUTPUT, TensorProto.FLOAT, ["batch", *_dims(graph, input_name)[2:]]
                )
            )
    new_outputs.insert(0, helper.make_tensor_value_info(SCORE_OUTPUT, TensorProto.FLOAT, ["batch"]))

    fused = onnx.ModelProto()
    fused.CopyFrom(model)
    fused.graph.node.extend(h.nodes)
    fused.graph.initializer.extend(h.initializers)
    del fused.graph.output[:]
    fused.graph.output.extend(new_outputs)
    return fused


def _dims(graph: Any, name: str) -> list[int]:
    """Static per-sample dims of a graph input (the batch axis may be symbolic)."""
    value = next(i for i in graph.input if i.name == name)
    dims = [d.dim_value if d.HasField("dim_value") else -1 for d in value.type.tensor_type.shape.dim]
    if any(d < 1 for d in dims[1:]):
        raise EdgeanomError(
            f"input '{name}' has dynamic per-sample dims {dims[1:]}; the fused head needs them fixed"
        )
    return dims


def _sample_size(graph: Any, name: str) -> int:
    return math.prod(_dims(graph, name)[1:])
