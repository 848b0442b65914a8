"""The bundle's TensorRT engine cache: raw `.plan` files with a sidecar JSON each, keyed by what makes an
engine valid.

A serialized engine only runs on the TensorRT version, GPU model and (on Jetson) L4T release that built it,
for the precision, optimisation profile and ONNX graph it was built from. Those fields form the cache key; the
`.plan` stays a raw engine (no header) so trtexec, DeepStream and Triton load it as is, and the sidecar holds
the key plus the plan's sha256 so a truncated or foreign file is rebuilt instead of loaded.

This module needs neither TensorRT nor a GPU: callers pass a `DeviceInfo` (real, from `tensorrt_build`, or
made up in tests) and a build function that returns the serialized engine.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from edgeanom._version import __version__
from edgeanom.errors import EdgeanomError
from edgeanom.fileio import atomic_write_bytes

log = logging.getLogger(__name__)

ENGINE_DIR = "engines"
PRECISIONS = ("fp32", "fp16", "int8")
SIDECAR_FORMAT = 1
# Fields of the key, in the order they are compared and reported.
KEY_FIELDS = ("tensorrt", "gpu", "compute_capability", "l4t", "precision", "input", "profile", "onnx_sha256")


@dataclass(frozen=True)
class DeviceInfo:
    """What the engine is tied to on the machine that builds or loads it."""

    tensorrt: str  # e.g. "10.3.0"
    gpu: str  # e.g. "Orin" or "NVIDIA GeForce RTX 4090"
    compute_capability: str  # e.g. "8.7"
    l4t: Optional[str] = None  # Jetson Linux release, e.g. "36.4.3" (None off a Jetson)
    jetpack: Optional[str] = None  # informational: derived from l4t, not part of the key

    def describe(self) -> str:
        text = f"TensorRT {self.tensorrt} on {self.gpu} (sm {self.compute_capability})"
        if self.l4t:
            text += f", L4T {self.l4t}" + (f" / JetPack {self.jetpack}" if self.jetpack else "")
        return text


@dataclass(frozen=True)
class Profile:
    """One optimisation profile for the single input: full shapes (batch first) at min / opt / max."""

    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    @classmethod
    def for_batch(
        cls, sample_shape: Sequence[int], max_batch: int, opt_batch: Optional[int] = None
    ) -> Profile:
        """min 1, opt `opt_batch` (default: half of max, at least 1), max `max_batch` samples."""
        if max_batch < 1:
            raise EdgeanomError(f"--max-batch must be >= 1, got {max_batch}")
        opt = max(1, min(max_batch, opt_batch if opt_batch is not None else (max_batch + 1) // 2))
        shape = tuple(int(d) for d in sample_shape)
        return cls((1, *shape), (opt, *shape), (max_batch, *shape))

    def to_json(self) -> dict[str, list[int]]:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}

    @classmethod
    def from_json(cls, spec: dict[str, Any]) -> Profile:
        return cls(tuple(spec["min"]), tuple(spec["opt"]), tuple(spec["max"]))


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine depends on; two builds with equal keys are interchangeable."""

    device: DeviceInfo
    precision: str
    input_name: str
    profile: Profile
    onnx_sha256: str

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise EdgeanomError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")

    def fields(self) -> dict[str, Any]:
        return {
            "tensorrt": self.device.tensorrt,
            "gpu": self.device.gpu,
            "compute_capability": self.device.compute_capability,
            "l4t": self.device.l4t,
            "precision": self.precision,
            "input": self.input_name,
            "profile": self.profile.to_json(),
            "onnx_sha256": self.onnx_sha256,
        }

    def digest(self) -> str:
        """Short stable hash of the key (canonical JSON), used in the file name."""
        canonical = json.dumps(self.fields(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def file_name(self) -> str:
        return f"{self.precision}-b{self.profile.max[0]}-{self.digest()}.plan"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def mismatch_reasons(entry: dict[str, Any], key: EngineKey) -> list[str]:
    """Human-readable differences between a cached entry's key and the wanted key (empty when equal)."""
    wanted = key.fields()
    cached = entry.get("key") or {}
    labels = {
        "tensorrt": "TensorRT",
        "gpu": "GPU",
        "compute_capability": "compute capability",
        "l4t": "L4T",
        "precision": "precision",
        "input": "input name",
        "profile": "profile shapes",
        "onnx_sha256": "ONNX graph",
    }
    out = []
    for name in KEY_FIELDS:
        old, new = cached.get(name), wanted[name]
        if old == new:
            continue
        if name == "onnx_sha256":
            out.append("the ONNX graph changed since it was built")
        elif name == "profile":
            out.append(f"profile shapes {_profile_text(old)} != {_profile_text(new)}")
        else:
            out.append(f"{labels[name]} {old} != {new}")
    return out


def _profile_text(spec: Any) -> str:
    if not isinstance(spec, dict):
        return str(spec)
    return "/".join("x".join(map(str, spec.get(k, []))) for k in ("min", "opt", "max"))


class EngineCache:
    """Engines of one bundle, under `<bundle>/engines/`: `<precision>-b<max>-<digest>.plan` + `.json`."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @classmethod
    def for_bundle(cls, bundle_dir: Path) -> EngineCache:
        return cls(Path(bundle_dir) / ENGINE_DIR)

    # --- reading ---------------------------------------------------------------------------------------
    def entries(self) -> list[dict[str, Any]]:
        """Every readable sidecar, newest first; unreadable sidecars are skipped (they never match)."""
        out = []
        for sidecar in self.root.glob("*.json") if self.root.is_dir() else []:
            try:
                entry = json.loads(sidecar.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            if isinstance(entry, dict) and isinstance(entry.get("key"), dict) and entry.get("file"):
                out.append(entry)
        return sorted(out, key=lambda e: str(e.get("created", "")), reverse=True)

    def lookup(self, key: EngineKey, any_profile: bool = False) -> Optional[Path]:
        """Path of an intact engine built for exactly this key, or None.

        With `any_profile`, any engine for this device, precision and graph whose batch range covers the key's
        max batch will do; the closest fit (smallest max batch) wins, as TensorRT tuned it nearest that size.
        """
        if not any_profile:
            matches = [e for e in self.entries() if e["key"] == key.fields()]
        else:
            need = key.profile.max[0]
            wanted = _without_profile(key.fields())
            matches = [
                e
                for e in self.entries()
                if _without_profile(e["key"]) == wanted
                and _batch_range(e["key"])[0] <= 1 <= need <= _batch_range(e["key"])[1]
            ]
            matches.sort(key=lambda e: _batch_range(e["key"])[1])
        for entry in matches:
            if self._plan_intact(entry):
                return self.root / entry["file"]
        return None

    def closest(self, key: EngineKey) -> Optional[dict[str, Any]]:
        """The cached entry a user would expect to be used (same precision first), for the rebuild message."""
        entries = self.entries()
        same_precision = [e for e in entries if e["key"].get("precision") == key.precision]
        candidates = same_precision or entries
        return candidates[0] if candidates else None

    def explain_miss(self, key: EngineKey) -> Optional[str]:
        """One line saying why no cached engine fits (None when the cache holds no engine at all)."""
        entry = self.closest(key)
        if entry is None:
            return None
        if entry["key"] == key.fields():
            return f"cached engine {self.root / entry['file']} is damaged (size or sha256 differs from its sidecar)"
        reasons = "; ".join(mismatch_reasons(entry, key))
        return f"cached engine {self.root / entry['file']} does not fit this machine or model ({reasons})"

    def _plan_intact(self, entry: dict[str, Any]) -> bool:
        plan = self.root / entry["file"]
        try:
            if plan.stat().st_size != int(entry.get("plan_bytes", -1)):
                return False
        except OSError:
            return False
        return sha256_file(plan) == entry.get("plan_sha256")

    # --- writing ---------------------------------------------------------------------------------------
    def store(self, key: EngineKey, plan: bytes, extra: Optional[dict[str, Any]] = None) -> Path:
        """Write the raw plan and its sidecar atomically, then drop the engines it supersedes."""
        if not plan:
            raise EdgeanomError("TensorRT returned an empty engine; nothing was cached")
        self.root.mkdir(parents=True, exist_ok=True)
        name = key.file_name()
        entry = {
            "format": SIDECAR_FORMAT,
            "file": name,
            "key": key.fields(),
            "device": asdict(key.device),
            "plan_bytes": len(plan),
            "plan_sha256": hashlib.sha256(plan).hexdigest(),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "edgeanom_version": __version__,
            **(extra or {}),
        }
        atomic_write_bytes(self.root / name, plan)
        atomic_write_bytes(self.root / _sidecar_name(name), (json.dumps(entry, indent=2) + "\n").encode())
        self._drop_stale(key, keep=name)
        return self.root / name

    def remove(self, plan_name: str) -> None:
        """Delete one engine and its sidecar (e.g. one TensorRT refused to deserialize)."""
        for path in (self.root / plan_name, self.root / _sidecar_name(plan_name)):
            path.unlink(missing_ok=True)

    def _drop_stale(self, key: EngineKey, keep: str) -> None:
        """Remove engines this one supersedes: same GPU and precision, but another graph or another TensorRT /
        L4T release (an upgrade). Engines for other GPUs, and for other profiles of this graph, are kept."""
        wanted = key.fields()
        for entry in self.entries():
            cached = entry["key"]
            if entry["file"] == keep or any(
                cached.get(f) != wanted[f] for f in ("gpu", "compute_capability", "precision")
            ):
                continue
            if any(cached.get(f) != wanted[f] for f in ("onnx_sha256", "tensorrt", "l4t")):
                self.remove(entry["file"])

    def get_or_build(
        self, key: EngineKey, build: Callable[[], tuple[bytes, dict[str, Any]]]
    ) -> tuple[Path, bool]:
        """The cached engine for `key`, or a fresh one from `build()` (plan bytes, sidecar extras).

        Returns (path, built). A miss with an existing but mismatched engine logs exactly one line saying why.
        """
        hit = self.lookup(key)
        if hit is not None:
            return hit, False
        reason = self.explain_miss(key)
        if reason:
            log.warning("%s: rebuilding for %s (%s)", reason, key.device.describe(), key.precision)
        else:
            log.info("no cached engine for %s (%s): building one", key.device.describe(), key.precision)
        plan, extra = build()
        return self.store(key, plan, extra), True

    def bundle_records(self) -> list[dict[str, Any]]:
        """What `bundle.json` lists under `engines`: file, key and size of every cached engine."""
        return [
            {
                "file": f"{ENGINE_DIR}/{e['file']}",
                **{k: e[k] for k in ("key", "plan_bytes", "created") if k in e},
            }
            for e in self.entries()
        ]


def _without_profile(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if k != "profile"}


def _batch_range(fields: dict[str, Any]) -> tuple[int, int]:
    """(min, max) batch of a cached entry's profile; (0, 0) when unreadable (never matches)."""
    try:
        return int(fields["profile"]["min"][0]), int(fields["profile"]["max"][0])
    except (KeyError, IndexError, TypeError, ValueError):
        return 0, 0


def _sidecar_name(plan_name: str) -> str:
    return plan_name[: -len(".plan")] + ".json" if plan_name.endswith(".plan") else plan_name + ".json"


def timing_cache_path(root: Path, device: DeviceInfo) -> Path:
    """Timing caches are per TensorRT version and GPU; keep one file per device next to the engines."""
    tag = hashlib.sha256(f"{device.tensorrt}|{device.gpu}|{device.compute_capability}|{device.l4t}".encode())
    return Path(root) / f"timing-{tag.hexdigest()[:12]}.cache"
