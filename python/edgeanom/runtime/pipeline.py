"""The streaming loop behind `edgeanom run`: sources -> preprocess -> runner -> scorer -> alarms -> sinks.

Threads: one capture thread per stream (read + decode + resize, see `capture`), this loop (batching,
inference, scoring, alarms) and one sink thread (`dispatch`). Every hand-over is bounded. A batch takes
what is ready: at most one sample per live stream (the newest) and up to `batch` samples per file or
sensor stream, so latency stays low on cameras and throughput high on files.
"""

from __future__ import annotations

import collections
import contextlib
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np

from edgeanom.adaptive import stage_for
from edgeanom.backends import Runner
from edgeanom.bundle import Bundle, Threshold, scores_can_be_negative
from edgeanom.errors import EdgeanomError
from edgeanom.preprocess import Preprocessor
from edgeanom.runtime.alarms import AlarmSettings, StreamAlarms
from edgeanom.runtime.capture import CaptureThread, Channel, FrameSampler, Item, RowSampler
from edgeanom.runtime.dispatch import SinkDispatcher
from edgeanom.runtime.sources.base import Source
from edgeanom.runtime.sources.sensors import RowParser, Windower
from edgeanom.runtime.stats import RunStats
from edgeanom.runtime.types import SampleResult, Sink
from edgeanom.scorer import Scorer

MAX_KEPT_EVENTS = 10_000  # alarm events remembered for the run summary
_CATCH_UP_S = 0.25  # longest a batch waits for a lagging no-drop stream once another has a sample


@dataclass
class PipelineConfig:
    batch: int = 1  # samples per file/sensor stream per batch (live streams always give their newest one)
    max_batch: int = 64  # cap on one batch across streams (a TensorRT engine's profile may lower it)
    max_frames: Optional[int] = None  # per stream, then that stream stops
    duration_s: Optional[float] = None
    realtime: bool = False  # pace video files at their frame rate (dropping stale frames like a camera)
    rate_hz: Optional[float] = None  # pace sensor replays at this many rows per second
    keep_frames: bool = False  # hand the captured BGR frame to the sinks (recording, web view, saved frames)
    keep_maps: bool = False  # hand the error map to the sinks
    sink_queue: int = 64  # batches waiting for the sinks before inference waits
    backoff_s: tuple[float, float] = (0.5, 10.0)  # reconnect delay: first, ceiling (doubling)
    warmup: bool = True  # one inference before the streams start, so the first latency is honest


@dataclass
class RunSummary:
    stats: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)  # alarm start/end events (most recent kept)
    corrupt_examples: list[str] = field(default_factory=list)
    stopped_by: str = "end"  # "end" (all streams finished), "signal", "max-frames", "duration", "sink"


class Pipeline:
    def __init__(
        self,
        bundle: Bundle,
        runner: Runner,
        sources: Sequence[Source],
        sinks: Sequence[Sink] = (),
        *,
        alarms: Optional[AlarmSettings] = None,
        config: Optional[PipelineConfig] = None,
        stats: Optional[RunStats] = None,
    ) -> None:
        if not sources:
            raise EdgeanomError("no input: give --camera, --video, --images or --sensor")
        self.bundle = bundle
        self.runner = runner
        self.sources = list(sources)
        self.sinks = list(sinks)
        self.config = config or PipelineConfig()
        self.settings = alarms or AlarmSettings()
        self.stats = stats or RunStats(backend=getattr(runner, "name", ""))
        base = bundle.threshold
        self.adaptive = stage_for(bundle, self.settings.adaptive, recalibrate=self.settings.recalibrate)
        _check_threshold_override(bundle, self.settings.threshold, adaptive=self.adaptive is not None)
        if self.adaptive is not None:
            # the alarm compares the stage's surprise; --threshold sets the surprise threshold
            value = (
                self.settings.threshold if self.settings.threshold is not None else self.adaptive.threshold
            )
            self.threshold = Threshold(float(value), "adaptive", {"min": 0.0})
        elif self.settings.threshold is None:
            self.threshold = base
        else:
            self.threshold = Threshold(float(self.settings.threshold), "--threshold", base.stats)
        self.preprocessor = Preprocessor(bundle)
        self.scorer = Scorer(bundle)
        self._check_sources()
        self._stop = threading.Event()
        self._stopped_by = "end"
        self._cond = threading.Condition()
        self._oob: collections.deque[dict[str, Any]] = collections.deque(maxlen=1000)
        runner_cap = getattr(runner, "max_batch", None)
        self._max_batch = max(1, min(int(self.config.max_batch), int(runner_cap or self.config.max_batch)))
        self._input = np.zeros((self._max_batch, *bundle.input_shape), dtype=np.float32)
        self._fill = self._make_fill()

    # --- control -----------------------------------------------------------------------------------
    def stop(self, reason: str = "signal") -> None:
        """Ask the loop to finish: safe from signal handlers and other threads (sets a flag only)."""
        if not self._stop.is_set():
            self._stopped_by = reason
            self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # --- setup -------------------------------------------------------------------------------------
    def _check_sources(self) -> None:
        kind = self.bundle.input_kind
        for src in self.sources:
            if (kind == "image") == (src.kind == "frames"):
                continue
            if kind == "image":
                raise EdgeanomError(
                    f"the model in {self.bundle.path} takes images, but {src.name} is a sensor stream "
                    "(use --camera, --video or --images)"
                )
            raise EdgeanomError(
                f"the model in {self.bundle.path} takes sensor {kind}s, but {src.name} gives images (use --sensor)"
            )

    def _sampler(self, src: Source) -> Callable[[Any, int], list]:
        if src.kind == "frames":
            image = self.preprocessor.image
            assert image is not None
            shape = (1, *image.sample_shape)
            packer = self.preprocessor.new_packer()  # video models: this stream's own frame history

            def to_tensor(frame: np.ndarray) -> Optional[np.ndarray]:
                # The bundle's own preprocessing, run here on the capture thread so it overlaps inference.
                # Sinks still get the captured frame; only the model input is packed. Until a packed stream
                # has its 2s frames of past there is no motion to predict from (the past repeats the first
                # frame), so like a window model before its window fills, it emits no sample yet.
                model_frame = frame
                if packer is not None:
                    model_frame = packer.push(frame)
                    if not packer.warm:
                        return None
                return image([model_frame], out=np.empty(shape, dtype=np.float32))[0]

            return FrameSampler(to_tensor, self.config.keep_frames)
        spec = self.bundle.preprocess
        shape = self.bundle.input_shape
        n_features = shape[-1]
        parser = RowParser(n_features, spec.get("columns"), spec.get("time_column"))
        windower = None
        if self.bundle.input_kind == "window":
            length = self.preprocessor.window_length or shape[0]
            if length != shape[0]:
                raise EdgeanomError(
                    f"bundle {self.bundle.path}: preprocess.window.length {length} != input.shape[0] {shape[0]}"
                )
            windower = Windower(length, self.preprocessor.window_stride, n_features)
        return RowSampler(parser, windower)

    def _make_fill(self) -> Callable[[np.ndarray, np.ndarray], None]:
        """How one sample's data lands in its row of the reused input buffer (the bundle's preprocessing)."""
        image = self.preprocessor.image
        scaler = self.preprocessor.scaler
        if image is not None:
            expected = image.sample_shape
            if tuple(expected) != tuple(self.bundle.input_shape):
                raise EdgeanomError(
                    f"bundle {self.bundle.path}: preprocess.image gives {expected}, input.shape is "
                    f"{list(self.bundle.input_shape)}"
                )
            return lambda data, out: np.copyto(out, data)  # already float32 CHW (capture thread)
        if scaler is not None:
            return lambda data, out: scaler(data, out=out)
        return lambda data, out: np.copyto(out, data, casting="unsafe")

    def _open_sources(self) -> None:
        opened: list[Source] = []
        try:
            for src in self.sources:
                src.open()
                opened.append(src)
        except BaseException:
            for src in opened:
                with contextlib.suppress(Exception):  # already failing: report the open error, not this one
                    src.close()
            raise

    def _emit(self, event: dict[str, Any]) -> None:
        """Out-of-band events from capture threads (gap, reconnect); delivered by the loop in order."""
        with self._cond:
            self._oob.append(event)
            self._cond.notify_all()

    # --- the loop ----------------------------------------------------------------------------------
    def run(self) -> RunSummary:
        """Run until every stream ends, a limit is reached, or `stop()`; sinks are always flushed and closed."""
        names = [s.name for s in self.sources]
        for name in names:
            self.stats.add_stream(name)
        try:
            alarms = StreamAlarms(self.threshold.value, self.settings, names)
            if self.config.warmup:
                self.runner.infer(self._input[:1])
            self._open_sources()
        except BaseException:
            for sink in self.sinks:  # nothing ran yet: close the outputs without a summary
                with contextlib.suppress(Exception):
                    sink.close()
            raise
        kept_events: collections.deque[dict[str, Any]] = collections.deque(maxlen=MAX_KEPT_EVENTS)
        dispatcher = SinkDispatcher(
            self.sinks, capacity=self.config.sink_queue, on_error=lambda _exc: self.stop("sink")
        )
        captures: list[CaptureThread] = []
        error: Optional[BaseException] = None
        try:
            captures = self._start_captures()
            self._loop(captures, alarms, dispatcher, kept_events)
        except BaseException as exc:
            error = exc
        finally:
            for cap in captures:
                cap.stop()
            deadline = time.monotonic() + 2.0  # a thread blocked in a read (stdin) is a daemon: leave it
            for cap in captures:
                cap.join(timeout=max(0.0, deadline - time.monotonic()))
            self._drain_oob(dispatcher)
            for event in alarms.flush():  # alarms still open end with the run: no event is lost
                kept_events.append(event)
                dispatcher.write_event(event)
            summary = RunSummary(
                self.stats.snapshot(), list(kept_events), list(self.stats.corrupt_examples), self._stopped_by
            )
            dispatcher.write_event({"type": "summary", "time": time.time(), **_summary_event(summary)})
            sink_errors = dispatcher.close()
        if error is not None:
            raise error
        real = [e for e in sink_errors if not isinstance(e, BrokenPipeError)]
        if real:
            exc = real[0]
            raise exc if isinstance(exc, EdgeanomError) else EdgeanomError(f"output failed: {exc}") from exc
        return summary

    def _start_captures(self) -> list[CaptureThread]:
        captures = []
        for src in self.sources:
            live = bool(src.drop_stale)
            capacity = 1 if live else max(2, 2 * self.config.batch)
            channel = Channel(self._cond, capacity, drop_stale=live)
            pace = None
            if src.kind == "rows":
                pace = self.config.rate_hz
            elif self.config.realtime and not src.reconnect:
                pace = src.fps or 30.0  # a file played like a camera; a camera paces itself
            cap = CaptureThread(
                src,
                channel,
                self._sampler(src),
                self.stats,
                self._emit,
                pace_hz=pace,
                backoff_s=self.config.backoff_s,
            )
            captures.append(cap)
        for cap in captures:
            cap.start()
        return captures

    def _drain_oob(self, dispatcher: SinkDispatcher) -> None:
        while self._oob:
            dispatcher.write_event(self._oob.popleft())

    def _loop(
        self,
        captures: list[CaptureThread],
        alarms: StreamAlarms,
        dispatcher: SinkDispatcher,
        kept_events: collections.deque[dict[str, Any]],
    ) -> None:
        cfg = self.config
        started = time.monotonic()
        active = list(range(len(captures)))
        scored = [0] * len(captures)
        per_stream = [1 if c.channel.drop_stale else max(1, cfg.batch) for c in captures]
        while active:
            if self._stop.is_set():
                return
            if cfg.duration_s is not None and time.monotonic() - started >= cfg.duration_s:
                self.stop("duration")
                return
            taken: list[tuple[int, Item]] = []
            with self._cond:
                for sid in active:
                    ch = captures[sid].channel
                    if ch.exhausted and ch.error is not None:
                        raise ch.error
                active = [sid for sid in active if not captures[sid].channel.exhausted]
                self._wait_for_lagging_streams(captures, active)
                room = self._max_batch
                for sid in active:
                    limit = min(per_stream[sid], room)
                    if cfg.max_frames is not None:
                        limit = min(limit, cfg.max_frames - scored[sid])
                    for item in captures[sid].channel.take(limit):
                        taken.append((sid, item))
                    room = self._max_batch - len(taken)
                    if room <= 0:
                        break
                if not taken and not self._oob:
                    if active:
                        self._cond.wait(0.05)
                    continue
            self._drain_oob(dispatcher)
            if not taken:
                continue
            # Streams served first this time go last next time, so a full batch never starves a stream.
            if len(active) > 1:
                active = active[1:] + active[:1]
            results = self._process(taken, alarms)
            for r in results:
                scored[r.stream] += 1
                for event in r.events:
                    kept_events.append(event)
            dispatcher.write(results)
            if cfg.max_frames is not None:
                for sid in list(active):
                    if scored[sid] >= cfg.max_frames:
                        captures[sid].stop()
                        active.remove(sid)
                if not active:
                    self._stopped_by = "max-frames"

    def _wait_for_lagging_streams(self, captures: list[CaptureThread], active: list[int]) -> None:
        """Once some stream has a sample, give no-drop streams (files, sensors) a moment to catch up.

        Without this, a batch formed while one file's capture thread is mid-decode holds only the other
        stream's frame, so several streams would not share batches. The wait is bounded, so a slow live
        sensor (stdin, serial, MQTT) never stalls a camera. Call with `_cond` held.
        """
        if len(active) < 2:
            return
        deadline = time.monotonic() + _CATCH_UP_S
        while not self._stop.is_set() and not self._oob:
            channels = [captures[sid].channel for sid in active]
            if not any(ch.items for ch in channels):
                return  # nothing ready yet: the loop's own wait applies
            lagging = [ch for ch in channels if not ch.drop_stale and not ch.items and not ch.finished]
            remaining = deadline - time.monotonic()
            if not lagging or remaining <= 0:
                return
            self._cond.wait(remaining)

    def _process(self, taken: list[tuple[int, Item]], alarms: StreamAlarms) -> list[SampleResult]:
        n = len(taken)
        x = self._input[:n]
        for i, (_sid, item) in enumerate(taken):
            self._fill(item.data, x[i])
        outputs = self.runner.infer(x)
        scored = self.scorer(x if self.scorer.needs_input(outputs) else None, outputs)
        scores = np.asarray(scored.scores, dtype=np.float32).reshape(-1)
        if scores.shape[0] != n:
            raise EdgeanomError(f"the model returned {scores.shape[0]} scores for a batch of {n}")
        stream_ids = np.fromiter((sid for sid, _ in taken), dtype=np.int64, count=n)
        compared, surprise, drift = scores, None, None
        if self.adaptive is not None:
            judged = self.adaptive.update(scores, x, stream_ids)
            compared = surprise = judged.surprise.astype(np.float32)
            drift = judged.events
        flags, smoothed, events = alarms.update(
            compared, stream_ids, [it.index for _, it in taken], [it.wall for _, it in taken]
        )
        if drift is not None:
            for i, extra in enumerate(drift):
                for event in extra:
                    sid = int(stream_ids[i])
                    event.update(stream=self.sources[sid].name, stream_id=sid, index=taken[i][1].index)
                    event.setdefault("time", taken[i][1].wall)
                    self.stats.record_drift(self.sources[sid].name, event["state"] == "start")
                events[i].extend(extra)
        normalised = self.threshold.normalise(smoothed if self.settings.ewma else compared)
        now = time.monotonic()
        threshold = float(alarms.threshold)
        maps = None
        if self.config.keep_maps:
            # A copy: fused maps may live in the runner's reused output buffers, and the sinks read them later.
            maps = (
                np.array(scored.maps, copy=True)
                if scored.maps is not None
                else self._display_maps(x, outputs)
            )
        results = []
        for i, (sid, item) in enumerate(taken):
            latency_ms = (now - item.captured) * 1000.0
            ev = events[i]
            started = sum(1 for e in ev if e["type"] == "start")
            for e in ev:
                e["latency_ms"] = round(latency_ms, 3)
            score = float(scores[i])
            results.append(
                SampleResult(
                    stream=sid,
                    stream_name=self.sources[sid].name,
                    index=item.index,
                    time=item.wall,
                    score=score,
                    normalised=float(normalised[i]),
                    threshold=threshold,
                    flag=bool(flags[i]),
                    latency_ms=latency_ms,
                    events=ev,
                    frame=item.frame,
                    error_map=None if maps is None else maps[i],
                    smoothed=float(smoothed[i]) if self.settings.ewma else None,
                    ref=item.ref,
                    surprise=None if surprise is None else float(surprise[i]),
                )
            )
            self.stats.record_sample(
                self.sources[sid].name, latency_ms, score=score, flag=bool(flags[i]), started=started
            )
        return results

    def _display_maps(self, x: np.ndarray, outputs: dict[str, np.ndarray]) -> Optional[np.ndarray]:
        """Error maps for the heatmap overlay when the score itself is not map-based (reconstruction models)."""
        recon = outputs.get(self.scorer.output_name)
        if self.bundle.input_kind != "image" or recon is None or recon.shape != x.shape:
            return None
        from edgeanom import scoring

        return scoring.error_map(x, np.ascontiguousarray(recon, dtype=np.float32))


def _check_threshold_override(bundle: Bundle, value: Optional[float], *, adaptive: bool) -> None:
    """--threshold below every score the alarm can compare would flag every sample: refuse it."""
    if value is None:
        return
    if adaptive and value <= 0:
        raise EdgeanomError(
            f"--threshold {value:g} is a surprise threshold with the adaptive stage: it must be > 0"
        )
    if not adaptive and not scores_can_be_negative(bundle.score) and value < 0:
        metric = bundle.score.get("metric", "mse")
        raise EdgeanomError(
            f"--threshold {value:g} is below 0, where no {metric} error ever is: every sample would alarm"
        )


def _summary_event(summary: RunSummary) -> dict[str, Any]:
    s = summary.stats
    return {
        "stopped_by": summary.stopped_by,
        "frames": s["frames"],
        "anomalies": s["anomalies"],
        "drops": s["drops"],
        "corrupt": s["corrupt"],
        "reconnects": s["reconnects"],
        "fps": s["fps"],
        "latency_ms_p50": s["latency_ms_p50"],
        "latency_ms_p99": s["latency_ms_p99"],
        "uptime_s": s["uptime_s"],
        "corrupt_examples": summary.corrupt_examples,
        "streams": s["streams"],
    }
