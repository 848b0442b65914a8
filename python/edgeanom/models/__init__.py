"""Detector families (one module each, registered with `@register`) and the registry that finds them.

Torch models live in `vectors`, `images`, `windows`, `svdd`, `frame_pred`, `synthetic`, `features` and
`gradknn` (fitted, not trained); scikit-learn baselines in
`baselines`; `checkpoint` saves and loads them inside a bundle and `onnx_export` writes their FP32 graph.
"""

from edgeanom.models.registry import (
    build_model,
    default_model,
    describe_models,
    get_model,
    model_kinds,
    model_names,
    register,
    resolve_params,
)

__all__ = [
    "build_model",
    "default_model",
    "describe_models",
    "get_model",
    "model_kinds",
    "model_names",
    "register",
    "resolve_params",
]
