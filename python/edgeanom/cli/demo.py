"""`edgeanom demo`: the whole loop in one command, no camera needed.

Makes a short scene video with anomalies injected at known frames, trains a small conv-AE on its normal
first part, runs the stream through the same pipeline as `edgeanom run` (recording an annotated video, or
serving the live view), prints the events, and tells which injected anomalies were caught.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from edgeanom.cli._common import handle_errors


def register(app: typer.Typer) -> None:
    app.command("demo", help="Show the whole loop on a synthetic scene: make video, train, run, report.")(
        demo
    )


@handle_errors
def demo(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for the video, model, events and recording.")
    ] = Path("edgeanom-demo"),
    frames: Annotated[
        int, typer.Option("--frames", help="Length of the scene video (frames, 25 fps).")
    ] = 300,
    size: Annotated[
        int, typer.Option("--size", help="Frame and model size in pixels (a multiple of 8).")
    ] = 48,
    epochs: Annotated[Optional[int], typer.Option("--epochs", help="Training epochs (default 25).")] = None,
    serve: Annotated[
        Optional[str],
        typer.Option("--serve", help="Live web view on [HOST]:PORT (e.g. :8080); plays at video speed."),
    ] = None,
    record: Annotated[bool, typer.Option("--record/--no-record", help="Write the annotated video.")] = True,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the scene and the training.")] = 0,
) -> None:
    from rich.console import Console
    from rich.table import Table

    from edgeanom.demo import demo_train_options, match_alarms, scene_frames, write_video
    from edgeanom.errors import EdgeanomError
    from edgeanom.runtime.launch import RunOptions, run_stream
    from edgeanom.runtime.sinks.status import event_text

    console = Console(stderr=True, highlight=False)
    if size % 8 or size < 16:
        raise EdgeanomError(f"--size must be a multiple of 8 and at least 16, got {size}")
    if frames < 100:
        raise EdgeanomError(f"--frames must be at least 100 (half of them train the model), got {frames}")
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.monotonic()

    scene, injected = scene_frames(frames, size, seed=seed)
    video = write_video(out / "scene.mp4", scene, fps=25.0)
    (out / "injected.json").write_text(json.dumps([a.to_json() for a in injected], indent=1) + "\n")
    train_count = min(a.start for a in injected)
    console.print(
        f"[bold]1/4 scene[/]: {video} ({frames} frames, {size}x{size}); anomalies injected at "
        + ", ".join(f"{a.kind} {a.start}-{a.end - 1}" for a in injected)
    )

    server: Any = None
    if serve:
        from edgeanom.runtime.sinks.serve import WebServer

        server = WebServer(serve, None)  # up during training; the stream appears when the run starts
        console.print(f"[bold]live view[/]: {server.url} (the stream starts after training)")

    from edgeanom.train.api import train_bundle

    console.print(f"[bold]2/4 train[/]: conv-AE on the first {train_count} frames (normal footage only)")
    options = demo_train_options(frames, size)
    if epochs is not None:
        options["epochs"] = int(epochs)
    bundle_dir = out / "model"
    t0 = time.monotonic()
    try:
        bundle = train_bundle(frames=scene[:train_count], out=bundle_dir, seed=seed, **options)
    except BaseException:
        if server is not None:
            server.close()
        raise
    console.print(
        f"   trained in {time.monotonic() - t0:.0f} s; threshold {bundle.threshold.value:.4g} "
        f"({bundle.threshold.method} of held-out normal scores)"
    )
    parity = (bundle.onnx or {}).get("parity") or {}
    diff = parity.get("max_abs_diff_vs_torch")
    console.print(
        f"[bold]3/4 export[/]: {bundle.onnx_path}"
        + (f" (ONNX Runtime matches PyTorch to {diff:.1e})" if diff is not None else "")
        + f"; for TensorRT: edgeanom export --model {bundle_dir}"
    )

    record_path = out / "annotated.mp4" if record else None
    console.print(
        f"[bold]4/4 run[/]: edgeanom run --model {bundle_dir} --video {video}"
        + (f" --record {record_path}" if record_path else "")
        + (f" --serve {serve} --realtime" if serve else "")
        + f" --events {out / 'events.jsonl'}"
    )
    opts = RunOptions(
        model=bundle_dir,
        videos=[video],
        backend="onnxruntime",
        events=out / "events.jsonl",
        events_to_stdout=False,
        record=record_path,
        realtime=bool(serve),
        status_interval=0,
    )

    def print_event(event: dict[str, Any]) -> None:
        text = event_text(event)
        if text:
            console.print("   " + text.removeprefix("edgeanom: "))

    class _PrintEvents:
        """A sink that prints alarm starts/ends as they happen."""

        def write(self, result: Any) -> None:
            for event in result.events:
                print_event(event)

        def write_event(self, event: dict[str, Any]) -> None:
            print_event(event)

        def close(self) -> None:
            pass

    class _KeepServing:
        """Feeds the web view but leaves it open when the run ends, so the page stays up to look at."""

        def write(self, result: Any) -> None:
            server.write(result)

        def write_event(self, event: dict[str, Any]) -> None:
            server.write_event(event)

        def close(self) -> None:
            pass

    extra: tuple[Any, ...] = (_PrintEvents(),) + ((_KeepServing(),) if server is not None else ())
    try:
        summary = run_stream(opts, say=lambda text: console.print("   " + text), extra_sinks=extra)
    except BaseException:
        if server is not None:
            server.close()
        raise

    detections, false_alarms = match_alarms(summary.events, injected)
    table = Table(title="injected anomalies")
    for col in ("kind", "frames", "caught", "alarm at", "delay (frames)", "peak score"):
        table.add_column(col)
    for d in detections:
        a = d.injected
        table.add_row(
            a.kind,
            f"{a.start}-{a.end - 1}",
            "[green]yes[/]" if d.caught else "[red]no[/]",
            "" if d.first_alarm is None else str(d.first_alarm),
            "" if d.delay is None else str(d.delay),
            "" if d.peak is None else f"{d.peak:.4g}",
        )
    console.print(table)
    caught = sum(d.caught for d in detections)
    stats = summary.stats
    console.print(
        f"caught {caught}/{len(detections)} anomalies, {len(false_alarms)} false alarm(s)"
        + (" at " + ", ".join(f"{s}-{e - 1}" for s, e in false_alarms) if false_alarms else "")
        + f"; {stats['frames']} frames at {stats['fps_mean']:.0f} fps, latency p50 {stats['latency_ms_p50']:.1f} ms"
    )
    console.print(f"events: {out / 'events.jsonl'}" + (f"; recording: {record_path}" if record_path else ""))
    console.print(
        f"done in {time.monotonic() - t_start:.0f} s. Next: edgeanom train --camera 0 --duration 120"
    )
    if server is not None:
        console.print(f"the live view stays at {server.url} (scores, events); Ctrl-C to quit")
        try:
            while True:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            server.close()
