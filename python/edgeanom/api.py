"""The Python API: `edgeanom.load(path)` gives a Detector that scores arrays, frames or windows exactly as
`edgeanom run` does (bundle preprocessing -> backend -> scorer), and `export(...)` / `evaluate(...)` / `train(...)`
call the commands' entry points.

    >>> import edgeanom
    >>> detector = edgeanom.load("edgeanom-model")          # doctest: +SKIP
    >>> result = detector.score(frames)                      # doctest: +SKIP
    >>> result.scores, result.is_anomaly, detector.threshold # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from edgeanom.bundle import DEFAULT_BUNDLE_DIR, Bundle, load_bundle
from edgeanom.errors import EdgeanomError


@dataclass
class Scores:
    """Scores of a batch: raw (`scores`), the verdict at the bundle's threshold, normalised to [0, 1]."""

    scores: np.ndarray  # float32 [N], higher is more anomalous
    is_anomaly: np.ndarray  # bool [N]: score > threshold (a non-finite score counts as anomalous)
    normalised: np.ndarray  # float64 [N] in [0, 1]; the threshold sits at 0.5
    maps: Optional[np.ndarray] = None  # float32 [N, H, W] for image bundles that score a map


class Detector:
    """A bundle opened on a backend. Use as a context manager, or call `close()`.

    `score(samples)` takes what `Preprocessor(bundle)` takes: a list (or [N, H, W, 3] array) of BGR uint8
    frames for image bundles, an [N, T, C] array of raw sensor windows, or an [N, F] array of raw feature
    rows; `preprocessed=True` takes model-ready float32 tensors instead. For a video bundle that packs frames,
    give consecutive frames of one stream with `stream=True`; they are packed causally, as `run` does.
    """

    def __init__(
        self, bundle: Bundle, backend: str = "auto", precision: str = "fp32", threads: int = 0
    ) -> None:
        from edgeanom.backends import open_runner
        from edgeanom.preprocess import Preprocessor
        from edgeanom.scorer import Scorer

        self.bundle = bundle
        self.runner = open_runner(bundle, backend, precision, threads=threads)
        self._preprocess = Preprocessor(bundle)
        self._scorer = Scorer(bundle)
        self._threshold = bundle.threshold

    @property
    def threshold(self) -> float:
        return float(self._threshold.value)

    @property
    def backend(self) -> str:
        return str(getattr(self.runner, "selection", self.runner.name))

    def score(
        self, samples: Any, *, preprocessed: bool = False, stream: bool = False, batch_size: int = 64
    ) -> Scores:
        from edgeanom.inference import score_arrays

        if isinstance(samples, np.ndarray) and self.bundle.input_kind == "image" and not preprocessed:
            samples = list(samples)
        result = score_arrays(
            self.bundle,
            self.runner,
            samples,
            batch_size,
            preprocessed=preprocessed,
            keep_maps=True,
            preprocessor=self._preprocess,
            scorer=self._scorer,
            pack=stream,
        )
        scores = result.scores
        flagged = ~np.isfinite(scores) | (scores > self.threshold)
        return Scores(scores, flagged, self._threshold.normalise(scores), result.maps)

    def is_anomaly(self, samples: Any, **kwargs: Any) -> np.ndarray:
        return self.score(samples, **kwargs).is_anomaly

    def close(self) -> None:
        self.runner.close()

    def __enter__(self) -> Detector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def load(
    path: Any = DEFAULT_BUNDLE_DIR, backend: str = "auto", precision: str = "fp32", threads: int = 0
) -> Detector:
    """Open a bundle for scoring; the same backend choice, preprocessing and scorer as `edgeanom run`."""
    bundle = load_bundle(Path(path))
    if bundle.meta.get("threshold") is None:
        raise EdgeanomError(f"bundle {bundle.path}: it has no calibrated threshold (bundle.json 'threshold')")
    return Detector(bundle, backend, precision, threads)


def train(data: Any = None, model_type: Optional[str] = None, out: Any = None, **options: Any) -> Bundle:
    """`edgeanom train`: see `edgeanom.train.api.train_bundle` for the options."""
    from edgeanom.train.api import train_bundle

    return train_bundle(data, model_type, out, **options)


def export(bundle: Any = DEFAULT_BUNDLE_DIR, **options: Any) -> Any:
    """`edgeanom export`: options are `edgeanom.export.pipeline.ExportOptions` fields (fp16, engine, ...)."""
    from edgeanom.export.pipeline import ExportOptions, export_bundle

    return export_bundle(bundle, ExportOptions(**options))


def evaluate(bundle: Any = DEFAULT_BUNDLE_DIR, data: Any = None, **options: Any) -> dict[str, Any]:
    """`edgeanom eval`: see `edgeanom.evaluate.api.evaluate_bundle` for the options."""
    from edgeanom.evaluate.api import evaluate_bundle

    return evaluate_bundle(bundle, data, **options)


__all__: Sequence[str] = ("Detector", "Scores", "evaluate", "export", "load", "train")
