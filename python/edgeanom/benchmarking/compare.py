"""Two bench reports side by side: ratios B/A per matching configuration, and what differs between machines.

Configurations are paired by (backend, precision, batch, threads); configurations left over on both
sides are paired by batch size (e.g. TensorRT FP16 in B against ONNX Runtime FP32 in A). A pair is
flagged when anything that affects speed differs: the machine, the runtimes, the runner or precision.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

Getter = Callable[[dict[str, Any]], Any]


def _get(path: str) -> Getter:
    def getter(doc: dict[str, Any]) -> Any:
        cur: Any = doc
        for part in path.split("."):
            if isinstance(cur, list):
                cur = cur[int(part)] if cur and part.isdigit() and int(part) < len(cur) else None
            elif isinstance(cur, dict):
                cur = cur.get(part)
            else:
                return None
        return cur

    return getter


# Environment facts that change the speed of a run.
ENV_FIELDS: dict[str, Getter] = {
    "cpu": _get("cpu.model"),
    "cpu cores": _get("cpu.cores_usable"),
    "gpu": _get("cuda.devices.0.name"),
    "cuda driver": _get("cuda.driver"),
    "jetson module": _get("jetson.module"),
    "jetpack": _get("jetson.jetpack"),
    "nvpmodel": _get("jetson.nvpmodel.name"),
    "jetson_clocks": _get("jetson.jetson_clocks.on"),
    "onnxruntime": _get("packages.onnxruntime.version"),
    "tensorrt": _get("packages.tensorrt.version"),
    "torch": _get("packages.torch.version"),
    "opencv": _get("packages.opencv.version"),
    "edgeanom": _get("edgeanom"),
    "scoring threads": _get("scoring.threads"),
}

METRICS: dict[str, Getter] = {
    "throughput_fps": _get("throughput_fps"),
    "latency_p50_ms": _get("latency_ms.p50"),
    "latency_p99_ms": _get("latency_ms.p99"),
    "end_to_end_p50_ms": _get("end_to_end_ms.p50"),
    "end_to_end_p99_ms": _get("end_to_end_ms.p99"),
    "per_frame_end_to_end_p50_ms": _get("per_frame_ms.end_to_end.p50"),
    "energy_mj_per_frame": _get("power.energy_mj_per_frame"),
}


def environment_differences(env_a: dict[str, Any], env_b: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for name, get in ENV_FIELDS.items():
        va, vb = get(env_a or {}), get(env_b or {})
        if va != vb:
            out.append({"field": name, "a": va, "b": vb})
    return out


def _ratio(a: Any, b: Any) -> Optional[float]:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and a > 0:
        return float(b) / float(a)
    return None


def _match_key(r: dict[str, Any]) -> tuple[Any, ...]:
    c = r["config"]
    return (c["backend"], c["precision"], c["batch"], c.get("threads"))


def pair_results(
    a: list[dict[str, Any]], b: list[dict[str, Any]]
) -> tuple[list[tuple[dict, dict]], list, list]:
    """Exact configuration matches first, then leftovers by batch size; returns pairs and unmatched."""
    b_by_key = {_match_key(r): r for r in b}
    pairs, left_a = [], []
    used = set()
    for ra in a:
        rb = b_by_key.get(_match_key(ra))
        if rb is not None and _match_key(rb) not in used:
            pairs.append((ra, rb))
            used.add(_match_key(rb))
        else:
            left_a.append(ra)
    left_b = [rb for rb in b if _match_key(rb) not in used]
    still_a = []
    for ra in left_a:
        rb = next((r for r in left_b if r["config"]["batch"] == ra["config"]["batch"]), None)
        if rb is None:
            still_a.append(ra)
        else:
            pairs.append((ra, rb))
            left_b.remove(rb)
    return pairs, still_a, left_b


def compare_reports(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """The comparison as a JSON-ready dict (ratios are B / A)."""
    env_diff = environment_differences(a.get("environment", {}), b.get("environment", {}))
    sha_a, sha_b = a.get("bundle", {}).get("onnx_sha256"), b.get("bundle", {}).get("onnx_sha256")
    if sha_a != sha_b:
        env_diff.append({"field": "model", "a": sha_a, "b": sha_b})
    pairs, only_a, only_b = pair_results(a.get("results", []), b.get("results", []))
    rows = []
    for ra, rb in pairs:
        flags = [d["field"] for d in env_diff]
        for attr in ("runner", "precision_used", "engine_cache_key"):
            if ra.get(attr) != rb.get(attr):
                flags.append(attr)
        metrics = {}
        for name, get in METRICS.items():
            va, vb = get(ra), get(rb)
            metrics[name] = {"a": va, "b": vb, "ratio": _ratio(va, vb)}
        rows.append(
            {
                "a": ra["key"],
                "b": rb["key"],
                "same_config": _match_key(ra) == _match_key(rb),
                "batch": ra["config"]["batch"],
                "metrics": metrics,
                "differs": flags,
            }
        )
    return {
        "environment_differences": env_diff,
        "pairs": rows,
        "only_in_a": [r["key"] for r in only_a],
        "only_in_b": [r["key"] for r in only_b],
    }
