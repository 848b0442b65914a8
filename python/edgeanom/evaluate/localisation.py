"""Where the anomaly is: pixel AUROC and PRO of the anomaly maps against ground-truth masks, and overlays of the
worst misses and false alarms, for image sets laid out like MVTec AD (``ground_truth/<class>/<name>_mask.png``
beside ``test/``).

PRO (per-region overlap, Bergmann et al., MVTec AD): for each threshold, the mean over every connected defect
region of the share of its pixels flagged, against the false-positive rate on defect-free pixels; the area under
that curve up to a false-positive rate of 0.3, divided by 0.3. Unlike pixel AUROC it weighs a small scratch as
much as a large stain.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np

MAX_FPR = 0.3
THRESHOLDS = 200


def find_mask_dir(source: Any) -> Optional[Path]:
    """MVTec layout: `<category>/ground_truth` beside the `<category>/test` folder being evaluated."""
    root = Path(source)
    for candidate in (root.parent / "ground_truth", root / "ground_truth"):
        if candidate.is_dir():
            return candidate
    return None


def load_mask(mask_dir: Path, name: str, size: tuple[int, int]) -> np.ndarray:
    """The boolean mask [H, W] of test image `name` ("<class>/<file>") at map size; all False for a good image
    (no mask file). An unreadable mask file is an error naming it."""
    import cv2

    from edgeanom.errors import EdgeanomError

    rel = Path(name)
    path = mask_dir / rel.parent / f"{rel.stem}_mask.png"
    if not path.is_file():
        return np.zeros(size, dtype=bool)
    mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise EdgeanomError(f"{path}: cannot read the mask image")
    return cv2.resize(mask, (size[1], size[0]), interpolation=cv2.INTER_NEAREST) > 127


def pixel_auroc(maps: np.ndarray, masks: np.ndarray) -> Optional[float]:
    from sklearn.metrics import roc_auc_score

    y = masks.reshape(-1)
    if y.all() or not y.any():
        return None
    s = np.nan_to_num(maps.reshape(-1).astype(np.float64), nan=np.inf, posinf=1e300, neginf=-1e300)
    return float(roc_auc_score(y, s))


def pro_score(maps: np.ndarray, masks: np.ndarray, max_fpr: float = MAX_FPR) -> Optional[float]:
    """Normalised area under the PRO curve up to `max_fpr` (None without defect regions)."""
    import cv2
    from sklearn.metrics import auc

    regions: list[tuple[int, np.ndarray]] = []  # (image, flat pixel indices) per connected defect region
    for i, mask in enumerate(masks):
        count, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
        flat = labels.reshape(-1)
        regions += [(i, np.flatnonzero(flat == r)) for r in range(1, count)]
    negatives = ~masks
    if not regions or not negatives.any():
        return None
    values = np.nan_to_num(maps.astype(np.float64), nan=np.inf)
    thresholds = np.unique(np.quantile(values[negatives], np.linspace(1.0, 1.0 - max_fpr, THRESHOLDS)))[::-1]
    flat_maps = values.reshape(len(values), -1)
    fprs, pros = [0.0], [0.0]
    n_neg = float(negatives.sum())
    for t in thresholds:
        fpr = float((values[negatives] > t).sum()) / n_neg
        overlap = np.mean([(flat_maps[i][idx] > t).mean() for i, idx in regions])
        fprs.append(min(fpr, max_fpr))
        pros.append(float(overlap))
        if fpr >= max_fpr:
            break
    order = np.argsort(fprs, kind="stable")
    return float(auc(np.asarray(fprs)[order], np.asarray(pros)[order]) / max_fpr)


def write_overlays(
    folder: Path,
    root: Path,
    names: list[str],
    scores: np.ndarray,
    labels: np.ndarray,
    maps: np.ndarray,
    n: int = 3,
) -> list[str]:
    """PNG overlays (map as a heat map over the image) of the `n` defective images scored lowest (misses) and
    the `n` good images scored highest (false alarms); returns the files written."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    bad, good = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    picks = [("miss", i) for i in bad[np.argsort(scores[bad])][:n]]
    picks += [("false-alarm", i) for i in good[np.argsort(-scores[good])][:n]]
    for kind, i in picks:
        image = cv2.imread(str(root / names[i]), cv2.IMREAD_COLOR)
        if image is None:
            continue
        m = np.nan_to_num(maps[i].astype(np.float64), nan=0.0, posinf=0.0)
        span = float(m.max() - m.min()) or 1.0
        heat = cv2.applyColorMap(((m - m.min()) / span * 255).astype(np.uint8), cv2.COLORMAP_JET)
        heat = cv2.resize(heat, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
        out = cv2.addWeighted(image, 0.6, heat, 0.4, 0.0)
        name = f"{kind}-{Path(names[i]).parent.name}-{Path(names[i]).stem}.png"
        cv2.imwrite(str(folder / name), out)
        written.append(f"{folder.name}/{name}")
    return written
