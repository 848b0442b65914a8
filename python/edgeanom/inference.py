"""Score samples through the deployed path: bundle preprocessing -> runner -> C++ scorer, in batches.

Training calibration, `eval`, `run` and `bench` share this loop, so a threshold chosen at training time is
compared against exactly the numbers the device computes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

import numpy as np

from edgeanom.backends import Runner
from edgeanom.bundle import Bundle
from edgeanom.preprocess import Preprocessor
from edgeanom.scorer import Scorer, ScoreResult


def score_arrays(
    bundle: Bundle,
    runner: Runner,
    samples: Any,
    batch_size: int = 64,
    *,
    preprocessed: bool = False,
    keep_maps: bool = False,
    preprocessor: Optional[Preprocessor] = None,
    scorer: Optional[Scorer] = None,
    pack: bool = False,
) -> ScoreResult:
    """Score every sample; returns float32 scores [N] (and error maps [N, H, W] when `keep_maps`).

    `samples` are raw inputs as `Preprocessor(bundle)` takes them (a list of BGR frames for images, an
    (N, T, C) or (N, F) array of raw values otherwise), or model-ready float32 tensors when `preprocessed`.
    For a bundle that packs frames (preprocess.image.pack) give packed frames, or consecutive frames of one
    stream with `pack=True` to pack them here (causally, as `run` does).
    """
    preprocess = preprocessor or Preprocessor(bundle)
    packer = preprocess.new_packer() if pack and not preprocessed else None
    if packer is not None:
        samples = [packer.push(f) for f in samples]
    score = scorer or Scorer(bundle)
    n = len(samples)
    scores = np.empty(n, dtype=np.float32)
    maps: list[np.ndarray] = []
    for start in range(0, n, max(1, int(batch_size))):
        chunk: Sequence[Any] = samples[start : start + batch_size]
        x = np.ascontiguousarray(chunk, dtype=np.float32) if preprocessed else preprocess(chunk)
        result = score(x, runner.infer(x))
        scores[start : start + len(chunk)] = result.scores
        if keep_maps and result.maps is not None:
            maps.append(np.array(result.maps, dtype=np.float32, copy=True))
    return ScoreResult(scores, np.concatenate(maps) if maps else None)
