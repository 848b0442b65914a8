"""Detection-quality numbers from scores and labels (sklearn.metrics does the curve work)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

import numpy as np

from edgeanom.calibration import best_f1_threshold

PRECISION_AT = (10, 50, 100)


def finite_scores(scores: np.ndarray) -> np.ndarray:
    """Non-finite scores (the core gives +inf for NaN input) rank above every finite score."""
    s = np.asarray(scores, dtype=np.float64)
    finite = s[np.isfinite(s)]
    top = float(finite.max()) if finite.size else 0.0
    return np.nan_to_num(
        s, nan=top + 1.0, posinf=top + 1.0, neginf=float(finite.min()) - 1.0 if finite.size else -1.0
    )


def _ratio(num: int, den: int) -> Optional[float]:
    return float(num) / den if den else None


def precision_at_k(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    top = np.argsort(-scores, kind="stable")[:k]
    return float(labels[top].mean()) if k else 0.0


def _stats(s: np.ndarray) -> Optional[dict[str, float]]:
    if s.size == 0:
        return None
    return {
        "mean": float(s.mean()),
        "std": float(s.std()),
        "min": float(s.min()),
        "median": float(np.median(s)),
        "max": float(s.max()),
    }


def detection_metrics(
    scores: np.ndarray,
    labels: np.ndarray,
    threshold: float,
    classes: Optional[Sequence[Optional[str]]] = None,
) -> dict[str, Any]:
    """AUROC/AUPR, threshold metrics (score > threshold flags), best F1, FAR/MAR, precision@k, per class."""
    from sklearn.metrics import (
        average_precision_score,
        confusion_matrix,
        precision_recall_fscore_support,
        roc_auc_score,
    )

    s = finite_scores(scores)
    y = np.asarray(labels).astype(int).reshape(-1)
    n_anom = int(y.sum())
    n_norm = int(y.size - n_anom)
    both = n_anom > 0 and n_norm > 0
    pred = (s > threshold).astype(int)
    tn, fp, fn, tp = (int(v) for v in confusion_matrix(y, pred, labels=[0, 1]).ravel())
    precision, recall, f1, _ = precision_recall_fscore_support(y, pred, average="binary", zero_division=0)
    best_t, best_f1 = best_f1_threshold(s, y) if n_anom else (None, None)
    report: dict[str, Any] = {
        "auroc": float(roc_auc_score(y, s)) if both else None,
        "aupr": float(average_precision_score(y, s)) if n_anom else None,
        "f1": float(f1),
        "precision": float(precision),
        "recall": float(recall),
        "threshold": float(threshold),
        "best_f1": best_f1,
        "best_threshold": best_t,
        "far": _ratio(fp, fp + tn),
        "mar": _ratio(fn, fn + tp),
        "n_normal": n_norm,
        "n_anomalous": n_anom,
        "n_nonfinite": int((~np.isfinite(np.asarray(scores, dtype=np.float64))).sum()),
        "confusion": {"tn": tn, "fp": fp, "fn": fn, "tp": tp},
        "precision_at_k": {
            str(k): precision_at_k(s, y, k)
            for k in sorted({*(k for k in PRECISION_AT if k <= y.size), n_anom} - {0})
        },
        "scores": {"normal": _stats(s[y == 0]), "anomalous": _stats(s[y == 1])},
        # the recall a threshold set on these normal samples would reach at 1% / 5% false alarms
        "recall_at_far": {f"{f:g}": recall_at_far(s, y, f) for f in (0.01, 0.05)} if both else None,
    }
    if classes is not None and any(c is not None for c in classes):
        report["per_class"] = per_class(s, y, pred, classes)
    return report


def recall_at_far(s: np.ndarray, y: np.ndarray, far: float) -> float:
    """Recall with the threshold at the (1 - far) quantile of the normal samples' scores (score > t flags)."""
    t = float(np.quantile(s[y == 0], 1.0 - far))
    return float((s[y == 1] > t).mean())


def per_class(
    s: np.ndarray, y: np.ndarray, pred: np.ndarray, classes: Sequence[Optional[str]]
) -> dict[str, Any]:
    """For each class: count, flagged fraction, score stats, and AUROC of that class against all normals."""
    from sklearn.metrics import roc_auc_score

    names = np.asarray([c if c is not None else "" for c in classes], dtype=object)
    normal = y == 0
    out: dict[str, Any] = {}
    for name in dict.fromkeys(names.tolist()):
        m = names == name
        anomalous = bool(y[m].all())
        entry: dict[str, Any] = {
            "n": int(m.sum()),
            "anomalous": anomalous,
            "flagged": float(pred[m].mean()),
            "scores": _stats(s[m]),
        }
        if anomalous and normal.any():
            sel = m | normal
            entry["auroc_vs_normal"] = float(roc_auc_score(y[sel], s[sel]))
        out[name or "unnamed"] = entry
    return out
