"""Memory of a long unthrottled `run`: resident set size over time with several video streams scored as fast as
the machine allows, looping each file; the growth after warm-up is the figure (target: within 5%).

    python benchmarks/soak.py [--minutes 60] [--streams 4] [--out benchmarks/results/soak.json]

Each stream loops a generated 320x320 video (the `run` path: capture threads, preprocessing, ONNX Runtime,
the C++ scorer, alarms, a JSON Lines sink writing events only). RSS is sampled every `--every` seconds; the
warm-up is the first 10% of the run.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_pipeline

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--streams", type=int, default=4)
    ap.add_argument("--every", type=float, default=5.0)
    ap.add_argument("--work", type=Path, default=Path("build/soak"))
    ap.add_argument("--out", type=Path, default=RESULTS / "soak.json")
    args = ap.parse_args(argv)

    import psutil

    from edgeanom.runtime.launch import RunOptions, run_stream

    args.work.mkdir(parents=True, exist_ok=True)
    bundle = bench_pipeline.make_bundle(args.work / "model")
    video = bench_pipeline.make_video(args.work / "clip.mp4", 300)
    opts = RunOptions(
        model=bundle.path,
        videos=[video] * args.streams,
        events=args.work / "events.jsonl",
        events_only=True,
        status_interval=0,
        install_signal_handlers=False,
        duration=args.minutes * 60.0,
        loop=True,
    )
    proc = psutil.Process()
    samples: list[tuple[float, float]] = []
    done = threading.Event()

    def sample() -> None:
        start = time.monotonic()
        while not done.wait(args.every):
            samples.append((time.monotonic() - start, proc.memory_info().rss / 1e6))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    summary = run_stream(opts)
    done.set()
    sampler.join()
    warm = [mb for t, mb in samples if t >= 0.1 * args.minutes * 60.0]
    growth = (warm[-1] - warm[0]) / warm[0] if len(warm) >= 2 else None
    payload = {
        "minutes": args.minutes,
        "streams": args.streams,
        "frames": summary.stats["frames"],
        "fps": summary.stats["fps_mean"],
        "rss_mb": [[round(t, 1), round(mb, 1)] for t, mb in samples],
        "rss_after_warmup_mb": [round(warm[0], 1), round(warm[-1], 1)] if warm else None,
        "growth_after_warmup": growth,
        "target": 0.05,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=1) + "\n")
    print(
        f"{'minutes':>8} {'streams':>8} {'frames':>8} {'fps':>7} {'RSS after warm-up MB':>22} {'growth':>8}"
    )
    first_last = f"{warm[0]:.1f} -> {warm[-1]:.1f}" if warm else "-"
    print(
        f"{args.minutes:>8g} {args.streams:>8} {summary.stats['frames']:>8} {summary.stats['fps_mean']:>7.1f} "
        f"{first_last:>22} {growth if growth is None else f'{growth:+.1%}':>8}"
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
