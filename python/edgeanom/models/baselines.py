"""Classical scikit-learn detectors (Isolation Forest, LOF in novelty mode, One-Class SVM) as baselines.

They take vectors or flattened windows and export through skl2onnx to a graph whose single output `score` is
the negated decision function, so higher means more anomalous, like every other edgeanom score.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from edgeanom.errors import EdgeanomError
from edgeanom.fileio import atomic_write
from edgeanom.models.registry import ModelInfo, get_model, register, resolve_params


class SklearnBaseline(ModelInfo):
    """A scikit-learn detector registered like the torch models; `estimator` builds the unfitted object."""

    family = "sklearn"
    kinds: tuple[str, ...] = ("window", "vector")
    output_name = "score"
    score_metric = "model"  # the graph's output is the score itself

    @staticmethod
    def estimator(params: dict[str, Any], seed: int) -> Any:
        raise NotImplementedError


@register
class IsolationForestBaseline(SklearnBaseline):
    type_name = "iforest"
    defaults: ClassVar[dict[str, Any]] = {"n_estimators": 100, "max_samples": "auto", "max_features": 1.0}

    @staticmethod
    def estimator(params: dict[str, Any], seed: int) -> Any:
        from sklearn.ensemble import IsolationForest

        return IsolationForest(random_state=seed, **params)


@register
class LocalOutlierFactorBaseline(SklearnBaseline):
    type_name = "lof"
    defaults: ClassVar[dict[str, Any]] = {"n_neighbors": 20, "leaf_size": 30}

    @staticmethod
    def estimator(params: dict[str, Any], seed: int) -> Any:
        from sklearn.neighbors import LocalOutlierFactor

        return LocalOutlierFactor(novelty=True, **params)


@register
class OneClassSVMBaseline(SklearnBaseline):
    type_name = "ocsvm"
    defaults: ClassVar[dict[str, Any]] = {"nu": 0.05, "gamma": "scale", "kernel": "rbf"}

    @staticmethod
    def estimator(params: dict[str, Any], seed: int) -> Any:
        from sklearn.svm import OneClassSVM

        return OneClassSVM(**params)


def fit_baseline(
    model_type: str, train_x: np.ndarray, params: dict[str, Any], seed: int = 0
) -> tuple[Any, dict[str, Any]]:
    """Fit on normal training samples (flattened); returns the estimator and its resolved parameters."""
    cls = get_model(model_type)
    if cls.family != "sklearn":
        raise EdgeanomError(f"{model_type!r} is a torch model, not a scikit-learn baseline")
    resolved = resolve_params(model_type, params, cls.defaults)
    flat = np.ascontiguousarray(train_x.reshape(train_x.shape[0], -1), dtype=np.float32)
    est = cls.estimator(resolved, seed)
    est.fit(flat)
    return est, resolved


def export_baseline(estimator: Any, input_shape: Sequence[int], path: Path) -> dict[str, Any]:
    """Write the ONNX graph: input `input` [batch, *shape] -> Flatten -> model -> Neg -> output `score` [batch]."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    features = math.prod(input_shape)
    try:
        model = to_onnx(
            estimator,
            initial_types=[("flat", FloatTensorType([None, features]))],
            target_opset={"": 17, "ai.onnx.ml": 3},
        )
    except Exception as exc:  # skl2onnx raises RuntimeError/NotImplementedError for unsupported settings
        raise EdgeanomError(f"cannot export {type(estimator).__name__} to ONNX: {exc}") from None
    graph = model.graph
    scores = next(o.name for o in graph.output if o.name != "label")
    graph.initializer.append(helper.make_tensor("score_shape", TensorProto.INT64, [1], [-1]))
    graph.node.insert(0, helper.make_node("Flatten", ["input"], ["flat"], axis=1, name="flatten_input"))
    graph.node.extend(
        [
            helper.make_node("Neg", [scores], ["neg_decision"], name="higher_is_anomalous"),
            helper.make_node("Reshape", ["neg_decision", "score_shape"], ["score"], name="score_vector"),
        ]
    )
    del graph.input[:]
    graph.input.append(
        helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", *map(int, input_shape)])
    )
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch"]))
    onnx.checker.check_model(model)
    data = model.SerializeToString()
    # parity: the graph must reproduce -decision_function
    probe = np.random.default_rng(0).random((4, *input_shape), dtype=np.float32)
    got = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(["score"], {"input": probe})[0]
    want = -estimator.decision_function(probe.reshape(4, -1))
    diff = float(np.max(np.abs(got - want)))
    if not diff <= 1e-3 * max(1.0, float(np.max(np.abs(want)))):
        raise EdgeanomError(
            f"ONNX export of {type(estimator).__name__} does not match scikit-learn (max abs diff {diff:.3g})"
        )
    atomic_write(Path(path), lambda fh: fh.write(data))
    return {"opset": 17, "max_abs_diff_vs_sklearn": diff, "checked_batch": 4}
