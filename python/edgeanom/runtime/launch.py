"""Assemble a run from plain options: bundle, sources, runner, sinks, pipeline; used by `run` and `demo`.

Everything opened here is closed here, in reverse order, whatever happens (a sink that fails to start
closes the ones already started; Ctrl-C and SIGTERM still flush every sink).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from edgeanom.backends import open_runner
from edgeanom.bundle import DEFAULT_BUNDLE_DIR, load_bundle
from edgeanom.errors import EdgeanomError
from edgeanom.runtime.alarms import AlarmSettings
from edgeanom.runtime.pipeline import Pipeline, PipelineConfig, RunSummary
from edgeanom.runtime.signals import graceful_stop
from edgeanom.runtime.sinks.registry import SINKS, SinkContext
from edgeanom.runtime.sources import make_sources
from edgeanom.runtime.stats import RunStats
from edgeanom.runtime.types import Sink
from edgeanom.threads import MAX_THREADS

MAX_BATCH = 4096  # samples per stream per batch; larger only allocates memory the runtime cannot use


@dataclass
class RunOptions:
    model: Path = DEFAULT_BUNDLE_DIR
    cameras: list[str] = field(default_factory=list)
    videos: list[Path] = field(default_factory=list)
    images: list[Path] = field(default_factory=list)
    sensors: list[str] = field(default_factory=list)
    backend: str = "auto"
    precision: Optional[str] = None  # None: the precision of the bundle's newest TensorRT engine, else fp32
    threads: int = 0
    batch: int = 8
    alarms: AlarmSettings = field(default_factory=AlarmSettings)
    events: Optional[Path] = None  # None: stdout
    events_to_stdout: bool = True  # False: no JSONL at all unless `events` is set (demo prints its own)
    events_only: bool = False
    mqtt: Optional[str] = None
    record: Optional[Path] = None
    record_segment: float = (
        10.0  # seconds of video per recording file (0: one file, playable only after a clean stop)
    )
    save_anomalies: Optional[Path] = None
    serve: Optional[str] = None
    serve_token: Optional[str] = None  # off loopback: the token every web-view route needs (None: generated)
    serve_no_auth: bool = False  # off loopback: serve without a token (explicitly unsafe)
    show: bool = False
    realtime: bool = False
    loop: bool = False  # video files start again at their end
    rate: Optional[float] = None
    max_frames: Optional[int] = None
    duration: Optional[float] = None
    status_interval: float = 5.0  # 0: no status line
    install_signal_handlers: bool = True


def default_precision(bundle: Any, backend: str) -> str:
    """What `run` uses without --precision: after `export --fp16 --engine`, the FP16 engine it built (not a
    new FP32 build); fp32 for every other case."""
    if backend not in ("auto", "tensorrt"):
        return "fp32"
    if backend == "auto":
        from edgeanom.backends.registry import get_backend

        if get_backend("tensorrt").unavailable(bundle):  # auto will use ONNX Runtime here: FP32 on CPU
            return "fp32"
    engines = [e for e in bundle.meta.get("engines") or [] if isinstance(e, dict)]
    newest = max(engines, key=lambda e: str(e.get("created", "")), default=None)
    precision = ((newest or {}).get("key") or {}).get("precision")
    return precision if precision in ("fp32", "fp16", "int8") else "fp32"


def run_stream(
    opts: RunOptions,
    say: Callable[[str], None] = lambda _text: None,
    extra_sinks: tuple[Sink, ...] = (),
    on_ready: Optional[Callable[[Pipeline, list[Sink]], None]] = None,
) -> RunSummary:
    """Run the streams in `opts` to the end (or a limit, or a signal). `say` gets the human messages."""
    if not (opts.cameras or opts.videos or opts.images or opts.sensors):
        raise EdgeanomError(
            "no input: give --camera, --video, --images or --sensor (several run as one batch)"
        )
    if not 1 <= opts.batch <= MAX_BATCH:
        raise EdgeanomError(f"--batch must be in [1, {MAX_BATCH}], got {opts.batch}")
    if not 0 <= opts.threads <= MAX_THREADS:
        raise EdgeanomError(f"--threads must be in [0, {MAX_THREADS}] (0: one per core), got {opts.threads}")
    if opts.max_frames is not None and opts.max_frames < 1:
        raise EdgeanomError(f"--max-frames must be >= 1, got {opts.max_frames}")
    if opts.duration is not None and not opts.duration > 0:
        raise EdgeanomError(f"--duration must be > 0 seconds, got {opts.duration}")
    opts.alarms.validate()
    if opts.show:
        from edgeanom.runtime.sinks.show import gui_unavailable

        reason = gui_unavailable()
        if reason:
            raise EdgeanomError(reason)
    opts.alarms.validate()
    bundle = load_bundle(opts.model)
    sources = make_sources(
        opts.cameras,
        opts.videos,
        opts.images,
        opts.sensors,
        realtime=opts.realtime,
        rate_hz=opts.rate,
        loop=opts.loop,
    )
    wants_frames = bool(opts.record or opts.save_anomalies or opts.serve or opts.show)
    streams = len(sources)
    runner = open_runner(
        bundle,
        opts.backend,
        opts.precision or default_precision(bundle, opts.backend),
        max_batch=max(streams * opts.batch, streams),
        threads=opts.threads,
        reuse_outputs=True,
        # Idle ONNX Runtime workers must not spin: the capture threads need those cores, and on a shared or
        # busy CPU spinning halves throughput (measured in benchmarks/bench_pipeline.py).
        spin_wait=False,
    )
    with contextlib.ExitStack() as stack:
        stack.callback(runner.close)
        say(f"backend: {getattr(runner, 'selection', runner.name)}")
        stats = RunStats(backend=runner.name)
        pipeline_ref: list[Pipeline] = []

        def stop(reason: str = "quit") -> None:
            if pipeline_ref:
                pipeline_ref[0].stop(reason)

        sinks = _build_sinks(opts, stats, sources, say, stop)
        config = PipelineConfig(
            batch=opts.batch,
            max_batch=max(streams * opts.batch, streams),
            max_frames=opts.max_frames,
            duration_s=opts.duration,
            realtime=opts.realtime,
            rate_hz=opts.rate,
            keep_frames=wants_frames,
            keep_maps=wants_frames,
        )
        try:
            pipeline = Pipeline(
                bundle,
                runner,
                sources,
                [*sinks, *extra_sinks],
                alarms=opts.alarms,
                config=config,
                stats=stats,
            )
        except BaseException:
            for sink in sinks:
                with contextlib.suppress(Exception):
                    sink.close()
            raise
        pipeline_ref.append(pipeline)
        if on_ready is not None:
            on_ready(pipeline, sinks)
        say(
            f"model: {bundle.model_type} ({bundle.input_kind} {list(bundle.input_shape)}), "
            + (
                f"adaptive scoring (alarm at surprise {pipeline.threshold.value:.6g}"
                + (", recalibrating" if pipeline.adaptive.recalibrating else "")
                + f"; calibrated threshold {bundle.threshold.value:.6g})"
                if pipeline.adaptive is not None
                else f"threshold {pipeline.threshold.value:.6g}"
            )
            + f"; streams: {', '.join(s.name for s in sources)}"
        )
        guard = graceful_stop(pipeline.stop) if opts.install_signal_handlers else contextlib.nullcontext()
        with guard:
            return pipeline.run()


def _build_sinks(
    opts: RunOptions,
    stats: RunStats,
    sources: list[Any],
    say: Callable[[str], None],
    stop: Callable[..., None],
) -> list[Sink]:
    """Sinks in delivery order: events first, so an alarm is on record before anything slower sees it."""
    ctx = SinkContext(stats, sources, say, stop)
    sinks: list[Sink] = []
    try:
        for kind in SINKS:
            if kind.wanted(opts):
                sinks.append(kind.create(opts, ctx))
    except BaseException:
        for sink in reversed(sinks):
            with contextlib.suppress(Exception):
                sink.close()
        raise
    return sinks
