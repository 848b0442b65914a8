"""The adaptive scoring stage of sensor bundles: raw scores judged against each stream's own history.

A model calibrated on its training period sees a pump at another load, a server in another season or a
bearing a year older as "anomalous" all the time. This stage sits between the scorer and the alarms and asks,
per stream and causally, how unlikely the newest sample is given that stream's recent normal behaviour
(the C++ `AdaptiveScorer`). It tests two things about each window:

- the model's score (on a log scale),
- each channel's level: the mean of the window's last `rows` scaled rows, upward and downward, and
- each channel's spread (windows of 16 rows or more): log(standard deviation of the whole window + 0.01), downward, which
  a stuck or flat-lining sensor drives far below anything normal noise does,

and reports the strongest evidence: ``surprise = max over tests of -log10(tail probability) - log10(tests)``
(the Bonferroni correction, so a bundle with many channels is not more trigger-happy). The alarm threshold
applies to the surprise. Drift: when most of a stream's recent learned model scores lie above the calibrated
threshold, the fixed model no longer describes the stream; a `drift` event says so (it raises no alarm).

Each stream's model-score history starts from the calibration's held-out normal scores (``prior``), which
the model never trained on: a run that starts on the model's own training rows (scores lower than on new
data) then does not learn "normal" from an overfit stretch and alarm on every unseen normal sample after it.

The bundle's ``score.adaptive`` section holds the parameters (`section()` writes the defaults).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from edgeanom.bundle import Bundle
from edgeanom.errors import EdgeanomError

# Defaults. Counted in samples (windows or rows), so they do not depend on the sampling rate.
WINDOW = 1000  # learned history per test
WARMUP_WINDOWS = 4  # the first max(256, 4 x window length) samples are learned unconditionally
THRESHOLD = 6.0  # surprise at which the alarm fires (one in a million, after the correction)
LEVEL_ROWS = 10  # a channel's level: mean of the window's last rows
DRIFT_START, DRIFT_END = 0.5, 0.25  # share of the model-score history above the calibrated threshold
RELEARN_EVERY = 10
PRIOR_POINTS = 101  # quantiles of the held-out normal scores that seed each stream's model-score history
MIN_SPREAD_ROWS = 16  # shorter windows: the spread of a few normal rows is too often tiny to judge
SPREAD_FLOOR = 0.01  # in training standard deviations: the spread of a flat window


def section(
    kind: str,
    window_length: Optional[int],
    val_scores: np.ndarray,
    *,
    errors: bool = True,
    enabled: bool = True,
) -> dict[str, Any]:
    """The defaults `train` writes for a sensor bundle. `errors`: the scores are errors (>= 0) and are
    judged on a log scale; the log offset is a tenth of the held-out normal scores' median, so scores near
    zero do not turn noise into surprise. Other scores (a decision function) are judged as they are."""
    finite = np.asarray(val_scores, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    median = float(np.median(finite)) if finite.size else 1.0
    # always PRIOR_POINTS quantiles (interpolated from however many scores there are), so the prior weighs
    # the same against the warm-up whether validation had 20 windows or 20,000
    prior = np.quantile(finite, np.linspace(0.0, 1.0, PRIOR_POINTS)) if finite.size >= 2 else []
    length = int(window_length or 1)
    warmup = max(256, WARMUP_WINDOWS * length)
    return {
        "enabled": bool(enabled),
        "window": max(WINDOW, 2 * warmup),
        "warmup": warmup,
        "min_history": max(64, min(warmup // 2, 4 * length)),
        "threshold": THRESHOLD,
        "gate": THRESHOLD,
        "holdoff": 0,
        "relearn_after": 0,
        "relearn_every": RELEARN_EVERY,
        "log_scores": bool(errors),
        "offset": max(0.1 * median, 1e-9),
        "min_scale": 0.01,
        "level_rows": min(LEVEL_ROWS, length) if kind == "window" else 1,
        "level_min_scale": 1e-3,
        "drift": {"start": DRIFT_START, "end": DRIFT_END},
        "prior": [float(v) for v in prior],
    }


@dataclass
class AdaptiveResult:
    surprise: np.ndarray  # float64 (N,): what the alarm compares with `threshold`
    events: list[list[dict[str, Any]]] = field(default_factory=list)  # drift events per sample


class AdaptiveStage:
    """One bundle's adaptive stage for any number of streams. `recalibrate` lets a change that persists
    for `window / 2` samples become the new normal at a bounded rate (one in `relearn_every` samples)."""

    def __init__(self, bundle: Bundle, *, recalibrate: bool = False) -> None:
        from edgeanom import scoring

        spec = bundle.score.get("adaptive") or {}
        if not spec:
            raise EdgeanomError(f"bundle {bundle.path}: it has no score.adaptive section")
        self.spec = spec
        self.threshold = float(spec["threshold"])
        shape = bundle.input_shape
        self.channels = int(shape[-1])
        self.rows = int(spec.get("level_rows", 1)) if bundle.input_kind in ("window", "vector") else 0
        self.spread = bundle.input_kind == "window" and self.rows > 0 and int(shape[0]) >= MIN_SPREAD_ROWS
        self.tests = 1 + (2 * self.channels if self.rows else 0) + (self.channels if self.spread else 0)
        self._correction = math.log10(self.tests)
        window = int(spec["window"])
        common = {
            "window": window,
            "warmup": int(spec["warmup"]),
            "min_history": int(spec["min_history"]),
            "gate": float(spec["gate"]),
            "holdoff": int(spec.get("holdoff", 0)),
            "relearn_after": int(spec.get("relearn_after", 0)) or (window // 2 if recalibrate else 0),
            "relearn_every": int(spec.get("relearn_every", RELEARN_EVERY)),
        }
        self.recalibrating = common["relearn_after"] > 0
        self._model = scoring.AdaptiveScorer(
            **common,
            log_scores=bool(spec.get("log_scores", True)),
            offset=float(spec["offset"]),
            min_scale=float(spec["min_scale"]),
            reference=bundle.threshold.value,
        )
        self._levels = (
            scoring.AdaptiveScorer(**common, log_scores=False, min_scale=float(spec["level_min_scale"]))
            if self.rows
            else None
        )
        drift = spec.get("drift") or {}
        self.drift_start = float(drift.get("start", DRIFT_START))
        self.drift_end = float(drift.get("end", DRIFT_END))
        self._drifting: dict[int, bool] = {}
        self._prior = np.asarray(spec.get("prior") or [], dtype=np.float64)
        self._primed: set[int] = set()

    def levels(self, x: np.ndarray) -> np.ndarray:
        """(N, 2C or 3C) channel tests of a preprocessed batch: the level (mean of each window's last rows),
        up and down, and for windows the negated log spread of the window (a collapse is surprising)."""
        if x.ndim != 3:
            level = x.reshape(x.shape[0], -1).astype(np.float64)
            return np.concatenate([level, -level], axis=1)
        recent = x[:, -self.rows :, :].astype(np.float64)
        level = recent.mean(axis=1)
        parts = [level, -level]
        if self.spread:
            parts.append(-np.log(x.std(axis=1, dtype=np.float64) + SPREAD_FLOOR))
        return np.concatenate(parts, axis=1)

    def update(self, scores: np.ndarray, x: Optional[np.ndarray], stream_ids: np.ndarray) -> AdaptiveResult:
        """Raw scores (and the preprocessed inputs they came from) of one batch, each stream in order."""
        ids = np.asarray(stream_ids, dtype=np.int64)
        if self._prior.size:
            for sid in set(ids.tolist()) - self._primed:
                self._model.prime(sid, self._prior)
                self._primed.add(sid)
        surprise = self._model.update(np.asarray(scores, dtype=np.float64), ids).surprise
        if self._levels is not None and x is not None:
            tests = self.levels(x)
            k = tests.shape[1]
            sub = (ids[:, None] * k + np.arange(k)[None, :]).reshape(-1)
            level = self._levels.update(tests.reshape(-1), sub).surprise.reshape(-1, k)
            surprise = np.maximum(surprise, level.max(axis=1))
        combined = np.maximum(surprise - self._correction, 0.0)
        return AdaptiveResult(combined, self._drift_events(ids))

    def reset(self) -> None:
        """Forget every stream (a new recording starts)."""
        self._model.reset()
        if self._levels is not None:
            self._levels.reset()
        self._drifting.clear()
        self._primed.clear()

    def drift_fraction(self, stream: int) -> Optional[float]:
        state = self._model.state(int(stream))
        if not state or state["history"] < int(self.spec["min_history"]):
            return None
        return state["drift_fraction"]

    def _drift_events(self, ids: np.ndarray) -> list[list[dict[str, Any]]]:
        """A `drift` start/end event at the last sample of a batch where a stream crosses the levels."""
        events: list[list[dict[str, Any]]] = [[] for _ in range(len(ids))]
        if not len(ids):
            return events
        last = {int(sid): pos for pos, sid in enumerate(ids.tolist())}
        for sid, pos in last.items():
            frac = self.drift_fraction(sid)
            if frac is None:
                continue
            on = self._drifting.get(sid, False)
            if (not on and frac >= self.drift_start) or (on and frac <= self.drift_end):
                self._drifting[sid] = not on
                events[pos].append(
                    {
                        "type": "drift",
                        "state": "start" if not on else "end",
                        "drift_fraction": round(float(frac), 4),
                        "level": self.drift_start if not on else self.drift_end,
                        "message": (
                            f"{frac:.0%} of recent normal-looking scores exceed the calibrated threshold: "
                            "the stream has drifted from the training data; retrain the model"
                            if not on
                            else f"drift over: {frac:.0%} of recent scores exceed the calibrated threshold"
                        ),
                    }
                )
        return events

    def drifting(self, stream: int) -> bool:
        return self._drifting.get(int(stream), False)


def stage_for(
    bundle: Bundle, adaptive: Optional[bool] = None, *, recalibrate: bool = False
) -> Optional[AdaptiveStage]:
    """The bundle's adaptive stage when it has one and it is on; `adaptive` None follows the bundle's setting
    (`--adaptive/--no-adaptive` decide otherwise). `run` and `eval` both ask here, so they judge alike."""
    spec = bundle.score.get("adaptive") or {}
    on = bool(spec.get("enabled")) if adaptive is None else adaptive
    if not on:
        if recalibrate:
            raise EdgeanomError("--recalibrate works through the adaptive stage: drop --no-adaptive")
        return None
    if not spec:
        raise EdgeanomError(
            f"bundle {bundle.path}: --adaptive needs a score.adaptive section (sensor bundles trained by "
            "this version of `edgeanom train` have one; retrain to add it)"
        )
    return AdaptiveStage(bundle, recalibrate=recalibrate)
