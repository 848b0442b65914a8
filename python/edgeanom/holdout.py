"""A capped sample of the data a bundle was trained and calibrated on, kept in the bundle as `holdout.npz`.

`edgeanom export` checks its graphs against PyTorch on these real samples and measures what FP16 costs on the
held-out ones without being handed the data again. Samples are the preprocessed float32 model input exactly as
training used it (bit-for-bit: no FP16 rounding, so parity tolerances hold), drawn at random with the training
seed and kept in their original order, and capped in count and bytes so that bundles stay small:

- `x` [N, *input_shape] float32, `y` [N] int8: held-out normal validation samples (y = 0) and labelled
  anomalies (y = 1), at most `max_per_class` of each and `MAX_HELD_OUT_BYTES` together;
- `train_x` [M, *input_shape] float32: a few training samples (at most `MAX_TRAIN`, `MAX_TRAIN_BYTES`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from edgeanom.bundle import Bundle
from edgeanom.errors import EdgeanomError

HOLDOUT_FILE = "holdout.npz"
MAX_PER_CLASS = 256  # held-out normal samples, and labelled anomalies, kept at most
MAX_HELD_OUT_BYTES = 8 * 2**20  # x, normal and anomalous together (before compression)
MAX_TRAIN = 32
MAX_TRAIN_BYTES = 2**20


@dataclass
class Holdout:
    """Held-out samples `x` with labels `y` (1 = anomalous) and a few training samples `train_x`."""

    x: np.ndarray
    y: np.ndarray
    train_x: np.ndarray

    @property
    def n_normal(self) -> int:
        return int((self.y == 0).sum())

    @property
    def n_anomalous(self) -> int:
        return int((self.y == 1).sum())

    @property
    def normal(self) -> np.ndarray:
        return self.x[self.y == 0]

    def record(self) -> dict[str, Any]:
        """The bundle.json entry describing the file."""
        return {
            "file": HOLDOUT_FILE,
            "n_normal": self.n_normal,
            "n_anomalous": self.n_anomalous,
            "n_train": len(self.train_x),
        }


def sample_holdout(
    val_x: np.ndarray,
    val_anomalous_x: Optional[np.ndarray],
    train_x: np.ndarray,
    seed: int = 0,
    max_per_class: int = MAX_PER_CLASS,
) -> Optional[Holdout]:
    """The samples to keep: anomalies get up to half of the byte budget, normal samples the rest.

    None when nothing fits (`max_per_class` 0, or a single sample larger than the budget).
    """
    shape = val_x.shape[1:]
    per_sample = 4 * int(np.prod(shape, dtype=np.int64))
    anomalous = val_anomalous_x if val_anomalous_x is not None else val_x[:0]
    cap = MAX_HELD_OUT_BYTES // max(per_sample, 1)
    n_anom = min(len(anomalous), max_per_class, cap // 2)
    n_norm = min(len(val_x), max_per_class, cap - n_anom)
    n_anom = min(len(anomalous), max_per_class, cap - n_norm)  # normal data left room over
    n_train = min(len(train_x), MAX_TRAIN, MAX_TRAIN_BYTES // max(per_sample, 1)) if max_per_class else 0
    if n_norm + n_anom + n_train == 0:
        return None
    rng = np.random.default_rng(seed)

    def pick(a: np.ndarray, k: int) -> np.ndarray:
        keep = np.sort(rng.choice(len(a), k, replace=False)) if k < len(a) else np.arange(len(a))
        return np.asarray(a[keep], dtype=np.float32)

    normal, anom = pick(val_x, n_norm), pick(anomalous, n_anom)
    return Holdout(
        x=np.concatenate([normal, anom]).reshape(-1, *shape),
        y=np.r_[np.zeros(n_norm, np.int8), np.ones(n_anom, np.int8)],
        train_x=pick(train_x, n_train).reshape(-1, *shape),
    )


def save_holdout(holdout: Holdout, folder: Path) -> dict[str, Any]:
    """Write `folder/holdout.npz` (compressed); returns its bundle.json record."""
    with open(Path(folder) / HOLDOUT_FILE, "wb") as fh:
        np.savez_compressed(fh, x=holdout.x, y=holdout.y, train_x=holdout.train_x)
    return holdout.record()


def load_holdout(bundle: Bundle) -> Optional[Holdout]:
    """The bundle's stored samples, or None for bundles written without them (older or `holdout_samples: 0`)."""
    record = bundle.meta.get("holdout")
    if not record:
        return None
    name = str(record.get("file", HOLDOUT_FILE))
    path = bundle.path / name
    if not path.is_file():
        raise EdgeanomError(f"bundle {bundle.path}: holdout file '{name}' is missing")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in ("x", "y", "train_x") if k in z}
    except (OSError, ValueError) as exc:
        raise EdgeanomError(f"{path}: not a readable .npz file ({exc})") from None
    if "x" not in arrays or "y" not in arrays:
        raise EdgeanomError(f"{path}: expected arrays 'x' and 'y', found {sorted(arrays)}")
    shape = tuple(bundle.input_shape)
    x = arrays["x"]
    train_x = arrays.get("train_x", np.zeros((0, *shape), np.float32))
    y = arrays["y"].astype(np.int8).reshape(-1)
    for key, a in (("x", x), ("train_x", train_x)):
        if a.shape[1:] != shape:
            raise EdgeanomError(
                f"{path}: '{key}' has shape {a.shape}, the model takes (N, {', '.join(map(str, shape))})"
            )
    if len(y) != len(x):
        raise EdgeanomError(f"{path}: {len(y)} labels 'y' for {len(x)} samples 'x'")
    return Holdout(
        np.ascontiguousarray(x, dtype=np.float32), y, np.ascontiguousarray(train_x, dtype=np.float32)
    )
