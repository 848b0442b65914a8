"""Model-ready samples for parity checks and INT8 calibration: real data through the bundle's preprocessing,
plus random inputs that cover the input range.

Every bundle written by `train` carries real samples of its own (`holdout.npz`: a few training samples, held-out
normal samples and any labelled anomalies); `parity_inputs` puts them next to the user's data and random inputs,
each set named and described so the parity table can say what it ran on.

User data comes from a path (`--data`, `--calib-data`): an image/video folder for image bundles, CSV/Parquet
tables or sensor series for vector/window bundles (loaded like `edgeanom eval` loads them, labels included),
or a `.npy` / `.npz` file of already preprocessed samples (`.npz`: arrays `x` and optionally `y`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from edgeanom.bundle import Bundle
from edgeanom.errors import EdgeanomError

DEFAULT_LIMIT = 512


@dataclass
class Samples:
    """Preprocessed model inputs [N, *input_shape] with optional 0/1 labels (1 = anomalous)."""

    x: np.ndarray
    labels: Optional[np.ndarray]
    source: str
    name: str = "data"  # the set's name in the parity table: train | held-out | data | random

    @property
    def normal(self) -> np.ndarray:
        return self.x if self.labels is None else self.x[self.labels == 0]


def random_inputs(bundle: Bundle, n: int = 16, seed: int = 0) -> np.ndarray:
    """Random model inputs: pixels / min-max scaled features in [0, 1], standardised features ~ N(0, 1)."""
    rng = np.random.default_rng(seed)
    shape = (n, *bundle.input_shape)
    if _unit_range(bundle):
        return rng.random(shape, dtype=np.float32)
    return rng.standard_normal(shape, dtype=np.float32)


def _unit_range(bundle: Bundle) -> bool:
    """Whether model inputs live in [0, 1] (pixels, min-max scaled features) rather than around N(0, 1)."""
    scaler = (bundle.preprocess.get("scaler") or {}).get("kind")
    return bundle.input_kind == "image" or scaler == "minmax"


def parity_inputs(bundle: Bundle, data: Optional[Samples] = None, seed: int = 0) -> list[Samples]:
    """The input sets every check runs on, in order: the bundle's training samples ("train"), its held-out
    normal samples and labelled anomalies ("held-out"), the user's `data`, and 16 random inputs ("random").
    `source` describes each set in words."""
    from edgeanom.holdout import HOLDOUT_FILE, load_holdout

    sets = []
    holdout = load_holdout(bundle)
    if holdout is not None and len(holdout.train_x):
        n = len(holdout.train_x)
        sets.append(Samples(holdout.train_x, None, f"{n} training samples ({HOLDOUT_FILE})", "train"))
    if holdout is not None and len(holdout.x):
        anomalous = f" + {holdout.n_anomalous} labelled anomalous" if holdout.n_anomalous else ""
        what = f"{holdout.n_normal} held-out normal{anomalous} samples ({HOLDOUT_FILE})"
        sets.append(Samples(holdout.x, holdout.y, what, "held-out"))
    if data is not None:
        labelled = "" if data.labels is None else f", {int((data.labels == 1).sum())} labelled anomalous"
        what = f"{len(data.x)} samples from {data.source}{labelled}"
        sets.append(Samples(data.x, data.labels, what, "data"))
    x = random_inputs(bundle, 16, seed)
    span = "in [0, 1]" if _unit_range(bundle) else "~ N(0, 1)"
    sets.append(Samples(x, None, f"{len(x)} random inputs {span}", "random"))
    return sets


def load_samples(
    bundle: Bundle, source: Any, labels: Any = None, limit: int = DEFAULT_LIMIT, seed: int = 0
) -> Samples:
    """Real samples from `source` (a path or an array of preprocessed inputs), at most `limit` of them.

    When subsampling, labelled anomalies are kept preferentially (up to half of `limit`).
    """
    if isinstance(source, np.ndarray):
        x, y, name = source, None if labels is None else np.asarray(labels), "array"
    else:
        path = Path(source)
        if not path.exists():
            raise EdgeanomError(f"data path '{path}' does not exist")
        if path.suffix.lower() in (".npy", ".npz"):
            x, y = _load_array_file(path)
        elif bundle.input_kind == "image":
            x, y = _load_images(bundle, path, labels)
        else:
            x, y = _load_tables(bundle, path, labels)
        name = str(path)
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.shape[1:] != tuple(bundle.input_shape):
        raise EdgeanomError(
            f"{name}: samples have shape {x.shape}, the model takes (N, {', '.join(map(str, bundle.input_shape))})"
        )
    if len(x) == 0:
        raise EdgeanomError(f"{name}: no samples found")
    if y is not None:
        y = np.asarray(y).astype(np.int8).reshape(-1)
        if y.size != len(x):
            raise EdgeanomError(f"{name}: {y.size} labels for {len(x)} samples")
    keep = _subsample(len(x), y, limit, seed)
    return Samples(x[keep], None if y is None else y[keep], name)


def _subsample(n: int, y: Optional[np.ndarray], limit: int, seed: int) -> np.ndarray:
    if n <= limit:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    if y is None or not (y == 1).any():
        return np.sort(rng.choice(n, limit, replace=False))
    anomalous, normal = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    k_anom = min(len(anomalous), limit // 2)
    k_norm = min(len(normal), limit - k_anom)
    return np.sort(
        np.concatenate(
            [rng.choice(anomalous, k_anom, replace=False), rng.choice(normal, k_norm, replace=False)]
        )
    )


def _load_array_file(path: Path) -> tuple[np.ndarray, Optional[np.ndarray]]:
    try:
        if path.suffix.lower() == ".npy":
            return np.load(path, allow_pickle=False), None
        with np.load(path, allow_pickle=False) as z:
            if "x" not in z:
                raise EdgeanomError(
                    f"{path}: expected an array named 'x' (and optionally 'y'), found {list(z.keys())}"
                )
            return z["x"], z.get("y")
    except ValueError as exc:
        raise EdgeanomError(f"{path}: not a readable numpy file ({exc})") from None


def _load_images(bundle: Bundle, path: Path, labels: Any) -> tuple[np.ndarray, Optional[np.ndarray]]:
    from edgeanom import data as loaders
    from edgeanom.preprocess import Preprocessor

    folder = loaders.ImageSource(path, labels=labels)
    pre = Preprocessor(bundle)
    pack = pre.pack  # video models: the packed samples run / eval score (no warm-up frames)
    records = list(folder if pack is None else loaders.ScoredPacking(folder, pack, str(path)))
    if not records:
        raise EdgeanomError(f"{path}: no readable images or video frames")
    x = np.array(pre([r.frame for r in records]), copy=True)
    y = np.array([int(r.label or 0) for r in records], dtype=np.int8) if folder.labelled else None
    return x, y


def _load_tables(bundle: Bundle, path: Path, labels: Any) -> tuple[np.ndarray, Optional[np.ndarray]]:
    from edgeanom import data as loaders
    from edgeanom.data import label_windows
    from edgeanom.preprocess import Preprocessor, sliding_windows

    spec = bundle.preprocess
    tables = loaders.load_tables(
        os.fspath(path),
        columns=spec.get("columns"),
        time_column=spec.get("time_column"),
        detect_time=bundle.input_kind == "window",
        labels=labels,
    )
    xs, ys = [], []
    for t in tables:
        if bundle.input_kind == "vector":
            xs.append(t.values)
            ys.append(t.labels)
        else:
            window = spec.get("window") or {}
            length, stride = int(window["length"]), int(window.get("stride", 1))
            xs.append(sliding_windows(t.values, length, stride))
            ys.append(
                label_windows(t.labels, length, stride, len(t.values)) if t.labels is not None else None
            )
    raw = np.concatenate(xs)
    y = None if any(v is None for v in ys) else np.concatenate(ys)
    return Preprocessor(bundle)(raw), y
