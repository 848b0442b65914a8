"""Statistical detectors (zscore, ewma, cusum, seasonal): their ONNX graphs against float64 references
written from the textbook definitions, training through `train_bundle`, export, and short training data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from edgeanom.errors import EdgeanomError
from edgeanom.models import get_model, model_names
from edgeanom.models.statistical import detect_period, fit_statistical


def _windows(n: int = 40, t: int = 25, c: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 1.0, (n, t, c))


def _onnx(model_type: str, params: dict, shape: tuple[int, int], x: np.ndarray) -> np.ndarray:
    data = get_model(model_type).graph(shape, params).SerializeToString()
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return sess.run(["score"], {"input": x.astype(np.float32)})[0]


def tabular_cusum(series: np.ndarray, k: float) -> float:
    """Page's two-sided CUSUM, started at 0, run row by row: its largest value at the last row."""
    up = down = 0.0
    for v in series:
        up, down = max(0.0, up + v - k), max(0.0, down - v - k)
    return max(up, down)


def test_cusum_graph_is_the_tabular_chart() -> None:
    x = _windows()
    params = get_model("cusum").fit(x, {"k": 0.5})
    want_stat = np.array([[tabular_cusum(x[i, :, c], 0.5) for c in range(3)] for i in range(len(x))])
    np.testing.assert_allclose(get_model("cusum").features(x, params), want_stat, rtol=1e-12)
    z = np.abs(want_stat - params["mean"]) / params["std"]
    np.testing.assert_allclose(_onnx("cusum", params, (25, 3), x), z.max(axis=1), rtol=1e-5, atol=1e-5)


def test_ewma_graph_is_the_recursive_ewma() -> None:
    x = _windows(seed=1)
    lam = 0.3
    params = get_model("ewma").fit(x, {"lam": lam})
    rec = np.zeros((len(x), 3))
    norm = 0.0
    for row in range(25):  # e = lam * x + (1 - lam) * e, normalised by the weights' sum over the window
        rec = lam * x[:, row, :] + (1 - lam) * rec
        norm = lam + (1 - lam) * norm
    np.testing.assert_allclose(get_model("ewma").features(x, params), rec / norm, rtol=1e-12)
    np.testing.assert_allclose(
        _onnx("ewma", params, (25, 3), x), get_model("ewma").numpy_score(x, params), rtol=1e-5, atol=1e-5
    )


def test_zscore_graph_is_the_rolling_z() -> None:
    x = _windows(seed=2)
    x[3, -1, 1] += 12.0
    params = get_model("zscore").fit(x, {"min_std": 0.05})
    past = x[:, :-1, :]
    want = (np.abs(x[:, -1, :] - past.mean(axis=1)) / past.std(axis=1)).max(axis=1)
    np.testing.assert_allclose(_onnx("zscore", params, (25, 3), x), want, rtol=1e-4)
    assert int(np.argmax(want)) == 3


def test_seasonal_finds_the_period_and_ignores_one_bad_season() -> None:
    period = 12
    t = np.arange(period * 30)
    series = np.sin(2 * np.pi * t / period)[:, None] + np.random.default_rng(3).normal(0, 0.05, (len(t), 1))
    assert detect_period(series) == period
    windows = np.lib.stride_tricks.sliding_window_view(series, 3 * period + 1, axis=0).transpose(0, 2, 1)
    params = get_model("seasonal").fit(windows, {"period": 0, "seasons": 3})
    assert params["period"] == period
    x = windows[:5].copy()
    x[0, -1 - period, 0] += 5.0  # one season's reference is bad: the median of three ignores it
    x[1, -1, 0] += 5.0  # the newest row is bad: flagged
    got = _onnx("seasonal", params, (3 * period + 1, 1), x)
    np.testing.assert_allclose(got, get_model("seasonal").numpy_score(x, params), rtol=1e-4, atol=1e-4)
    assert got[1] > 20 and got[0] < 5
    with pytest.raises(EdgeanomError, match="no repeating pattern"):
        detect_period(np.random.default_rng(4).normal(size=(300, 2)))


def test_detectors_are_registered_models_trained_without_torch(tmp_path: Path) -> None:
    from edgeanom.export.pipeline import ExportOptions, export_bundle
    from edgeanom.train.api import train_bundle

    assert {"zscore", "ewma", "cusum", "seasonal"} <= set(model_names("window"))
    rng = np.random.default_rng(5)
    series = rng.normal(0, 1, (800, 2))
    bundle = train_bundle(series=series, model="cusum", out=tmp_path / "c", window=32)
    assert bundle.model_family == "stat" and bundle.meta["checkpoint"] is None
    assert bundle.meta["onnx"]["parity"]["max_abs_diff_vs_float64"] < 1e-4
    assert bundle.score["metric"] == "model" and bundle.score["adaptive"]["enabled"]
    result = export_bundle(bundle.path, ExportOptions())
    assert all(r.ok for r in result.parity)
    with pytest.raises(EdgeanomError, match="not a statistical detector"):
        fit_statistical("iforest", series[None], {}, tmp_path / "x.onnx")


def test_short_training_data_gets_a_shorter_window_or_a_clear_message(tmp_path: Path) -> None:
    from edgeanom.train.api import train_bundle

    rng = np.random.default_rng(6)
    bundle = train_bundle(series=rng.normal(size=(300, 2)), model="zscore", out=tmp_path / "z")
    assert bundle.input_shape == (30, 2)  # 240 training rows / 8
    with pytest.raises(EdgeanomError, match="too little data: 48 training rows"):
        train_bundle(series=rng.normal(size=(60, 2)), model="zscore", out=tmp_path / "tiny")
