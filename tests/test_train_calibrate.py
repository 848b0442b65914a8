"""Threshold methods against NumPy references; statistics; labelled-method errors."""

from __future__ import annotations

import numpy as np
import pytest

from edgeanom.calibration import best_f1_threshold, calibrate, parse_method
from edgeanom.errors import EdgeanomError


@pytest.fixture
def scores() -> np.ndarray:
    return np.random.default_rng(0).gamma(2.0, 1.0, size=1000).astype(np.float32)


def test_percentile_contamination_sigma(scores):
    ref = scores.astype(np.float64)
    assert calibrate("percentile:99", scores).value == pytest.approx(np.percentile(ref, 99))
    assert calibrate("contamination:0.05", scores).value == pytest.approx(np.quantile(ref, 0.95))
    assert calibrate("sigma:3", scores).value == pytest.approx(ref.mean() + 3 * ref.std())


@pytest.mark.parametrize("rate", [0.001, 0.01, 0.05, 0.2])
def test_fpr_threshold_bounds_the_false_alarm_rate(scores, rate):
    t = calibrate(f"fpr:{rate}", scores).value
    far = float((scores > t).mean())
    assert far <= rate
    assert float((scores >= t).mean()) > rate - 1.0 / scores.size  # and it is the lowest such threshold


def test_stats_describe_held_out_normal_scores(scores):
    with_inf = np.concatenate([scores, [np.inf]])
    th = calibrate("percentile:99", with_inf)
    s = th.stats
    assert s["n"] == 1001 and s["n_nonfinite"] == 1
    assert s["min"] == pytest.approx(float(scores.min())) and s["max"] == pytest.approx(float(scores.max()))
    assert s["quantiles"]["0.5"] == pytest.approx(float(np.median(scores.astype(np.float64))))
    assert th.method == "percentile:99"
    norm = th.normalise(np.array([s["min"], th.value, np.inf]))
    np.testing.assert_allclose(norm, [0.0, 0.5, 1.0])


def test_f1_threshold_separates_and_uses_strict_comparison():
    normal = np.array([0.1, 0.2, 0.3, 0.4, 0.5])
    anomalous = np.array([0.45, 0.8, 0.9])
    th = calibrate("f1", normal, anomalous)
    pred_normal, pred_anom = normal > th.value, anomalous > th.value
    tp, fp = pred_anom.sum(), pred_normal.sum()
    f1 = 2 * tp / (2 * tp + fp + (~pred_anom).sum())
    assert f1 == pytest.approx(th.stats["val_f1"])
    assert th.stats["val_f1"] == pytest.approx(
        best_f1_threshold(np.r_[normal, anomalous], np.r_[np.zeros(5), np.ones(3)])[1]
    )
    assert 0.4 < th.value < 0.45  # halfway below the lowest flagged score (0.45)


def test_method_errors():
    with pytest.raises(EdgeanomError, match="needs labelled anomalies"):
        calibrate("f1", np.ones(10))
    with pytest.raises(EdgeanomError, match="'abc' is not a number"):
        parse_method("percentile:abc")
    with pytest.raises(EdgeanomError, match="expected one of percentile:X"):
        parse_method("median:3")
    with pytest.raises(EdgeanomError, match=r"fpr must be in \(0, 1\)"):
        parse_method("fpr:2")
    with pytest.raises(EdgeanomError, match="no finite validation scores"):
        calibrate("percentile:99", np.array([np.nan, np.inf]))


def test_fpr_threshold_extrapolates_the_tail_and_says_how_sure_it_is():
    from scipy.stats import gamma

    from edgeanom.calibration import fpr_threshold

    rng = np.random.default_rng(0)
    true_rates, covered = [], 0
    for rep in range(4):
        scores = rng.gamma(2.0, 1.0, 60)  # 60 held-out scores: the 1% quantile is beyond their maximum
        t, tail = fpr_threshold(scores, 0.01, seed=rep)
        assert tail["method"] == "generalised Pareto tail" and tail["expected_far"] == 0.01
        assert t >= scores.max()
        lo, hi = tail["far_interval_90"]
        rate = float(gamma.sf(t, 2.0))
        true_rates.append(rate)
        covered += lo <= rate <= hi
    assert 0.003 < float(np.median(true_rates)) < 0.03  # near 1%, where the plain sample max is ~2.4%
    assert covered >= 3  # the 90% interval holds the true rate most of the time
    many = rng.gamma(2.0, 1.0, 5000)
    t, tail = fpr_threshold(many, 0.01)
    assert tail["method"] == "empirical" and abs(float((many > t).mean()) - 0.01) < 1e-3


def test_eval_reports_recall_at_far_and_whether_the_calibrated_rate_held(tmp_path):
    from edgeanom.evaluate.metrics import detection_metrics, recall_at_far

    s = np.r_[np.arange(100.0), 50 + np.arange(20.0)]
    y = np.r_[np.zeros(100, int), np.ones(20, int)]
    assert recall_at_far(s, y, 0.05) == float((s[100:] > np.quantile(s[:100], 0.95)).mean())
    report = detection_metrics(s, y, 90.0)
    assert set(report["recall_at_far"]) == {"0.01", "0.05"}
    from edgeanom.evaluate.api import calibration_check

    tail = {"expected_far": 0.01, "far_interval_90": [1e-8, 0.024], "method": "generalised Pareto tail"}
    assert calibration_check(tail, 0, 302)["held"]  # none of 302 is consistent with 1e-8 .. 2.4%
    assert not calibration_check(tail, 30, 302)["held"]  # 10% is not
    assert calibration_check(tail, 3, 302)["seen_interval_90"][0] > 0
