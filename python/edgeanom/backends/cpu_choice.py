"""Which CPU runtime `--backend auto` uses on this machine: what `edgeanom bench` measured, not a guess.

ONNX Runtime and OpenVINO trade places by model and CPU (measured here: within 10% of each other on a 2-core
x86 box, either way). When a bench run timed both at FP32 on the same batches and threads, it records the
faster one in the bundle's engine folder (`engines/cpu-backend.json`, next to the other per-machine caches),
keyed by this machine; `auto` then opens that one and says why. Without a record, or on another machine,
`auto` keeps ONNX Runtime, the embedded default.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from pathlib import Path
from typing import Any, Optional

from edgeanom.bundle import Bundle
from edgeanom.fileio import atomic_write

RECORD = "cpu-backend.json"
CANDIDATES = ("onnxruntime", "openvino")


def machine_id() -> str:
    """Host name, CPU model and core count: a record made on one device is not applied on another."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().startswith(("model name", "hardware")):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.node()}|{model}|{os.cpu_count()}"


def faster_cpu_backend(results: list[dict[str, Any]]) -> Optional[dict[str, Any]]:
    """From bench results: the CPU runtime with the lower per-frame latency (geometric mean over the
    FP32 batch/thread settings both were timed at), or None when they were not both timed."""
    per: dict[str, dict[tuple[int, Any], float]] = {name: {} for name in CANDIDATES}
    for r in results:
        config = r.get("config") or {}
        name = config.get("backend")
        if name not in per or config.get("precision") != "fp32":
            continue
        median = ((r.get("per_frame_ms") or {}).get("latency") or {}).get("p50")
        if median is not None and median > 0:
            per[name][(int(config.get("batch", 1)), config.get("threads"))] = float(median)
    common = sorted(set(per["onnxruntime"]) & set(per["openvino"]), key=str)
    if not common:
        return None
    means = {name: math.exp(sum(math.log(per[name][k]) for k in common) / len(common)) for name in CANDIDATES}
    choice = min(means, key=lambda n: means[n])
    return {
        "choice": choice,
        "per_frame_ms": {n: round(v, 4) for n, v in means.items()},
        "settings": [{"batch": b, "threads": t} for b, t in common],
    }


def record_choice(bundle: Bundle, results: list[dict[str, Any]]) -> Optional[dict[str, Any]]:
    """Write the record when the results time both runtimes; returns it (None when they did not)."""
    found = faster_cpu_backend(results)
    if found is None:
        return None
    record = {"machine": machine_id(), "measured": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **found}
    folder = bundle.path / "engines"
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / RECORD, lambda fh: fh.write(json.dumps(record, indent=2).encode("utf-8")))
    return record


def measured_choice(bundle: Bundle) -> Optional[tuple[str, str]]:
    """(backend, why) from this machine's record, or None. A damaged record is ignored (bench rewrites it)."""
    path = bundle.path / "engines" / RECORD
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("machine") != machine_id():
        return None
    choice = record.get("choice")
    times = record.get("per_frame_ms") or {}
    if choice not in CANDIDATES or not all(isinstance(times.get(n), (int, float)) for n in CANDIDATES):
        return None
    other = next(n for n in CANDIDATES if n != choice)
    ratio = times[other] / times[choice] if times[choice] > 0 else float("inf")
    why = (
        f"measured {ratio:.2f}x faster than {other} on this machine by edgeanom bench "
        f"({times[choice]:.3g} vs {times[other]:.3g} ms per frame, {record.get('measured', '?')})"
    )
    return str(choice), why
