"""Streaming statistical detectors: the control charts process engineers already know, as models.

Each takes the bundle's scaled sensor window (T rows x C channels, standardised with the training data's
mean and standard deviation) and outputs one score per window, the strongest channel's evidence in
standard deviations. Training only measures a few statistics of the normal windows; the ONNX graph is built
from them directly (no torch), so the detectors run wherever the learned models run, through the same
scorer, adaptive stage, alarms and sinks.

- `zscore`: the newest row against the mean and spread of the window's earlier rows (rolling z-score). For
  sudden spikes and steps on a signal whose level wanders.
- `ewma`: an EWMA chart, the exponentially weighted mean of the window (weight lambda on the newest row)
  against its normal mean and spread. For small, sustained shifts that a single row hides in noise.
- `cusum`: a two-sided tabular CUSUM chart over the window (slack k), started at the window's first row.
  For slow creeping changes (wear, fouling, sensor drift), which it accumulates.
- `seasonal`: the newest row against the rows one and two periods earlier (seasonal naive forecast), the
  period found in the training data by autocorrelation (or given). For daily or weekly cycles, where a value
  that is normal at noon is an anomaly at midnight.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Optional

import numpy as np

from edgeanom.errors import EdgeanomError
from edgeanom.fileio import atomic_write
from edgeanom.models.registry import ModelInfo, get_model, register, resolve_params

OPSET = 17
_MIN_STD = 1e-3  # floor on every spread, in training standard deviations


class StatisticalDetector(ModelInfo):
    """Base class: `fit` measures the normal windows, `numpy_score` is the float64 reference and
    `nodes` the ONNX graph that computes the same score."""

    family = "stat"
    kinds: tuple[str, ...] = ("window",)
    output_name = "score"
    score_metric = "model"

    @classmethod
    def features(cls, x: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        """(N, T, C) windows -> (N, C) per-channel statistic before normalisation (float64)."""
        raise NotImplementedError

    @classmethod
    def fit(cls, windows: np.ndarray, params: dict[str, Any]) -> dict[str, Any]:
        """Normal mean and spread of the statistic per channel (added to the parameters)."""
        f = cls.features(windows, params)
        return {
            **params,
            "mean": f.mean(axis=0).tolist(),
            "std": np.maximum(f.std(axis=0), _MIN_STD).tolist(),
        }

    @classmethod
    def numpy_score(cls, x: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        f = cls.features(np.asarray(x, dtype=np.float64), params)
        z = np.abs(f - np.asarray(params["mean"])) / np.asarray(params["std"])
        return z.max(axis=1)

    @classmethod
    def statistic_nodes(cls, g: _Graph, shape: tuple[int, int], params: dict[str, Any]) -> str:
        """Adds the nodes computing the (N, C) statistic from "input"; returns its name."""
        raise NotImplementedError

    @classmethod
    def graph(cls, shape: tuple[int, int], params: dict[str, Any]) -> Any:
        g = _Graph()
        stat = cls.statistic_nodes(g, shape, params)
        centred = g.op("Sub", stat, g.const("mean", params["mean"], [1, shape[1]]))
        z = g.op("Div", g.op("Abs", centred), g.const("std", params["std"], [1, shape[1]]))
        g.op("ReduceMax", z, out="score", axes=[1], keepdims=0)
        return g.model(shape)


@register
class RollingZScore(StatisticalDetector):
    type_name = "zscore"
    defaults: ClassVar[dict[str, Any]] = {"min_std": 0.05}

    @classmethod
    def features(cls, x: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        past = x[:, :-1, :]
        sd = np.sqrt(np.maximum(past.var(axis=1), params["min_std"] ** 2))
        return (x[:, -1, :] - past.mean(axis=1)) / sd

    @classmethod
    def fit(cls, windows: np.ndarray, params: dict[str, Any]) -> dict[str, Any]:
        # already a z-score: judge it as one (mean 0, spread 1) rather than re-normalising
        return {**params, "mean": [0.0] * windows.shape[2], "std": [1.0] * windows.shape[2]}

    @classmethod
    def statistic_nodes(cls, g: _Graph, shape: tuple[int, int], params: dict[str, Any]) -> str:
        t = shape[0]
        past = g.slice("input", 0, t - 1)
        last = g.op("Squeeze", g.slice("input", t - 1, t), g.const("axis1", [1], [1], np.int64))
        mean = g.op("ReduceMean", past, axes=[1], keepdims=1)
        var = g.op("ReduceMean", g.op("Mul", *(g.op("Sub", past, mean),) * 2), axes=[1], keepdims=0)
        sd = g.op("Sqrt", g.op("Max", var, g.const("var_floor", [params["min_std"] ** 2], [1])))
        return g.op(
            "Div", g.op("Sub", last, g.op("Squeeze", mean, g.const("axis1b", [1], [1], np.int64))), sd
        )


@register
class EwmaChart(StatisticalDetector):
    type_name = "ewma"
    defaults: ClassVar[dict[str, Any]] = {"lam": 0.2}

    @staticmethod
    def weights(t: int, lam: float) -> np.ndarray:
        if not 0.0 < lam <= 1.0:
            raise EdgeanomError(f"ewma: lam must be in (0, 1], got {lam}")
        w = lam * (1.0 - lam) ** np.arange(t - 1, -1, -1, dtype=np.float64)  # oldest row first
        return w / w.sum()

    @classmethod
    def features(cls, x: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        return np.einsum("t,ntc->nc", cls.weights(x.shape[1], float(params["lam"])), x)

    @classmethod
    def statistic_nodes(cls, g: _Graph, shape: tuple[int, int], params: dict[str, Any]) -> str:
        w = g.const("weights", cls.weights(shape[0], float(params["lam"])).tolist(), [1, shape[0]])
        return g.op("Squeeze", g.op("MatMul", w, "input"), g.const("axis1", [1], [1], np.int64))


@register
class CusumChart(StatisticalDetector):
    type_name = "cusum"
    defaults: ClassVar[dict[str, Any]] = {"k": 0.5}

    @classmethod
    def features(cls, x: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        k = float(params["k"])
        up = np.cumsum((x - k)[:, ::-1, :], axis=1).max(axis=1)  # max over start rows of the suffix sums
        down = np.cumsum((-x - k)[:, ::-1, :], axis=1).max(axis=1)
        return np.maximum(np.maximum(up, down), 0.0)

    @classmethod
    def statistic_nodes(cls, g: _Graph, shape: tuple[int, int], params: dict[str, Any]) -> str:
        k = g.const("slack", [float(params["k"])], [1])
        axis = g.const("time_axis", 1, [], np.int64)
        up = g.op("CumSum", g.op("Sub", "input", k), axis, reverse=1)
        down = g.op("CumSum", g.op("Sub", g.op("Neg", "input"), k), axis, reverse=1)
        both = g.op(
            "Max", g.op("ReduceMax", up, axes=[1], keepdims=0), g.op("ReduceMax", down, axes=[1], keepdims=0)
        )
        return g.op("Max", both, g.const("zero", [0.0], [1]))


@register
class SeasonalBaseline(StatisticalDetector):
    type_name = "seasonal"
    defaults: ClassVar[dict[str, Any]] = {"period": 0, "seasons": 3}

    @staticmethod
    def lags(t: int, params: dict[str, Any]) -> list[int]:
        period, seasons = int(params["period"]), int(params["seasons"])
        if seasons not in (1, 2, 3):
            raise EdgeanomError(f"seasonal: seasons must be 1, 2 or 3, got {seasons}")
        return [t - 1 - s * period for s in range(1, seasons + 1)]

    @classmethod
    def window_for(cls, series: np.ndarray, params: dict[str, Any]) -> int:
        """Training with no --window: `seasons` periods of the training data (found, or given) plus one."""
        p = {**cls.defaults, **params}
        period = int(p["period"]) or detect_period(np.asarray(series, dtype=np.float64))
        return int(p["seasons"]) * period + 1

    @classmethod
    def features(cls, x: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        # three seasons: their median, so an anomaly does not come back as an echo one period later
        refs = x[:, cls.lags(x.shape[1], params), :]
        return x[:, -1, :] - (np.median(refs, axis=1) if refs.shape[1] == 3 else refs.mean(axis=1))

    @classmethod
    def fit(cls, windows: np.ndarray, params: dict[str, Any]) -> dict[str, Any]:
        t = windows.shape[1]
        params = dict(params)
        if int(params["period"]) <= 0:
            params["period"] = detect_period(_series(windows), max_lag=(t - 1) // int(params["seasons"]))
        need = int(params["seasons"]) * int(params["period"]) + 1
        if need > t:
            raise EdgeanomError(
                f"seasonal: a period of {params['period']} rows and {params['seasons']} seasons need windows "
                f"of {need} rows; train with --window {need} (or without --window)"
            )
        return super().fit(windows, params)

    @classmethod
    def statistic_nodes(cls, g: _Graph, shape: tuple[int, int], params: dict[str, Any]) -> str:
        t = shape[0]
        lags = cls.lags(t, params)
        refs = g.op("Gather", "input", g.const("season_rows", lags, [len(lags)], np.int64), axis=1)
        if len(lags) == 3:  # median of three = sum - max - min
            total = g.op("ReduceSum", refs, g.const("axis1s", [1], [1], np.int64), keepdims=0)
            extremes = g.op(
                "Add",
                g.op("ReduceMax", refs, axes=[1], keepdims=0),
                g.op("ReduceMin", refs, axes=[1], keepdims=0),
            )
            ref = g.op("Sub", total, extremes)
        else:
            ref = g.op("ReduceMean", refs, axes=[1], keepdims=0)
        last = g.op("Squeeze", g.slice("input", t - 1, t), g.const("axis1", [1], [1], np.int64))
        return g.op("Sub", last, ref)


def _series(windows: np.ndarray) -> np.ndarray:
    """Stride-1 windows put back together into the series they came from."""
    return np.concatenate([windows[:, 0, :], windows[-1, 1:, :]], axis=0)


def detect_period(series: np.ndarray, max_lag: Optional[int] = None) -> int:
    """The lag (rows) of the strongest autocorrelation peak of a (T, C) series, averaged over channels, up
    to `max_lag` (default a third of the series). An error when nothing repeats."""
    x = series - series.mean(axis=0)
    n = x.shape[0]
    spectrum = np.fft.rfft(x, n=2 * n, axis=0)
    acf = np.fft.irfft(spectrum * np.conj(spectrum), axis=0)[:n].mean(axis=1)
    acf = acf / max(acf[0], 1e-12)
    top = min(max_lag or n // 3, n - 2)
    peaks = [lag for lag in range(2, top + 1) if acf[lag] > acf[lag - 1] and acf[lag] >= acf[lag + 1]]
    if not peaks or max(acf[p] for p in peaks) < 0.3:
        raise EdgeanomError(
            "seasonal: no repeating pattern found in the training data (autocorrelation below 0.3 up to "
            f"{top} rows); give the period with --param period=ROWS, or use zscore, ewma or cusum"
        )
    return int(max(peaks, key=lambda p: acf[p]))


class _Graph:
    """A small ONNX graph builder over input [batch, T, C]."""

    def __init__(self) -> None:
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self._n = 0

    def const(self, name: str, values: Any, dims: list[int], dtype: Any = np.float32) -> str:
        from onnx import numpy_helper

        self.inits.append(numpy_helper.from_array(np.asarray(values, dtype=dtype).reshape(dims), name))
        return name

    def op(self, kind: str, *inputs: str, out: Optional[str] = None, **attrs: Any) -> str:
        from onnx import helper

        self._n += 1
        name = out or f"{kind.lower()}_{self._n}"
        self.nodes.append(helper.make_node(kind, list(inputs), [name], name=f"n{self._n}_{kind}", **attrs))
        return name

    def slice(self, x: str, start: int, end: int) -> str:
        self._n += 1
        s = self.const(f"s{self._n}_start", [start], [1], np.int64)
        e = self.const(f"s{self._n}_end", [end], [1], np.int64)
        return self.op("Slice", x, s, e, self.const(f"s{self._n}_axis", [1], [1], np.int64))

    def model(self, shape: tuple[int, int]) -> Any:
        import onnx
        from onnx import TensorProto, helper

        graph = helper.make_graph(
            self.nodes,
            "statistical_detector",
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", *shape])],
            [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch"])],
            self.inits,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
        model.ir_version = 8
        onnx.checker.check_model(model)
        return model


def fit_statistical(
    model_type: str, train_x: np.ndarray, params: dict[str, Any], path: Path
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fit on normal training windows, write the ONNX graph to `path` and check it against the float64
    reference; returns the fitted parameters (statistics included) and the parity record."""
    import onnxruntime as ort

    cls = get_model(model_type)
    if cls.family != "stat":
        raise EdgeanomError(f"{model_type!r} is not a statistical detector")
    windows = np.asarray(train_x, dtype=np.float64)
    if windows.ndim != 3 or windows.shape[1] < 2:
        raise EdgeanomError(
            f"{model_type}: needs sensor windows of at least 2 rows, got shape {windows.shape}"
        )
    fitted = cls.fit(windows, resolve_params(model_type, params, cls.defaults))
    shape = (int(windows.shape[1]), int(windows.shape[2]))
    data = cls.graph(shape, fitted).SerializeToString()
    probe = windows[np.linspace(0, len(windows) - 1, min(64, len(windows))).astype(int)].astype(np.float32)
    got = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(["score"], {"input": probe})[0]
    want = cls.numpy_score(probe, fitted)
    diff = float(np.max(np.abs(got - want)))
    if not diff <= 1e-3 * max(1.0, float(np.max(np.abs(want)))):
        raise EdgeanomError(
            f"{model_type}: ONNX graph does not match the float64 reference (max diff {diff:.3g})"
        )
    atomic_write(Path(path), lambda fh: fh.write(data))
    return fitted, {"opset": OPSET, "max_abs_diff_vs_float64": diff, "checked_batch": len(probe)}
