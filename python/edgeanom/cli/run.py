"""`edgeanom run`: score live cameras, video files, image folders and sensor streams; emit events."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edgeanom.cli._common import DEFAULT_BUNDLE, BundleOption, handle_errors

HELP = """Score streams with a trained bundle and emit events.

Sources (repeat flags to run several streams, batched together): --camera 0 | rtsp://… | http://… |
"… ! appsink" (GStreamer) | csi:0 (Jetson), --video FILE, --images DIR, --sensor FILE.csv | - (stdin) |
serial:///dev/ttyUSB0?baud=115200 | mqtt://host:port/topic.

Output: JSON Lines on stdout (or --events FILE), a status line on stderr; --mqtt, --record, --save-anomalies,
--serve, --show add more. Ctrl-C or SIGTERM stops cleanly (every output flushed and closed).
"""


def register(app: typer.Typer) -> None:
    app.command("run", help=HELP, no_args_is_help=False)(run)


@handle_errors
def run(
    model: BundleOption = DEFAULT_BUNDLE,
    camera: Annotated[
        Optional[list[str]],
        typer.Option("--camera", "-c", help="Camera: index, rtsp/http URL, GStreamer pipeline or csi:N."),
    ] = None,
    video: Annotated[Optional[list[Path]], typer.Option("--video", help="Video file (every frame).")] = None,
    images: Annotated[
        Optional[list[Path]], typer.Option("--images", help="Folder of images (name order).")
    ] = None,
    sensor: Annotated[
        Optional[list[str]],
        typer.Option(
            "--sensor", "-s", help="Sensor CSV file, - (stdin), serial://PORT?baud=N or mqtt://host/topic."
        ),
    ] = None,
    backend: Annotated[
        str,
        typer.Option(
            "--backend",
            help="auto | tensorrt | onnxruntime | openvino | torch | triton://HOST:PORT/MODEL (a remote Triton "
            "server over gRPC) (auto: fastest available).",
        ),
    ] = "auto",
    precision: Annotated[
        Optional[str],
        typer.Option(
            "--precision",
            help="fp32 | fp16 | int8 (int8: TensorRT). Default: the precision of the bundle's TensorRT engine "
            "(e.g. after export --fp16 --engine), else fp32.",
        ),
    ] = None,
    threads: Annotated[int, typer.Option("--threads", help="CPU inference threads (0: one per core).")] = 0,
    batch: Annotated[
        int,
        typer.Option("--batch", help="Samples per file/sensor stream per batch (live cameras: newest one)."),
    ] = 8,
    threshold: Annotated[
        Optional[float],
        typer.Option(
            "--threshold",
            help="Override the alarm threshold: on the raw score, or on the surprise with the adaptive stage.",
        ),
    ] = None,
    adaptive: Annotated[
        Optional[bool],
        typer.Option(
            "--adaptive/--no-adaptive",
            help="Judge each score against the stream's own recent history (default: the bundle's setting, "
            "on for sensor bundles).",
        ),
    ] = None,
    recalibrate: Annotated[
        bool,
        typer.Option(
            "--recalibrate",
            help="Adaptive stage: let a change that persists become the new normal, at a bounded rate.",
        ),
    ] = False,
    k: Annotated[
        int, typer.Option("--k", help="Alarm when k of the last n samples are above threshold.")
    ] = 1,
    n: Annotated[int, typer.Option("--n", help="Window of the k-of-n vote.")] = 1,
    ewma: Annotated[
        Optional[float], typer.Option("--ewma", help="Smooth scores with an EWMA of this alpha (0..1] first.")
    ] = None,
    hysteresis: Annotated[
        Optional[float],
        typer.Option("--hysteresis", help="Clear an alarm only below threshold*(1-H), e.g. 0.2."),
    ] = None,
    min_hold: Annotated[
        int, typer.Option("--min-hold", help="Keep an alarm on for at least this many samples.")
    ] = 0,
    events: Annotated[
        Optional[Path], typer.Option("--events", help="Write JSON Lines here instead of stdout.")
    ] = None,
    events_only: Annotated[
        bool, typer.Option("--events-only", help="JSON Lines: alarm/stream events only, not every sample.")
    ] = False,
    mqtt: Annotated[
        Optional[str], typer.Option("--mqtt", help="Publish events and status: mqtt://host:port/topic.")
    ] = None,
    record: Annotated[
        Optional[Path], typer.Option("--record", help="Write the annotated video (.mp4).")
    ] = None,
    record_segment: Annotated[
        float,
        typer.Option(
            "--record-segment",
            help="Seconds of video per --record file; a hard kill loses at most one (0: one file).",
        ),
    ] = 10.0,
    save_anomalies: Annotated[
        Optional[Path], typer.Option("--save-anomalies", help="Save anomalous frames + heatmaps + JSON here.")
    ] = None,
    serve: Annotated[
        Optional[str],
        typer.Option(
            "--serve",
            help="Live web view and /metrics on [HOST]:PORT: :8080 is this machine only; 0.0.0.0:8080 (or a "
            "named host) serves the network and then needs a token.",
        ),
    ] = None,
    serve_token: Annotated[
        Optional[str],
        typer.Option(
            "--serve-token", help="The token off-loopback web-view clients must give (default: generated)."
        ),
    ] = None,
    serve_no_auth: Annotated[
        bool,
        typer.Option(
            "--serve-no-auth", help="Serve the network without a token (anyone who can reach it sees it)."
        ),
    ] = False,
    show: Annotated[
        bool, typer.Option("--show", help="OpenCV window (needs an OpenCV build with a GUI).")
    ] = False,
    realtime: Annotated[
        bool, typer.Option("--realtime", help="Play video files at their frame rate, like a camera.")
    ] = False,
    loop: Annotated[
        bool, typer.Option("--loop", help="Video files start again at their end (demos, soak tests).")
    ] = False,
    rate: Annotated[
        Optional[float], typer.Option("--rate", help="Replay sensor CSV files at this many rows per second.")
    ] = None,
    max_frames: Annotated[
        Optional[int], typer.Option("--max-frames", help="Stop each stream after this many samples.")
    ] = None,
    duration: Annotated[
        Optional[float], typer.Option("--duration", help="Stop after this many seconds.")
    ] = None,
    status_interval: Annotated[
        float, typer.Option("--status-interval", help="Seconds between status lines on stderr (0: none).")
    ] = 5.0,
) -> None:
    from edgeanom.runtime.alarms import AlarmSettings
    from edgeanom.runtime.launch import RunOptions, run_stream
    from edgeanom.runtime.sinks.status import status_text

    opts = RunOptions(
        model=model,
        cameras=list(camera or []),
        videos=list(video or []),
        images=list(images or []),
        sensors=list(sensor or []),
        backend=backend,
        precision=precision,
        threads=threads,
        batch=batch,
        alarms=AlarmSettings(threshold, k, n, ewma, hysteresis, min_hold, adaptive, recalibrate),
        events=events,
        events_only=events_only,
        mqtt=mqtt,
        record=record,
        record_segment=record_segment,
        save_anomalies=save_anomalies,
        serve=serve,
        serve_token=serve_token,
        serve_no_auth=serve_no_auth,
        show=show,
        realtime=realtime,
        loop=loop,
        rate=rate,
        max_frames=max_frames,
        duration=duration,
        status_interval=status_interval,
    )
    say = _say
    summary = run_stream(opts, say=say)
    final = {**summary.stats, "fps": summary.stats["fps_mean"]}  # the whole run's rate, not the last seconds'
    say(f"finished ({summary.stopped_by}): " + status_text(final).removeprefix("edgeanom: "))
    for example in summary.corrupt_examples:
        say(f"skipped: {example}")
    if record is not None:
        say(f"recording: {record}")


def _say(text: str) -> None:
    typer.echo(f"edgeanom: {text}", err=True)
