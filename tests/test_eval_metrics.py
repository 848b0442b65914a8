"""Detection metrics against hand-computed values; report files (JSON, CSV, real PNGs)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from edgeanom.bundle import Bundle
from edgeanom.evaluate.api import EvalSet, build_report
from edgeanom.evaluate.metrics import detection_metrics

SCORES = np.array([0.1, 0.2, 0.3, 0.35, 0.6, 0.4, 0.7, 0.9], dtype=np.float32)
LABELS = np.array([0, 0, 0, 0, 0, 1, 1, 1])
CLASSES = ["good"] * 5 + ["crack", "crack", "hole"]


def test_metrics_match_hand_computed_values():
    r = detection_metrics(SCORES, LABELS, threshold=0.5, classes=CLASSES)
    # flagged (> 0.5): 0.6 (normal), 0.7, 0.9 (anomalous) -> tp 2, fp 1, fn 1, tn 4
    assert r["confusion"] == {"tn": 4, "fp": 1, "fn": 1, "tp": 2}
    assert (
        r["precision"] == pytest.approx(2 / 3)
        and r["recall"] == pytest.approx(2 / 3)
        and r["f1"] == pytest.approx(2 / 3)
    )
    assert r["far"] == pytest.approx(1 / 5) and r["mar"] == pytest.approx(1 / 3)
    # AUROC: pairs (anomalous > normal) / 15: 0.4 beats 4 of 5, 0.7 and 0.9 beat all 5 -> 14 / 15
    assert r["auroc"] == pytest.approx(14 / 15)
    assert r["n_normal"] == 5 and r["n_anomalous"] == 3 and r["threshold"] == 0.5
    assert r["precision_at_k"] == {"3": pytest.approx(2 / 3)}  # top 3: 0.9, 0.7, 0.6
    # best F1: flag > ~0.375 -> {0.4, 0.6, 0.7, 0.9}: tp 3, fp 1 -> F1 = 6 / 7
    assert r["best_f1"] == pytest.approx(6 / 7) and 0.35 < r["best_threshold"] < 0.4
    assert r["per_class"]["hole"] == {
        **r["per_class"]["hole"],
        "n": 1,
        "anomalous": True,
        "flagged": 1.0,
        "auroc_vs_normal": 1.0,
    }
    assert r["per_class"]["crack"]["auroc_vs_normal"] == pytest.approx(9 / 10)
    assert (
        r["per_class"]["good"]["flagged"] == pytest.approx(0.2)
        and "auroc_vs_normal" not in r["per_class"]["good"]
    )


def test_non_finite_scores_rank_highest():
    r = detection_metrics(np.array([0.1, 0.2, np.inf, np.nan]), np.array([0, 0, 1, 1]), threshold=1.0)
    assert r["auroc"] == 1.0 and r["recall"] == 1.0 and r["n_nonfinite"] == 2


def _bundle(tmp_path) -> Bundle:
    return Bundle(
        tmp_path,
        {
            "model": {"type": "dense-ae"},
            "input": {"kind": "vector", "shape": [2]},
            "threshold": {"value": 0.5, "method": "percentile:99", "stats": {}},
        },
    )


def test_report_files(tmp_path):
    evalset = EvalSet(SCORES, LABELS, CLASSES, [f"s{i}" for i in range(8)], {"source": "test"})
    report = build_report(_bundle(tmp_path), evalset, tmp_path / "rep")
    saved = json.loads((tmp_path / "rep" / "report.json").read_text())
    for key in (
        "auroc",
        "aupr",
        "f1",
        "precision",
        "recall",
        "threshold",
        "best_f1",
        "best_threshold",
        "far",
        "mar",
        "n_normal",
        "n_anomalous",
    ):
        assert key in saved
    assert saved["auroc"] == pytest.approx(report["auroc"])
    for name in ("histogram.png", "roc.png", "pr.png"):
        img = cv2.imread(str(tmp_path / "rep" / name))
        assert img is not None and img.shape[0] > 100 and img.std() > 5, name  # a real, non-blank PNG
    rows = (tmp_path / "rep" / "scores.csv").read_text().splitlines()
    assert rows[0] == "name,label,class,score" and rows[6] == "s5,1,crack,0.400000006"


def test_only_normal_samples_give_false_alarm_rate_without_curves(tmp_path):
    evalset = EvalSet(np.array([0.1, 0.7, 0.2]), np.zeros(3, np.int8), None, ["a", "b", "c"])
    report = build_report(_bundle(tmp_path), evalset, tmp_path / "rep")
    assert report["auroc"] is None and report["aupr"] is None and report["far"] == pytest.approx(1 / 3)
    assert report["mar"] is None and report["best_f1"] is None
    assert sorted(p.name for p in (tmp_path / "rep").iterdir()) == [
        "histogram.png",
        "report.json",
        "scores.csv",
    ]
