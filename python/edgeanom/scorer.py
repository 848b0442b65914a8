"""From model outputs to anomaly scores (and maps), as the bundle's `score` section says.

This is the one place that decides how a sample's score is computed, for eval, run and bench alike:
- a fused engine output (``score`` / ``error_map``) is used when the model has one;
- otherwise the C++ core computes it from input and reconstruction (or embedding vs Deep SVDD centre);
- scikit-learn baselines output a ``score`` directly.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Optional

import numpy as np

from edgeanom import scoring
from edgeanom.bundle import Bundle
from edgeanom.errors import EdgeanomError


@dataclass
class ScoreResult:
    scores: np.ndarray  # float32 [N]
    maps: Optional[np.ndarray] = None  # float32 [N, H, W] (blurred) for image models with map scoring


class Scorer:
    """Scores a batch from the model's named outputs; uses the C++ core for every reduction."""

    def __init__(self, bundle: Bundle) -> None:
        spec = bundle.score
        self.metric = str(spec.get("metric", "mse"))
        self.map = spec.get("map") or None
        self.center = bundle.center()
        weights = spec.get("weights")
        self.weights = (
            None if weights is None else np.asarray(weights, dtype=np.float32).reshape(bundle.input_shape)
        )
        onnx = bundle.onnx
        self.output_name = str(onnx.get("output", "reconstruction"))
        fused = onnx.get("fused") or {}
        self.fused_score = fused.get("score")
        # a model whose graph outputs the anomaly map itself (synth-seg) is scored like a fused map
        self.fused_map = fused.get("error_map") or ("error_map" if self.output_name == "error_map" else None)
        # the graph blurs, normalises and reduces the map itself: its score and map are final
        self.map_scored = (
            bool(fused.get("map_scored")) and bool(self.fused_score) and bool(fused.get("error_map"))
        )
        self.map_mean, self.map_scale = map_normalisation(bundle, self.map)

    def needs_input(self, output_names: Iterable[str]) -> bool:
        """Whether scoring these outputs needs the preprocessed input too.

        Not when the runner handed back the fused score/map the bundle's engine provides; a runner that
        does not produce them (the PyTorch reference, an un-fused ONNX) needs the input for the C++ core.
        """
        names = set(output_names)
        if self.map:
            return not (self.fused_map and self.fused_map in names)
        if self.fused_score and self.fused_score in names:
            return False
        return self.center is None and self.output_name != "score"

    def __call__(self, x: Optional[np.ndarray], outputs: dict[str, np.ndarray]) -> ScoreResult:
        if self.map_scored and self.fused_score in outputs and self.fused_map in outputs:
            scores = np.ascontiguousarray(outputs[self.fused_score], dtype=np.float32).reshape(-1)
            return ScoreResult(scores, np.ascontiguousarray(outputs[self.fused_map], dtype=np.float32))
        if self.map:
            sigma = float(self.map.get("blur_sigma", 0.0))
            if self.fused_map and self.fused_map in outputs:
                maps = np.ascontiguousarray(outputs[self.fused_map], dtype=np.float32)
                maps = scoring.blur_maps(maps, sigma) if sigma > 0 else maps
            else:
                maps = scoring.error_map(x, _contiguous(outputs[self.output_name]), blur_sigma=sigma)
            if self.map_mean is not None:
                maps = (maps - self.map_mean) * self.map_scale  # per-pixel z-score of the blurred map
            mode = str(self.map.get("mode", "topk_mean"))
            scores = scoring.map_score(maps, mode=mode, k=int(self.map.get("k", 1)))
            return ScoreResult(scores, maps)
        if self.fused_score and self.fused_score in outputs:
            return ScoreResult(np.ascontiguousarray(outputs[self.fused_score], dtype=np.float32).reshape(-1))
        if self.output_name == "score":
            return ScoreResult(np.ascontiguousarray(outputs["score"], dtype=np.float32).reshape(-1))
        out = _contiguous(outputs[self.output_name])
        if self.center is not None:
            return ScoreResult(scoring.reconstruction_error(out, self.center, metric="sse"))
        return ScoreResult(scoring.reconstruction_error(x, out, metric=self.metric, weights=self.weights))


def map_normalisation(
    bundle: Bundle, spec: Optional[dict]
) -> tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """Optional per-pixel statistics of normal blurred error maps (`score.map.normalize`: {"mean", "scale"}
    .npy files of shape [H, W]); for fixed cameras and aligned objects, where some pixels always err more."""
    norm = (spec or {}).get("normalize")
    if not norm:
        return None, None
    image = (bundle.preprocess.get("image") or {}).get("size")
    arrays = []
    for key in ("mean", "scale"):
        path = bundle.path / str(norm[key])
        if not path.is_file():
            raise EdgeanomError(
                f"bundle {bundle.path}: score.map.normalize.{key} file '{norm[key]}' is missing"
            )
        try:
            a = np.load(path, allow_pickle=False)  # never unpickle: a bundle must not run code
        except (ValueError, OSError, EOFError) as exc:
            raise EdgeanomError(f"{path}: not a readable .npy array of numbers ({exc})") from None
        if a.dtype.kind not in "fiu" or (image is not None and list(a.shape) != list(image)):
            raise EdgeanomError(
                f"{path}: expected a {image[0] if image else 'H'}x{image[1] if image else 'W'} array of numbers "
                f"(the map size), got {a.dtype} of shape {a.shape}"
            )
        a = np.ascontiguousarray(a, dtype=np.float32)
        if not np.all(np.isfinite(a)):
            raise EdgeanomError(f"{path}: contains NaN or infinite values")
        arrays.append(a)
    return arrays[0], arrays[1]


def _contiguous(a: np.ndarray) -> np.ndarray:
    if a.dtype not in (np.float32, np.float16):
        a = a.astype(np.float32)
    return np.ascontiguousarray(a)
