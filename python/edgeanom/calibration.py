"""Choose the decision threshold from held-out scores, and summarise held-out normal scores.

Methods (the `--threshold` value):
- ``percentile:Q``   the Q-th percentile of held-out normal scores (e.g. ``percentile:99``)
- ``contamination:P`` expect a fraction P of anomalies: the (1 - P) quantile (e.g. ``contamination:0.01``)
- ``sigma:K``        mean + K standard deviations of held-out normal scores
- ``fpr:R``          the lowest threshold whose false-alarm rate on held-out normal scores is at most R
- ``f1``             the threshold with the best F1 on a labelled validation set
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from edgeanom.bundle import Threshold
from edgeanom.errors import EdgeanomError

METHODS = ("percentile", "contamination", "sigma", "fpr", "f1")
STAT_QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999)


def parse_method(spec: str) -> tuple[str, Optional[float]]:
    """'percentile:99' -> ('percentile', 99.0); checks the parameter's range."""
    name, _, arg = str(spec).strip().partition(":")
    name = name.strip().lower()
    if name not in METHODS:
        raise EdgeanomError(
            f"threshold method {spec!r}: expected one of {', '.join(m + ':X' for m in METHODS[:4])} or f1"
        )
    if name == "f1":
        if arg:
            raise EdgeanomError(f"threshold method {spec!r}: f1 takes no parameter")
        return name, None
    try:
        value = float(arg)
    except ValueError:
        raise EdgeanomError(
            f"threshold method {spec!r}: '{arg}' is not a number (e.g. {name}:{_EXAMPLE[name]})"
        ) from None
    lo, hi = _RANGE[name]
    if not lo < value < hi and not (name == "percentile" and value == 100.0):
        raise EdgeanomError(f"threshold method {spec!r}: {name} must be in ({lo:g}, {hi:g})")
    return name, value


_EXAMPLE = {"percentile": "99", "contamination": "0.01", "sigma": "3", "fpr": "0.01"}
_RANGE = {
    "percentile": (0.0, 100.0),
    "contamination": (0.0, 0.5),
    "sigma": (-100.0, 100.0),
    "fpr": (0.0, 1.0),
}


def check_labels(spec: str, n_anomalous: int) -> None:
    """A labelled method without labelled anomalies is an error (raised before any training is spent)."""
    if parse_method(spec)[0] == "f1" and n_anomalous == 0:
        raise EdgeanomError(
            "threshold method 'f1' needs labelled anomalies in the validation data "
            "(give --val-data with labels, or training data with a label column); "
            "otherwise use percentile:Q, sigma:K or fpr:R"
        )


def score_stats(scores: np.ndarray) -> dict[str, Any]:
    """Mean, std, min, max, quantiles and counts of the finite held-out normal scores."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    finite = s[np.isfinite(s)]
    if finite.size == 0:
        raise EdgeanomError("no finite validation scores to calibrate on (all inputs were NaN/inf?)")
    return {
        "n": int(s.size),
        "n_nonfinite": int(s.size - finite.size),
        "mean": float(finite.mean()),
        "std": float(finite.std()),
        "min": float(finite.min()),
        "max": float(finite.max()),
        "quantiles": {f"{q:g}": float(np.quantile(finite, q)) for q in STAT_QUANTILES},
    }


def best_f1_threshold(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(threshold, F1) maximising F1 when flagging `score > threshold`.

    sklearn's PR curve flags `score >= t`; the returned threshold sits halfway between that t and the next
    lower score, so the strict comparison used at run time flags the same samples.
    """
    from sklearn.metrics import precision_recall_curve

    y = np.asarray(labels).astype(int).reshape(-1)
    s = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=np.inf, posinf=np.finfo(np.float64).max)
    precision, recall, thresholds = precision_recall_curve(y, s)
    f1 = 2 * precision[:-1] * recall[:-1] / np.maximum(precision[:-1] + recall[:-1], 1e-12)
    i = int(np.argmax(f1))
    t = float(thresholds[i])
    below = s[s < t]
    return (0.5 * (t + float(below.max())) if below.size else t - max(abs(t), 1.0) * 1e-6), float(f1[i])


def calibrate(
    spec: str, normal_scores: np.ndarray, anomalous_scores: Optional[np.ndarray] = None
) -> Threshold:
    """The Threshold for `spec` from held-out normal (and, for f1, anomalous) scores, with normal stats."""
    name, value = parse_method(spec)
    stats = score_stats(normal_scores)
    normal = np.asarray(normal_scores, dtype=np.float64)
    finite = normal[np.isfinite(normal)]
    if name == "percentile":
        threshold = float(np.percentile(finite, value))
    elif name == "contamination":
        threshold = float(np.quantile(finite, 1.0 - value))
    elif name == "sigma":
        threshold = stats["mean"] + value * stats["std"]
    elif name == "fpr":
        # flag score > threshold: the ceil(R * n)-th largest score may be exceeded by at most R * n samples
        ordered = np.sort(finite)[::-1]
        allowed = int(np.floor(value * ordered.size))
        threshold = float(ordered[min(allowed, ordered.size - 1)])
    else:
        check_labels(spec, 0 if anomalous_scores is None else len(anomalous_scores))
        assert anomalous_scores is not None
        scores = np.concatenate([normal, np.asarray(anomalous_scores, dtype=np.float64)])
        labels = np.concatenate([np.zeros(normal.size), np.ones(len(anomalous_scores))])
        threshold, f1 = best_f1_threshold(scores, labels)
        stats["val_f1"] = f1
        stats["n_anomalous"] = len(anomalous_scores)
    return Threshold(float(threshold), f"{name}:{value:g}" if value is not None else name, stats)
