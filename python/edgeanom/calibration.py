"""Choose the decision threshold from held-out scores, and summarise held-out normal scores.

Methods (the `--threshold` value):
- ``percentile:Q``   the Q-th percentile of held-out normal scores (e.g. ``percentile:99``)
- ``contamination:P`` expect a fraction P of anomalies: the (1 - P) quantile (e.g. ``contamination:0.01``)
- ``sigma:K``        mean + K standard deviations of held-out normal scores
- ``fpr:R``          the threshold whose false-alarm rate on unseen normal data is expected to be R: the
                     k-th largest of n held-out scores with k = floor(R (n + 1)) when that leaves at least 10
                     of them above it (a new normal score exceeds it with probability k / (n + 1), and the rate
                     it will see follows Beta(k, n + 1 - k): no assumption about the scores), else extrapolated
                     from a generalised Pareto fit to their upper tail (so 50 held-out images can still promise
                     1%; a 90% bootstrap interval). Under 12 scores there is no tail to fit: the threshold is an
                     order statistic and the record says the rate that truly comes with it (1 / (n + 1) for the
                     maximum), which can be well above R
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


MIN_EXCEEDANCES = 10  # below this many held-out scores above the threshold, the tail is fitted
TAIL_FRACTION = 0.2  # the fit uses the top 20% of the held-out scores (at least 8)
BOOTSTRAP = 200


def _gpd_quantile(u: float, xi: float, sigma: float, zeta: float, rate: float) -> float:
    """The score exceeded with probability `rate` when a fraction `zeta` exceeds `u` with GPD(xi, sigma) excesses."""
    # no held-out score above u (all equal): nothing to extrapolate, the maximum is the threshold
    if zeta <= 0.0:
        return u
    if abs(xi) < 1e-6:
        return u + sigma * float(np.log(zeta / rate))
    return u + sigma / xi * ((zeta / rate) ** xi - 1.0)


def _gpd_exceedance(u: float, xi: float, sigma: float, zeta: float, t: float) -> float:
    """P(score > t) under the same tail model (t >= u)."""
    z = max(t - u, 0.0) / sigma
    if abs(xi) < 1e-6:
        return zeta * float(np.exp(-z))
    base = 1.0 + xi * z
    return 0.0 if base <= 0 else zeta * float(base ** (-1.0 / xi))


def _fit_tail(scores: np.ndarray) -> tuple[float, float, float, float]:
    """(u, xi, sigma, zeta): peaks over the (1 - TAIL_FRACTION) quantile, generalised Pareto by maximum likelihood."""
    from scipy.stats import genpareto

    ordered = np.sort(scores)
    k = max(8, int(np.ceil(TAIL_FRACTION * ordered.size)))
    u = float(ordered[-k - 1]) if k < ordered.size else float(ordered[0])
    excess = ordered[ordered > u] - u
    zeta = excess.size / ordered.size
    if excess.size < 3 or float(excess.max()) <= 0:
        return u, 0.0, max(float(excess.mean()) if excess.size else 0.0, 1e-12), zeta
    xi, _, sigma = genpareto.fit(excess, floc=0.0)
    xi = float(np.clip(xi, -0.5, 0.5))  # keep the extrapolation sane on few points
    return u, xi, max(float(sigma), 1e-12), zeta


def fpr_threshold(scores: np.ndarray, rate: float, seed: int = 0) -> tuple[float, dict[str, Any]]:
    """(threshold, tail record) for an expected false-alarm rate `rate` on unseen normal scores."""
    finite = np.asarray(scores, dtype=np.float64)
    n = finite.size
    ordered = np.sort(finite)
    if rate * n >= MIN_EXCEEDANCES or n < 12:
        # Exchangeable scores: a new one lands above the k-th largest of n with probability k / (n + 1), and the
        # probability mass above that order statistic is Beta(k, n + 1 - k) distributed (the classical coverage
        # of order statistics), so the expectation and its interval are exact whatever the scores' law.
        from scipy.stats import beta

        k = min(max(1, int(np.floor(rate * (n + 1)))), n)
        threshold = float(ordered[n - k])
        lo, hi = (float(v) for v in beta.ppf([0.05, 0.95], k, n + 1 - k))
        return threshold, {
            "method": "empirical",
            "n": int(n),
            "expected_far": k / (n + 1),
            "far_interval_90": [lo, hi],
            "requested_far": float(rate),
        }
    fit = _fit_tail(finite)
    threshold = max(_gpd_quantile(*fit, rate), float(ordered[-1]) if rate * n < 1 else float("-inf"))
    # how sure is that rate: refit on bootstrap resamples of the held-out scores and read each one's rate at t
    rng = np.random.default_rng(seed)
    rates = [
        _gpd_exceedance(*_fit_tail(rng.choice(finite, size=n, replace=True)), threshold)
        for _ in range(BOOTSTRAP)
    ]
    lo, hi = (float(v) for v in np.quantile(rates, [0.05, 0.95]))
    return threshold, {
        "method": "generalised Pareto tail",
        "n": int(n),
        "expected_far": float(rate),
        "far_interval_90": [lo, hi],
        "requested_far": float(rate),
        "u": fit[0],
        "xi": fit[1],
        "sigma": fit[2],
        "tail_fraction": fit[3],
    }


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
        threshold, stats["tail"] = fpr_threshold(finite, float(value))
    else:
        check_labels(spec, 0 if anomalous_scores is None else len(anomalous_scores))
        assert anomalous_scores is not None
        scores = np.concatenate([normal, np.asarray(anomalous_scores, dtype=np.float64)])
        labels = np.concatenate([np.zeros(normal.size), np.ones(len(anomalous_scores))])
        threshold, f1 = best_f1_threshold(scores, labels)
        stats["val_f1"] = f1
        stats["n_anomalous"] = len(anomalous_scores)
    return Threshold(float(threshold), f"{name}:{value:g}" if value is not None else name, stats)
