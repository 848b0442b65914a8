"""Fused scoring: append the anomaly score (and, for images, the per-pixel error map) to an ONNX graph.

A GPU engine then hands back N scores instead of N reconstructions, so the device-to-host copy and the CPU
reduction disappear. The head is built from plain ONNX ops, always in FP32 (also behind an FP16 model, whose
FP32 output feeds it), and computes exactly what the C++ core (`edgeanom.scoring`) computes:

- ``mse``/``mae``: mean of (w *) d^2 / |d| over all elements of a sample; ``sse``: the sum; ``rmse``:
  sqrt(mse); ``max``: the largest w * |d|. d = input - reconstruction, w the optional per-element weights.
- Deep SVDD: the squared distance of the embedding to the centre (``sse`` against a broadcast centre).
- Image bundles that score a map (`score.map`): the whole map score is in the graph, so an engine served as
  it is (trtexec, Triton, DeepStream) gives the number `run` gives. The map (channel mean of d^2, or the
  model's own `error_map` output) is blurred (the core's separable Gaussian: scipy's "reflect" border as a
  Gather of precomputed rows/columns, then a K x 1 and a 1 x K convolution), normalised per pixel with the
  bundle's constants, and reduced (top-k mean with TopK + ReduceMean, or the max); ``error_map`` is then the
  final map and ``score`` its score (`onnx.fused.map_scored`).
- Without a map, ``error_map`` [N, H, W] (images) is the channel mean of d^2 before any blur.
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
class MapHead:
    """How an image bundle's map becomes its score (the bundle's `score.map`), for the graph to compute."""

    blur_sigma: float
    mode: str  # "topk_mean" | "max"
    k: int
    mean: Optional[np.ndarray] = None  # [H, W] per-pixel normalisation (score.map.normalize)
    scale: Optional[np.ndarray] = None
    from_output: bool = False  # the model outputs the map itself (synth-seg, feat-map)


@dataclass(frozen=True)
class ScoreSpec:
    """How a sample's score is computed from the model output (mirrors the bundle's `score` section)."""

    metric: str = "mse"
    weights: Optional[np.ndarray] = None  # per-sample shape, multiplies d^2 / |d|
    center: Optional[np.ndarray] = None  # Deep SVDD centre, [1, D]
    error_map: bool = False  # image reconstruction models: also output the per-pixel map
    map: Optional[MapHead] = None  # the map score in the graph: `score` is then the map's score

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise EdgeanomError(f"score.metric must be one of {METRICS}, got {self.metric!r}")

    @classmethod
    def from_bundle(cls, bundle: Bundle) -> ScoreSpec:
        from edgeanom.scorer import map_normalisation

        spec = bundle.score
        center = bundle.center()
        weights = spec.get("weights")
        if center is not None:
            return cls(metric="sse", center=center)
        head = None
        if spec.get("map"):
            m = spec["map"]
            mean, scale = map_normalisation(bundle, m)
            head = MapHead(
                blur_sigma=float(m.get("blur_sigma", 0.0)),
                mode=str(m.get("mode", "topk_mean")),
                k=int(m.get("k", 1)),
                mean=mean,
                scale=scale,
                from_output=bundle.onnx.get("output") == MAP_OUTPUT,
            )
        return cls(
            metric=str(spec.get("metric", "mse")),
            weights=None
            if weights is None
            else np.asarray(weights, dtype=np.float32).reshape(bundle.input_shape),
            error_map=bundle.input_kind == "image",
            map=head,
        )

    @property
    def outputs(self) -> dict[str, Any]:
        """The bundle's `onnx.fused` record: output names of the fused graph (`map_scored`: the score and
        map are final, blurred, normalised and reduced in the graph)."""
        record: dict[str, Any] = {"score": SCORE_OUTPUT, "error_map": MAP_OUTPUT if self.error_map else None}
        if self.map is not None:
            record["map_scored"] = True
        return record


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

    def op2(self, op_type: str, inputs: list[str], label: str, **attrs: Any) -> str:
        """A node with two outputs (TopK: values, indices); returns the first."""
        from onnx import helper

        outs = [self.name(label), self.name(f"{label}_second")]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=self.name(label), **attrs))
        return outs[0]

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
    if output_name == MAP_OUTPUT:  # the model's own map (synth-seg): the head's final map takes its name
        model = _renamed_output(model, output_name, "model_" + output_name)
        graph = model.graph
        output_name = "model_" + output_name
        outputs = {o.name: o for o in graph.output}
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 13:
        raise EdgeanomError(f"model opset {opset} is too old for the fused score head (need >= 13)")

    h = _HeadBuilder(opset)
    raw = output_name
    if outputs[output_name].type.tensor_type.elem_type != TensorProto.FLOAT:
        raw = h.op("Cast", [output_name], "output_fp32", to=TensorProto.FLOAT)

    new_outputs = []
    if spec.map is not None and spec.map.from_output:  # the model's output is the map: score it
        dims = _dims(graph, input_name)
        _map_score_head(h, raw, spec.map, dims[2], dims[3])
        new_outputs.append(helper.make_tensor_value_info(MAP_OUTPUT, TensorProto.FLOAT, ["batch", *dims[2:]]))
    elif spec.center is not None:
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
        if spec.map is None:
            h.non_finite_to_inf(value, check, "score", SCORE_OUTPUT)
        if spec.error_map:
            sq = sq if sq is not None else h.op("Mul", [diff, diff], "sq")
            dims = _dims(graph, input_name)
            csum = h.reduce("ReduceSum", sq, 1, "channel_sum")
            cmean = h.op(
                "Mul", [csum, h.const("inv_channels", np.array(1.0 / dims[1], dtype=np.float32))], "map"
            )
            if spec.map is not None:
                _map_score_head(h, cmean, spec.map, dims[2], dims[3])
            else:
                h.non_finite_to_inf(cmean, cmean, "error_map", MAP_OUTPUT)
            new_outputs.append(
                helper.make_tensor_value_info(MAP_OUTPUT, TensorProto.FLOAT, ["batch", *dims[2:]])
            )
    new_outputs.insert(0, helper.make_tensor_value_info(SCORE_OUTPUT, TensorProto.FLOAT, ["batch"]))

    fused = onnx.ModelProto()
    fused.CopyFrom(model)
    fused.graph.node.extend(h.nodes)
    fused.graph.initializer.extend(h.initializers)
    del fused.graph.output[:]
    fused.graph.output.extend(new_outputs)
    return fused


def _renamed_output(model: onnx.ModelProto, old: str, new: str) -> onnx.ModelProto:
    """A copy of `model` whose tensor `old` (a graph output) is called `new` everywhere."""
    import onnx

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    for node in copy.graph.node:
        node.output[:] = [new if o == old else o for o in node.output]
        node.input[:] = [new if i == old else i for i in node.input]
    for out in copy.graph.output:
        if out.name == old:
            out.name = new
    return copy


def gaussian_taps(sigma: float) -> np.ndarray:
    """The core's blur kernel (csrc/blur.hpp): radius int(4 sigma + 0.5), normalised in float64, then
    float32; [1.0] when the radius is 0."""
    r = int(4.0 * sigma + 0.5) if sigma > 0 else 0
    if r == 0:
        return np.ones(1, dtype=np.float32)
    x = np.arange(2 * r + 1, dtype=np.float64) - r
    phi = np.exp(-0.5 / (sigma * sigma) * x * x)
    return (phi / phi.sum()).astype(np.float32)


def reflect_rows(n: int, r: int) -> np.ndarray:
    """Indices of a length-n axis padded by r on each side with scipy's "reflect" (d c b a | a b c d | ...),
    repeated as the core does when r exceeds n."""
    i = np.arange(-r, n + r)
    m = np.mod(i, 2 * n)
    return np.where(m < n, m, 2 * n - 1 - m).astype(np.int64)


def _map_score_head(h: _HeadBuilder, raw_map: str, head: MapHead, height: int, width: int) -> None:
    """[N, H, W] map -> blurred, normalised `error_map` and its `score`, as `scoring.blur_maps`,
    the Scorer's normalisation and `scoring.map_score` compute them."""
    nan_free = h.non_finite_to_inf(raw_map, raw_map, "map_in", h.name("map_in"))
    taps = gaussian_taps(head.blur_sigma)
    current = nan_free
    if taps.size > 1:
        r = (taps.size - 1) // 2
        axis1 = h.const("blur_channel_axis", np.array([1], dtype=np.int64))
        x4 = h.op("Unsqueeze", [current, axis1], "blur_in")  # [N, 1, H, W]
        rows = h.op("Gather", [x4, h.const("blur_rows", reflect_rows(height, r))], "blur_pad_h", axis=2)
        x4 = h.op("Conv", [rows, h.const("blur_kernel_h", taps.reshape(1, 1, -1, 1))], "blur_h")
        cols = h.op("Gather", [x4, h.const("blur_cols", reflect_rows(width, r))], "blur_pad_w", axis=3)
        x4 = h.op("Conv", [cols, h.const("blur_kernel_w", taps.reshape(1, 1, 1, -1))], "blur_w")
        blurred = h.op("Squeeze", [x4, axis1], "blur_out")
        current = h.non_finite_to_inf(blurred, blurred, "blurred", h.name("blurred"))
    if head.mean is not None and head.scale is not None:
        centred = h.op("Sub", [current, h.const("map_mean", head.mean.astype(np.float32))], "map_centred")
        current = h.op(
            "Mul", [centred, h.const("map_scale", head.scale.astype(np.float32))], "map_normalised"
        )
    final = h.op("Identity", [current], "final_map", MAP_OUTPUT)
    flat = h.op("Flatten", [final], "map_flat", axis=1)
    pixels = height * width
    if head.mode == "max":
        value = h.reduce("ReduceMax", flat, 1, "map_max")
    else:
        k = max(1, min(int(head.k), pixels))
        top = h.op2("TopK", [flat, h.const("topk_k", np.array([k], dtype=np.int64))], "map_topk", axis=1)
        value = h.reduce("ReduceMean", top, 1, "map_topk_mean")
    h.non_finite_to_inf(value, value, "score", SCORE_OUTPUT)


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
