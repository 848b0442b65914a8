"""The bench report: one JSON document per `edgeanom bench` run, with a versioned, documented schema.

The schema lives next to this module (bench_report.schema.json) and is described field by field in
docs/bench.md. Reports are written atomically, so an interrupted run never leaves half a file.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import sys
from importlib import resources
from pathlib import Path
from typing import Any, Optional

from edgeanom._version import __version__
from edgeanom.errors import EdgeanomError
from edgeanom.fileio import atomic_write_text

SCHEMA_VERSION = 1
REPORT_KIND = "edgeanom-bench"
SCHEMA_FILE = "bench_report.schema.json"


def load_schema() -> dict[str, Any]:
    text = resources.files("edgeanom.benchmarking").joinpath(SCHEMA_FILE).read_text()
    return json.loads(text)


def _sha256(path: Path) -> Optional[str]:
    try:
        h = hashlib.sha256()
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest()
    except OSError:
        return None


def global_warnings(env: dict[str, Any], load_average: Optional[list[float]]) -> list[str]:
    """Conditions that make every number of the run less trustworthy."""
    out = []
    jetson = env.get("jetson") or {}
    clocks = jetson.get("jetson_clocks") or {}
    if jetson and clocks.get("on") is False:
        out.append(
            "jetson_clocks is off: CPU/GPU clocks scale with load, so latency varies; "
            "run `sudo jetson_clocks` before benchmarking"
        )
    cores = ((env.get("cpu") or {}).get("cores_usable")) or os.cpu_count() or 1
    if load_average and load_average[0] > 0.5 * cores:
        out.append(
            f"the machine was busy before the run (load average {load_average[0]:.2f} on {cores} cores): "
            "numbers may be pessimistic"
        )
    return out


def build_report(
    plan: Any,
    bundle: Any,
    env: dict[str, Any],
    results: list[dict[str, Any]],
    skipped: list[dict[str, Any]],
    source_name: str,
    load_average: Optional[list[float]] = None,
) -> dict[str, Any]:
    if load_average is None:
        load_average = current_load_average()
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": REPORT_KIND,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "edgeanom_version": __version__,
        "argv": list(sys.argv),
        "bundle": {
            "path": str(bundle.path),
            "model_type": bundle.model_type,
            "input_kind": bundle.input_kind,
            "input_shape": list(bundle.input_shape),
            "onnx_file": bundle.onnx_path.name,
            "onnx_sha256": _sha256(bundle.onnx_path),
        },
        "settings": {
            "backends": list(plan.backends),
            "precisions": list(plan.precisions),
            "batches": [int(b) for b in plan.batches],
            "threads": [t for t in plan.threads],
            "warmup_s": float(plan.warmup_s),
            "duration_s": float(plan.duration_s),
            "source": source_name,
            "tegrastats_interval_ms": int(plan.tegrastats_interval_ms),
            "load_average": load_average,
        },
        "environment": env,
        "warnings": global_warnings(env, load_average),
        "skipped": skipped,
        "results": results,
    }


def current_load_average() -> Optional[list[float]]:
    """1, 5 and 15 minute load averages (other processes competing for the CPU)."""
    try:
        return [float(v) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def validate_report(doc: Any) -> None:
    """Raise EdgeanomError naming the first field that breaks the schema (jsonschema when installed)."""
    try:
        import jsonschema
    except ImportError:
        jsonschema = None
    if jsonschema is not None:
        try:
            jsonschema.validate(doc, load_schema())
        except jsonschema.ValidationError as exc:
            where = "/".join(str(p) for p in exc.absolute_path) or "(top level)"
            raise EdgeanomError(f"bench report field '{where}': {exc.message}") from None
        return
    _validate_minimal(doc)


def _validate_minimal(doc: Any) -> None:
    if not isinstance(doc, dict):
        raise EdgeanomError("bench report: expected a JSON object at the top level")
    for key in load_schema()["required"]:
        if key not in doc:
            raise EdgeanomError(f"bench report: required field '{key}' is missing")
    if doc["schema_version"] != SCHEMA_VERSION:
        raise EdgeanomError(
            f"bench report: schema_version {doc['schema_version']!r}, expected {SCHEMA_VERSION}"
        )
    for i, r in enumerate(doc["results"]):
        for key in ("config", "throughput_fps", "latency_ms", "end_to_end_ms", "stages_ms"):
            if key not in r:
                raise EdgeanomError(f"bench report: results/{i}: required field '{key}' is missing")


def write_report(doc: dict[str, Any], path: Path) -> Path:
    """Write the report atomically (temp file + rename)."""
    path = Path(path)
    text = json.dumps(_finite(doc), indent=1, allow_nan=False, default=_json_default) + "\n"
    atomic_write_text(path, text)
    return path


def _finite(obj: Any) -> Any:
    """NaN/Inf are not JSON: write them as null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def load_report(path: Path) -> dict[str, Any]:
    """Read and validate a report written by `edgeanom bench --json`."""
    path = Path(path)
    if not path.is_file():
        raise EdgeanomError(f"bench report '{path}' not found")
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise EdgeanomError(f"{path}: invalid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(doc, dict) or doc.get("kind") != REPORT_KIND:
        raise EdgeanomError(f"{path}: not an edgeanom bench report (kind is not '{REPORT_KIND}')")
    try:
        validate_report(doc)
    except EdgeanomError as exc:
        raise EdgeanomError(f"{path}: {exc}") from None
    return doc
