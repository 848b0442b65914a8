"""Scoring: per-sample reconstruction errors, error maps and streaming alarms (C++ core).

All heavy work happens in the compiled module ``edgeanom._scoring`` (``csrc/``); this module is the
documented API. See ``docs/scoring.md`` for the full contract. In short:

- Inputs ``x`` / ``x_hat`` are C-contiguous ``float32`` or ``float16`` arrays (they may differ in
  dtype). Any other dtype, float64 included, raises ``TypeError`` naming it: convert explicitly.
  Non-contiguous (or misaligned) arrays are copied to a contiguous array first.
- Shape mismatches raise ``ValueError`` naming both shapes.
- Non-finite policy: a sample (or map pixel) whose inputs contain NaN or Inf scores ``+inf`` for every
  metric, so it is flagged, never silently normal. The ``AlarmFilter`` treats NaN/Inf scores as
  ``+inf`` (hot).
- Results are bit-identical for any thread count (``set_num_threads``): sums use a fixed blocking
  (4096-element blocks, 32 float32 lanes, float64 across blocks) independent of thread scheduling.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import numpy as np

try:
    from edgeanom import _scoring as _core
except ImportError as exc:  # pragma: no cover - exercised only on a broken install
    raise ImportError(
        "edgeanom's compiled scoring core (edgeanom._scoring) is missing or failed to load "
        f"({exc}). Build it from the repository root with `pip install -e .` "
        "(developers: `pip install --no-build-isolation -e .` with scikit-build-core, pybind11, "
        "CMake and a C++17 compiler installed); rerun it after changing csrc/."
    ) from exc

__all__ = [
    "METRICS",
    "AdaptiveScorer",
    "AdaptiveUpdate",
    "AlarmFilter",
    "AlarmUpdate",
    "blur_maps",
    "build_info",
    "error_map",
    "get_num_threads",
    "map_score",
    "normal_surprise",
    "reconstruction_error",
    "set_num_threads",
]

METRICS = ("mse", "mae", "sse", "rmse", "max")


def reconstruction_error(
    x: np.ndarray,
    x_hat: np.ndarray,
    metric: str = "mse",
    weights: Optional[np.ndarray] = None,
    out: Optional[np.ndarray] = None,
) -> np.ndarray:
    """Per-sample reconstruction error over all trailing dimensions.

    Args:
        x: array of shape ``(N, ...)``, float32 or float16, ideally C-contiguous (otherwise copied).
        x_hat: same dtype rules; shape equal to ``x``'s, or one row broadcast against all of ``x``:
            ``(1, ...)`` or the per-sample shape ``x.shape[1:]`` (e.g. the Deep SVDD centre with
            ``metric="sse"``).
        metric: ``"mse"`` (mean of d^2), ``"mae"`` (mean of |d|), ``"sse"`` (sum of d^2),
            ``"rmse"`` (sqrt of mse) or ``"max"`` (max of |d|), with ``d = x - x_hat``.
        weights: optional per-element weights of shape ``x.shape[1:]`` (cast to float32; must be
            finite and >= 0). Each d^2 or |d| is multiplied by its weight; ``"max"`` gives max(w*|d|);
            means still divide by the element count.
        out: optional preallocated C-contiguous float32 array of shape ``(N,)``, written and returned.
            It must not overlap the inputs.

    Returns:
        float32 array of shape ``(N,)``. A sample with any NaN/Inf in ``x`` or ``x_hat`` scores +inf.
        Samples with zero elements score 0.

    Raises:
        TypeError: a dtype other than float32/float16 (``"x has dtype float64, expected float32 or
            float16"``), or a bad ``out`` dtype.
        ValueError: shapes that do not match (both shapes are named), an unknown metric, bad weights.
    """
    return _core.reconstruction_error(x, x_hat, metric, weights, out)


def error_map(
    x: np.ndarray,
    x_hat: np.ndarray,
    blur_sigma: float = 0.0,
    out: Optional[np.ndarray] = None,
) -> np.ndarray:
    """Per-pixel squared error averaged over channels, optionally Gaussian-blurred.

    Args:
        x: ``(N, C, H, W)`` float32 or float16.
        x_hat: same shape, or one broadcast row ``(1, C, H, W)`` / ``(C, H, W)``.
        blur_sigma: Gaussian sigma in pixels (0 = no blur, at most 1000); see :func:`blur_maps`.
        out: optional C-contiguous float32 ``(N, H, W)`` output.

    Returns:
        float32 ``(N, H, W)``: ``mean_c (x - x_hat)^2`` (accumulated in float64), NaN/Inf inputs -> +inf.
        ``error_map(x, y, blur_sigma=s)`` equals ``blur_maps(error_map(x, y), s)`` bit for bit.
    """
    return _core.error_map(x, x_hat, float(blur_sigma), out)


def blur_maps(maps: np.ndarray, sigma: float, out: Optional[np.ndarray] = None) -> np.ndarray:
    """Separable Gaussian blur of error maps (e.g. an unblurred map fused into an exported model).

    Matches ``scipy.ndimage.gaussian_filter(maps, (0, sigma, sigma), mode="reflect", truncate=4.0)``
    up to float32 rounding: radius ``int(4 * sigma + 0.5)``, border "reflect" (half-sample
    symmetric: ``d c b a | a b c d | d c b a``), float32 accumulation in a fixed tap order.

    Args:
        maps: ``(N, H, W)`` or ``(H, W)``, float32 or float16 (float16 is converted first).
        sigma: finite, 0 <= sigma <= 1000. 0 returns a copy.
        out: optional C-contiguous float32 array of ``maps``' shape; may be ``maps`` itself.

    Returns:
        float32 array of ``maps``' shape. NaN results become +inf.
    """
    return _core.blur_maps(maps, float(sigma), out)


def map_score(maps: np.ndarray, mode: str = "max", k: Optional[int] = None) -> np.ndarray:
    """Per-sample score of error maps: the max pixel, or the mean of the ``k`` largest pixels.

    Args:
        maps: ``(N, ...)`` float32 or float16; all trailing dims are the sample's pixels.
        mode: ``"max"`` or ``"topk_mean"``.
        k: for ``"topk_mean"``: number of pixels, >= 1, clipped to the pixel count. ``None`` means 1%
            of the pixels (at least 1). Ignored for ``"max"``.

    Returns:
        float32 ``(N,)``. NaN pixels count as +inf; empty maps score 0.
    """
    return _core.map_score(maps, mode, k)


def set_num_threads(n: int) -> None:
    """Sets the kernels' thread count (1..1024). Results are bit-identical for every count."""
    _core.set_num_threads(n)


def get_num_threads() -> int:
    """The kernels' thread count (default: CPUs available to the process, or $EDGEANOM_NUM_THREADS)."""
    return int(_core.get_num_threads())


def build_info() -> dict[str, Any]:
    """Compiler, version, flags, C++ standard, SIMD features (compiled / CPU / active), thread defaults."""
    return dict(_core.build_info())


class AlarmUpdate(NamedTuple):
    """Result of :meth:`AlarmFilter.update`."""

    flags: np.ndarray
    """bool ``(N,)``: whether the sample's stream is in alarm after the sample."""
    smoothed: np.ndarray
    """float32 ``(N,)``: the (EWMA-)smoothed score; the raw score without EWMA; +inf for NaN/Inf."""
    events: list[dict[str, Any]]
    """``{"type": "start"|"end", "stream", "index", "peak", "peak_index", "start_index"}`` in order."""


class AlarmFilter:
    """Streaming alarm state machine with one state per stream id (implemented in C++).

    For each sample of a stream, in order (``index`` counts that stream's samples from 0, across
    calls):

    1. ``x`` = the score; NaN and +-inf count as +inf.
    2. ``s`` = ``x``, or with ``ewma_alpha=a``: ``s = a*x + (1-a)*s_prev`` (first sample: ``s = x``).
       A non-finite ``x`` gives ``s = +inf`` for that sample but is not folded into the EWMA state.
    3. hot = ``s > threshold``. The vote holds when at least ``k`` of the last ``n`` samples were hot.
    4. OFF -> ON when the vote holds ("start" event, ``index`` = this sample).
       ON -> OFF when the clear condition holds and the alarm has lasted ``min_hold`` samples
       (``index - start_index >= min_hold``). Clear condition: without ``clear_threshold`` the vote
       fails; with it (hysteresis), ``s < clear_threshold``. The "end" event's ``index`` is the first
       sample no longer in alarm, so the alarm covered ``[start_index, index)``; ``peak`` is the max
       ``s`` over those samples (float32 precision) and ``peak_index`` where it first occurred. When an
       alarm ends the k-of-n window is emptied: a new alarm needs ``k`` fresh hot samples.

    Args:
        threshold: finite decision threshold on the smoothed score.
        ewma_alpha: None (no smoothing) or 0 < a <= 1.
        k, n: k-of-n voting, 1 <= k <= n <= 2**20. k = n = 1 is a plain threshold.
        clear_threshold: None (no hysteresis) or a finite value <= threshold.
        min_hold: minimum alarm length in samples (>= 0; 0 and 1 behave the same).

    Raises:
        ValueError: invalid parameters (non-finite threshold, alpha outside (0, 1], k > n, ...).
    """

    def __init__(
        self,
        threshold: float,
        ewma_alpha: Optional[float] = None,
        k: int = 1,
        n: int = 1,
        clear_threshold: Optional[float] = None,
        min_hold: int = 0,
    ) -> None:
        self._core = _core.AlarmFilter(threshold, ewma_alpha, k, n, clear_threshold, min_hold)

    def update(self, scores: Any, stream_ids: Any = None) -> AlarmUpdate:
        """Feeds samples in order.

        Args:
            scores: 1-D real array-like ``(N,)`` (a scalar counts as one sample).
            stream_ids: None (all stream 0), one int for all samples, or an integer array ``(N,)``;
                streams may be interleaved freely.

        Returns:
            :class:`AlarmUpdate` ``(flags, smoothed, events)``.
        """
        flags, smoothed, events = self._core.update(scores, stream_ids)
        return AlarmUpdate(flags, smoothed, events)

    def flush(self, stream_id: Optional[int] = None) -> list[dict[str, Any]]:
        """Ends the open alarms of all streams (or one) and returns their "end" events.

        An end event from flush has ``index`` = the stream's sample count (one past its last sample).
        The streams are kept (counters and EWMA state continue).
        """
        return list(self._core.flush(stream_id))

    def close(self, stream_id: Optional[int] = None) -> list[dict[str, Any]]:
        """Like :meth:`flush`, then forgets the stream(s); a later sample starts again at index 0."""
        return list(self._core.close(stream_id))

    def reset(self, stream_id: Optional[int] = None) -> None:
        """Forgets all streams (or one) without emitting events (call :meth:`flush` first to get them)."""
        self._core.reset(stream_id)

    def streams(self) -> list[int]:
        """Known stream ids, ascending."""
        return list(self._core.streams())

    def active_streams(self) -> list[int]:
        """Stream ids currently in alarm, ascending."""
        return list(self._core.active_streams())

    def state(self, stream_id: int) -> Optional[dict[str, Any]]:
        """A stream's state (count, in_alarm, smoothed, ewma, hot_in_window, start_index, peak,
        peak_index), or None for an unknown stream."""
        return self._core.state(stream_id)

    @property
    def threshold(self) -> float:
        return float(self._core.threshold)

    @property
    def ewma_alpha(self) -> Optional[float]:
        return self._core.ewma_alpha

    @property
    def k(self) -> int:
        return int(self._core.k)

    @property
    def n(self) -> int:
        return int(self._core.n)

    @property
    def clear_threshold(self) -> Optional[float]:
        return self._core.clear_threshold

    @property
    def min_hold(self) -> int:
        return int(self._core.min_hold)

    def __repr__(self) -> str:
        return (
            f"AlarmFilter(threshold={self.threshold!r}, ewma_alpha={self.ewma_alpha!r}, k={self.k}, "
            f"n={self.n}, clear_threshold={self.clear_threshold!r}, min_hold={self.min_hold})"
        )


class AdaptiveUpdate(NamedTuple):
    """Result of :meth:`AdaptiveScorer.update`."""

    surprise: np.ndarray
    """float64 ``(N,)``: ``-log10`` of how unlikely the sample is under its stream's recent history."""
    learned: np.ndarray
    """bool ``(N,)``: whether the sample joined its stream's history."""


class AdaptiveScorer:
    """Adaptive scoring stage, one state per stream id (implemented in C++): each raw score judged against
    its own stream's recent history, causally, so slow drift does not become a flood of alarms.

    For each sample of a stream, in order:

    1. ``t = log(max(x, 0) + offset)`` (``log_scores``) or ``t = x``; non-finite ``x`` -> surprise +inf.
    2. ``m`` = mean of the last ``short_window`` values of ``t``.
    3. With at least ``min_history`` learned values: ``z = (m - median) / max(IQR / 1.349, min_scale)``
       over the learned history (numpy's linear quantiles) and ``surprise = -log10(Q(z))``, Q the
       standard normal upper tail (0.3 at the median, 4 at one in 10^4, unbounded); otherwise 0.
    4. Learning: the first ``warmup`` samples always; later, samples with ``surprise < gate`` that are at
       least ``holdoff`` samples after the last gated one. With ``relearn_after > 0``, once more than
       ``relearn_after`` samples in a row were gated, one in ``relearn_every`` of them is learned (a
       persisting change becomes normal at a bounded rate; a short anomaly never does).
    5. ``state(stream)["drift_fraction"]``: share of the history above ``reference`` (the calibrated
       raw threshold); about the calibration's own rate when nothing drifted.

    Memory per stream is fixed (two arrays of ``window`` float64 and one of ``short_window``).
    """

    def __init__(
        self,
        window: int = 1000,
        short_window: int = 1,
        warmup: int = 100,
        min_history: int = 30,
        gate: float = 4.0,
        holdoff: int = 0,
        relearn_after: int = 0,
        relearn_every: int = 10,
        log_scores: bool = True,
        offset: float = 1e-6,
        min_scale: float = 1e-3,
        reference: Optional[float] = None,
    ) -> None:
        self._core = _core.AdaptiveScorer(
            window,
            short_window,
            warmup,
            min_history,
            gate,
            holdoff,
            relearn_after,
            relearn_every,
            bool(log_scores),
            offset,
            min_scale,
            reference,
        )

    def update(self, scores: Any, stream_ids: Any = None) -> AdaptiveUpdate:
        """Feeds raw scores in order (``stream_ids`` as in :meth:`AlarmFilter.update`)."""
        surprise, learned = self._core.update(scores, stream_ids)
        return AdaptiveUpdate(surprise, learned)

    def prime(self, stream_id: int, values: Any) -> None:
        """Seeds a stream's history with values known to be normal (the calibration's held-out scores),
        before or between samples; they are learned like samples but do not count towards ``warmup``."""
        self._core.prime(stream_id, values)

    def reset(self, stream_id: Optional[int] = None) -> None:
        """Forgets all streams (or one)."""
        self._core.reset(stream_id)

    def streams(self) -> list[int]:
        return list(self._core.streams())

    def state(self, stream_id: int) -> Optional[dict[str, Any]]:
        """seen, learned, history, median, scale, last_surprise, gated_run, drift_count, drift_fraction."""
        return self._core.state(stream_id)

    @property
    def params(self) -> dict[str, Any]:
        return dict(self._core.params)

    def __repr__(self) -> str:
        return "AdaptiveScorer(" + ", ".join(f"{k}={v!r}" for k, v in self.params.items()) + ")"


def normal_surprise(z: Any) -> np.ndarray:
    """``-log10(Q(z))`` for the standard normal upper tail Q, float64, accurate where Q underflows."""
    return np.asarray(_core.normal_surprise(np.asarray(z, dtype=np.float64)))
