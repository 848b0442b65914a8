"""Threshold methods against NumPy references; statistics; labelled-method errors."""

from __future__ import annotations

from pathlib import Path

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


def test_empirical_fpr_threshold_promises_the_rate_it_delivers():
    """Where enough scores lie above it, the threshold is an order statistic: the expected false-alarm rate
    recorded is the one a new normal score meets (checked against the true rate of the scores' law), and its
    90% interval holds that rate about 90% of the time."""
    from scipy.stats import gamma

    from edgeanom.calibration import fpr_threshold

    rng = np.random.default_rng(3)
    true_rates, covered = [], 0
    for _ in range(300):
        t, tail = fpr_threshold(rng.gamma(2.0, 1.0, 250), 0.05)
        rate = float(gamma.sf(t, 2.0))
        true_rates.append(rate)
        lo, hi = tail["far_interval_90"]
        covered += lo <= rate <= hi
    assert tail["method"] == "empirical" and tail["requested_far"] == 0.05
    assert tail["expected_far"] == pytest.approx(12 / 251)  # the 12th largest of 250
    assert float(np.mean(true_rates)) == pytest.approx(12 / 251, abs=0.003)
    assert 0.85 <= covered / 300 <= 0.95


@pytest.mark.parametrize("n", [2, 5, 11])
def test_a_few_scores_say_the_rate_their_maximum_gives(n):
    """Fewer than 12 scores leave no tail to fit: the threshold is their maximum, and the bundle records the
    1 / (n + 1) false alarms that come with it (not the 5% asked for), with an interval that holds it."""
    scores = np.random.default_rng(n).gamma(2.0, 1.0, n)
    t = calibrate("fpr:0.05", scores)
    tail = t.stats["tail"]
    assert t.value == pytest.approx(scores.max())
    assert tail["expected_far"] == pytest.approx(1 / (n + 1)) and tail["requested_far"] == 0.05
    lo, hi = tail["far_interval_90"]
    assert 0 < lo < 1 / (n + 1) < hi < 1


@pytest.mark.parametrize("n", [60, 209, 5000])
def test_fpr_threshold_of_identical_scores_is_that_score(n):
    """Normal data that never varies (one image, repeated) leaves no tail to fit: the threshold is the score
    itself, a finite number, never the -inf of a tail with no exceedances."""
    t = calibrate("fpr:0.01", np.full(n, 1.5e-7, dtype=np.float32))
    assert np.isfinite(t.value) and t.value == pytest.approx(1.5e-7)


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


def test_fold_indices_partition_the_training_data() -> None:
    from edgeanom.train.api import fold_indices

    for n, k, ordered in ((10, 3, True), (31, 5, False), (4, 2, False)):
        parts = fold_indices(n, k, ordered, seed=0)
        assert len(parts) == k and sorted(np.concatenate(parts).tolist()) == list(range(n))
        if ordered:  # contiguous blocks: neighbouring frames share a fold
            assert all(np.all(np.diff(p) == 1) for p in parts)
    assert not np.array_equal(fold_indices(31, 5, False, 0)[0], fold_indices(31, 5, False, 1)[0])


def test_out_of_fold_scores_join_the_calibration(tmp_path: Path) -> None:
    """--folds 3: every training image gets a score from a model that never saw it, and the threshold is
    calibrated on held-out + out-of-fold scores (recorded in the bundle)."""
    import cv2

    from edgeanom.train.api import train_bundle

    rng = np.random.default_rng(0)
    folder = tmp_path / "good"
    folder.mkdir()
    for i in range(30):
        img = (120 + 40 * np.sin(np.arange(32) / 3.0)[None, :] + rng.normal(0, 8, (32, 32))).clip(0, 255)
        cv2.imwrite(str(folder / f"{i:02d}.png"), img.astype(np.uint8))
    common = {"image_size": 32, "epochs": 2, "threads": 1, "progress": False, "channels": [8, 8], "latent": 8}
    plain = train_bundle(folder, model="conv-ae", out=tmp_path / "plain", **common)
    folded = train_bundle(folder, model="conv-ae", out=tmp_path / "folded", folds=3, **common)
    n_train, n_val = folded.meta["data"]["n_train"], folded.meta["data"]["n_val_normal"]
    assert plain.meta["threshold"]["stats"]["n"] == n_val
    stats = folded.meta["threshold"]["stats"]
    assert stats["n"] == n_val + n_train and stats["out_of_fold"] == {"folds": 3, "n_scores": n_train}
    assert folded.meta["data"]["fingerprint"] == plain.meta["data"]["fingerprint"]  # same final model data
    with pytest.raises(EdgeanomError, match=r"--folds must be 0 \(off\) or in \[2, 20\], got 1"):
        train_bundle(folder, model="conv-ae", out=tmp_path / "bad", folds=1, **common)
    with pytest.raises(EdgeanomError, match="'iforest' is fitted once"):
        train_bundle(table=rng.normal(size=(50, 3)), model="iforest", out=tmp_path / "bad", folds=3)
