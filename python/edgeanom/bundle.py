"""The model bundle: the directory that `train` writes and `run`, `export`, `bench` and `eval` read.

Schema (documented in docs/bundle.md) — `bundle.json` holds:

- ``schema_version`` (int, currently 1) and ``edgeanom_version``
- ``model``: ``{"type": "conv-ae", "family": "torch" | "sklearn", "params": {...}}``
- ``input``: ``{"kind": "image" | "window" | "vector", "shape": [...per-sample shape...], "names": [...]}``
  image shape is ``[C, H, W]``; window shape ``[T, C]``; vector shape ``[F]``.
- ``preprocess``: ``{"image": {"size": [H, W], "color": "gray" | "rgb", "resize": "area" | "fast-area"
  (optional, absent = "area"), "pack": {"frames": T, "spacing": S} (optional)} | null,
  "scaler": {"kind": "minmax" | "standard", "offset": [...], "scale": [...]} | null,
  "window": {"length": T, "stride": S} | null, "columns": [...] | null, "time_column": str | null}``
  Pixels become ``float32 / 255`` in NCHW; scaled features are ``(x - offset) * scale``. ``resize``: how frames
  shrink to the model size: OpenCV's area filter, or ``fast-area`` (exact 2x2 box means while a side stays at
  least twice the target, then one area step; what train writes), see ``edgeanom.preprocess.fast_area_resize``.
  ``pack`` (video models: ``frame-pred``, ``clip-lstm``): before that, each stream's grey frames t-(T-1)S, ...,
  t-S, t are packed into the T channels of one frame (causal; the first (T-1)S frames repeat frame 0), see
  ``edgeanom.preprocess.FramePacker``; color is then ``rgb`` and the channels run oldest -> newest.
- ``score``: ``{"metric": "mse", "center": "center.npy" | null,
  "map": {"blur_sigma": float, "mode": "max" | "topk_mean", "k": int,
  "normalize": {"mean": "map_mean.npy", "scale": "map_scale.npy"} (optional)} | null}``
  (``normalize``: the blurred map becomes ``(map - mean) * scale`` per pixel before the top-k reduction)
- ``threshold``: ``{"value": float, "method": "percentile:99.5", "stats": {"mean", "std", "min", "max",
  "quantiles": {"0.5": ..., ...}}}``
- ``onnx``: ``{"file": "model.onnx", "input": "input", "output": "reconstruction" | "embedding" | "score",
  "fused": {"score": "score", "error_map": "error_map"} | null, "fp16_file": str | null, "parity": {...}}``
- ``checkpoint``: file name of the PyTorch (or pickled scikit-learn) checkpoint, or null
- ``history``: per-epoch ``{"epoch", "train_loss", "val_loss"}``; ``data``: fingerprint and counts
- ``engines``: TensorRT engine cache entries (written by export/run)
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from edgeanom._version import __version__
from edgeanom.errors import EdgeanomError
from edgeanom.fileio import atomic_write_text
from edgeanom.jsonutil import to_jsonable

SCHEMA_VERSION = 1
BUNDLE_FILE = "bundle.json"
DEFAULT_BUNDLE_DIR = Path("edgeanom-model")
INPUT_KINDS = ("image", "window", "vector")
MODEL_FAMILIES = ("torch", "sklearn", "stat")  # stat: statistical detectors, ONNX only (no checkpoint)


@dataclass
class Threshold:
    """Decision threshold on the raw score, how it was chosen, and held-out normal score statistics."""

    value: float
    method: str
    stats: dict[str, Any] = field(default_factory=dict)

    def normalise(self, scores: np.ndarray) -> np.ndarray:
        """Map raw scores to [0, 1] so that the threshold sits at 0.5 (see `graded`)."""
        return graded(scores, self.value, float(self.stats.get("min", 0.0)))

    def to_json(self) -> dict[str, Any]:
        return {"value": float(self.value), "method": self.method, "stats": self.stats}


def graded(scores: np.ndarray, threshold: float, low: float = 0.0) -> np.ndarray:
    """Scores -> [0, 1], monotone, with `threshold` at 0.5, so tools can rank alarms by it.

    From `low` (the normal minimum) to the threshold the map is linear, 0 -> 0.5. Above it,
    1 - 0.5 * span / (score - low), span = threshold - low: 0.75 at twice the span, 0.95 at ten times; it
    approaches 1 without reaching it, so a much higher score always ranks higher (no saturation). NaN and
    +inf give 1.
    """
    x = np.asarray(scores, dtype=np.float64)
    span = max(float(threshold) - float(low), 1e-12)
    d = x - float(low)
    with np.errstate(divide="ignore", invalid="ignore"):
        above = 1.0 - 0.5 * span / np.maximum(d, span)
    out = np.where(d <= span, 0.5 * np.clip(d, 0.0, None) / span, above)
    return np.where(np.isnan(x) | (x == np.inf), 1.0, out)


@dataclass
class Bundle:
    """A loaded bundle directory. `meta` is the parsed bundle.json; properties give typed views of it."""

    path: Path
    meta: dict[str, Any]

    # --- typed views -------------------------------------------------------------------------------
    @property
    def model_type(self) -> str:
        return str(self.meta["model"]["type"])

    @property
    def model_family(self) -> str:
        return str(self.meta["model"].get("family", "torch"))

    @property
    def input_kind(self) -> str:
        return str(self.meta["input"]["kind"])

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Per-sample input shape (no batch axis)."""
        return tuple(int(d) for d in self.meta["input"]["shape"])

    @property
    def preprocess(self) -> dict[str, Any]:
        return self.meta.get("preprocess", {})

    @property
    def score(self) -> dict[str, Any]:
        return self.meta.get("score", {"metric": "mse", "center": None, "map": None})

    @property
    def threshold(self) -> Threshold:
        t = self.meta["threshold"]
        return Threshold(float(t["value"]), str(t.get("method", "")), dict(t.get("stats", {})))

    @property
    def onnx(self) -> dict[str, Any]:
        return self.meta.get("onnx") or {}

    @property
    def onnx_path(self) -> Path:
        return self.path / self.onnx.get("file", "model.onnx")

    @property
    def checkpoint_path(self) -> Optional[Path]:
        name = self.meta.get("checkpoint")
        return self.path / name if name else None

    def center(self) -> Optional[np.ndarray]:
        """Deep SVDD centre (float32 row vector), or None for reconstruction models."""
        name = self.score.get("center")
        if not name:
            return None
        p = self.path / name
        if not p.is_file():
            raise EdgeanomError(f"bundle {self.path}: score.center file '{name}' is missing")
        return np.load(p).astype(np.float32).reshape(1, -1)

    # --- persistence -------------------------------------------------------------------------------
    def save(self) -> Path:
        """Validate, then write bundle.json atomically (temp file + rename): a crash never leaves half a
        file, and no code path can write a bundle that `load_bundle` would refuse."""
        self.path.mkdir(parents=True, exist_ok=True)
        self.meta["schema_version"] = SCHEMA_VERSION
        self.meta.setdefault("edgeanom_version", __version__)
        target = self.path / BUNDLE_FILE
        validate_meta(self.meta, str(target))
        atomic_write_text(target, json.dumps(to_jsonable(self.meta, strict=False), indent=2) + "\n")
        return target


_REQUIRED = ("model", "input", "threshold")


# --- the one builder: every bundle.json starts here ----------------------------------------------------
def preprocess_section(
    *,
    image: Optional[dict[str, Any]] = None,
    scaler: Optional[dict[str, Any]] = None,
    window: Optional[dict[str, Any]] = None,
    columns: Optional[list[str]] = None,
    time_column: Optional[str] = None,
) -> dict[str, Any]:
    """The `preprocess` section with every key present (absent steps are null)."""
    return {
        "image": image,
        "scaler": scaler,
        "window": window,
        "columns": columns,
        "time_column": time_column,
    }


def onnx_section(
    output: str,
    *,
    file: str = "model.onnx",
    fp16_file: Optional[str] = None,
    parity: Optional[dict[str, Any]] = None,
) -> dict[str, Any]:
    """The `onnx` section of a freshly exported graph (export later adds fused outputs and FP16)."""
    return {
        "file": file,
        "input": "input",
        "output": output,
        "fused": None,
        "fp16_file": fp16_file,
        "parity": dict(parity or {}),
    }


def fixed_threshold(value: float, **stats: float) -> dict[str, Any]:
    """A `threshold` section set by hand rather than calibrated (synthetic and test bundles)."""
    return Threshold(float(value), "fixed", {"min": 0.0, **stats}).to_json()


def new_bundle(
    path: str | os.PathLike[str],
    *,
    model_type: str,
    input_kind: str,
    shape: list[int] | tuple[int, ...],
    preprocess: dict[str, Any],
    family: str = "torch",
    params: Optional[dict[str, Any]] = None,
    names: Optional[list[str]] = None,
    score_map: Optional[dict[str, Any]] = None,
    onnx: Optional[dict[str, Any]] = None,
    threshold: Optional[dict[str, Any]] = None,
    checkpoint: Optional[str] = None,
    data: Optional[dict[str, Any]] = None,
) -> Bundle:
    """A new, unsaved bundle with every section of the schema present; fill in what training adds, then
    `save()` (which validates). Train, the sample bundles of `demo` and the test/benchmark factories all
    start here, so bundle.json has one shape."""
    return Bundle(
        Path(path),
        {
            "schema_version": SCHEMA_VERSION,
            "edgeanom_version": __version__,
            "model": {"type": model_type, "family": family, "params": dict(params or {})},
            "input": {"kind": input_kind, "shape": [int(d) for d in shape], "names": list(names or [])},
            "preprocess": {**preprocess_section(), **preprocess},
            "score": {"metric": "mse", "center": None, "map": score_map},
            "threshold": threshold,
            "onnx": onnx,
            "checkpoint": checkpoint,
            "history": [],
            "data": dict(data or {}),
            "holdout": None,
        },
    )


def load_bundle(path: str | os.PathLike[str] = DEFAULT_BUNDLE_DIR, *, need_onnx: bool = True) -> Bundle:
    """Load and validate a bundle directory; every problem is an EdgeanomError naming the file and field."""
    root = Path(path)
    meta_file = root / BUNDLE_FILE
    if not root.exists():
        raise EdgeanomError(
            f"no model bundle at '{root}'. Make one with: edgeanom train --data PATH --out {root} "
            f"(or learn the scene from a camera: edgeanom train --camera 0 --duration 120 --out {root})"
        )
    if not meta_file.is_file():
        raise EdgeanomError(f"'{root}' is not a model bundle: {BUNDLE_FILE} is missing")
    try:
        meta = json.loads(meta_file.read_text())
    except json.JSONDecodeError as exc:
        raise EdgeanomError(f"{meta_file}: invalid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(meta, dict):
        raise EdgeanomError(f"{meta_file}: expected a JSON object at the top level")
    version = meta.get("schema_version")
    if version != SCHEMA_VERSION:
        raise EdgeanomError(
            f"{meta_file}: unknown schema_version {version!r} (this edgeanom {__version__} reads "
            f"version {SCHEMA_VERSION}); retrain or upgrade edgeanom"
        )
    validate_meta(meta, str(meta_file))
    bundle = Bundle(root, meta)
    if need_onnx and not bundle.onnx_path.is_file():
        raise EdgeanomError(
            f"bundle {root}: ONNX model '{bundle.onnx_path.name}' is missing "
            f"(re-create it with: edgeanom export --model {root})"
        )
    return bundle


# --- validation: every section, so a bad bundle fails at load with one line in run, eval, export and bench ---
SCORE_METRICS = ("mse", "mae", "sse", "rmse", "max", "model")  # "model": the graph outputs the score itself
MAP_MODES = ("max", "topk_mean")
_RANK = {"image": 3, "window": 2, "vector": 1}


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def validate_meta(meta: dict[str, Any], where: str) -> None:
    """Check bundle.json's sections; raise EdgeanomError naming `where`, the field and the value at fault."""

    def bad(field_name: str, expected: str, value: Any) -> EdgeanomError:
        return EdgeanomError(f"{where}: {field_name} must be {expected}, got {value!r}")

    for key in _REQUIRED:
        if key not in meta:
            raise EdgeanomError(f"{where}: required field '{key}' is missing")
    model = meta["model"]
    if not isinstance(model, dict) or not isinstance(model.get("type"), str) or not model["type"]:
        raise bad("model.type", "a model name", model.get("type") if isinstance(model, dict) else model)
    if model.get("family", "torch") not in MODEL_FAMILIES:
        raise bad("model.family", f"one of {', '.join(MODEL_FAMILIES)}", model.get("family"))
    inp = meta["input"]
    if not isinstance(inp, dict):
        raise bad("input", "an object with kind and shape", inp)
    kind = inp.get("kind")
    if kind not in INPUT_KINDS:
        raise EdgeanomError(f"{where}: input.kind must be one of {INPUT_KINDS}, got {kind!r}")
    shape = inp.get("shape")
    if (
        not isinstance(shape, list)
        or len(shape) != _RANK[kind]
        or not all(isinstance(d, int) and not isinstance(d, bool) and 0 < d <= 1 << 20 for d in shape)
    ):
        raise bad("input.shape", f"{_RANK[kind]} positive integers for {kind} input", shape)
    for key in ("preprocess", "onnx"):
        if meta.get(key) is not None and not isinstance(meta[key], dict):
            raise bad(key, "an object", meta[key])
    score = meta.get("score")
    if score is not None:
        _validate_score(score, bad)
    threshold = meta["threshold"]
    if threshold is None:
        return  # a bundle being trained; run/eval need one and say so when they read it
    if not isinstance(threshold, dict):
        raise bad("threshold", "an object with a value", threshold)
    value = threshold.get("value")
    if not _number(value):
        raise bad("threshold.value", "a finite number", value)
    if not isinstance(threshold.get("stats", {}), dict):
        raise bad("threshold.stats", "an object", threshold.get("stats"))
    if not scores_can_be_negative(score) and value < 0:
        metric = (score or {}).get("metric", "mse")
        raise bad("threshold.value", f"a number >= 0 (a {metric} error is never negative)", value)


def scores_can_be_negative(score: Optional[dict[str, Any]]) -> bool:
    """Whether a bundle's scores can fall below 0: a model's own score (a decision function) or a map
    normalised per pixel can; an error never is, so a threshold below 0 would flag every sample."""
    score = score or {}
    return score.get("metric", "mse") == "model" or bool((score.get("map") or {}).get("normalize"))


_ADAPTIVE_COUNTS = (
    "window",
    "warmup",
    "min_history",
    "holdoff",
    "relearn_after",
    "relearn_every",
    "level_rows",
)
_ADAPTIVE_POSITIVE = ("threshold", "gate", "offset", "min_scale", "level_min_scale")


def _validate_adaptive(spec: Any, bad: Any) -> None:
    """score.adaptive: the parameters of the adaptive stage (edgeanom/adaptive.py)."""
    if not isinstance(spec, dict):
        raise bad("score.adaptive", "an object or null", spec)
    if not isinstance(spec.get("enabled", True), bool):
        raise bad("score.adaptive.enabled", "true or false", spec.get("enabled"))
    for key in _ADAPTIVE_COUNTS:
        v = spec.get(key, 0)
        if not (isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 1 << 20):
            raise bad(f"score.adaptive.{key}", "an integer in [0, 1048576]", v)
    for key in ("window", "threshold", "gate", "offset", "min_scale", "min_history"):
        if key not in spec:
            raise bad(f"score.adaptive.{key}", "present", None)
    for key in _ADAPTIVE_POSITIVE:
        v = spec.get(key, 1.0)
        if not (_number(v) and v > 0):
            raise bad(f"score.adaptive.{key}", "a finite number > 0", v)
    prior = spec.get("prior", [])
    if not (isinstance(prior, list) and len(prior) <= 1001 and all(_number(v) for v in prior)):
        raise bad("score.adaptive.prior", "a list of at most 1001 finite numbers", "<invalid list>")
    if not 2 <= spec["min_history"] <= spec["window"]:
        raise bad("score.adaptive.min_history", f"in [2, window={spec['window']}]", spec["min_history"])


def _validate_score(score: Any, bad: Any) -> None:
    if not isinstance(score, dict):
        raise bad("score", "an object with a metric", score)
    if score.get("metric", "mse") not in SCORE_METRICS:
        raise bad("score.metric", f"one of {', '.join(SCORE_METRICS)}", score.get("metric"))
    if score.get("center") is not None and not isinstance(score["center"], str):
        raise bad("score.center", "a file name or null", score["center"])
    weights = score.get("weights")
    if weights is not None and not (isinstance(weights, list) and all(_number(w) for w in weights)):
        raise bad("score.weights", "a list of finite numbers or null", "<non-numeric list>")
    if score.get("adaptive") is not None:
        _validate_adaptive(score["adaptive"], bad)
    smap = score.get("map")
    if smap is None:
        return
    if not isinstance(smap, dict):
        raise bad("score.map", "an object or null", smap)
    sigma = smap.get("blur_sigma", 0.0)
    if not _number(sigma) or sigma < 0:
        raise bad("score.map.blur_sigma", "a finite number >= 0", sigma)
    if smap.get("mode", "max") not in MAP_MODES:
        raise bad("score.map.mode", f"one of {', '.join(MAP_MODES)}", smap.get("mode"))
    k = smap.get("k")
    if k is not None and not (isinstance(k, int) and not isinstance(k, bool) and k >= 1):
        raise bad("score.map.k", "an integer >= 1 or null", k)
    norm = smap.get("normalize")
    if norm not in (None, False) and not (
        isinstance(norm, dict) and isinstance(norm.get("mean"), str) and isinstance(norm.get("scale"), str)
    ):
        raise bad("score.map.normalize", "null or an object naming the mean and scale files", norm)
