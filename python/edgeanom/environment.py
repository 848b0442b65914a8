"""Facts about this machine that decide how fast edgeanom runs: CPU, GPU, CUDA, runtimes, Jetson state.

`edgeanom info` prints them and `edgeanom bench` stores them with every result, so two reports can be
told apart. Every probe is optional, fast (subprocesses time out after a few seconds) and never raises:
a fact that cannot be read is None.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar

from edgeanom._version import __version__

T = TypeVar("T")

NV_TEGRA_RELEASE = Path("/etc/nv_tegra_release")
DEVICE_TREE_MODEL = Path("/proc/device-tree/model")
THERMAL_ROOT = Path("/sys/class/thermal")
_TIMEOUT_S = 3.0


def _safe(fn: Callable[[], T]) -> Optional[T]:
    """Run one probe; any failure means 'unknown'."""
    try:
        return fn()
    except Exception:
        return None


def _read(path: Path) -> Optional[str]:
    try:
        return path.read_text(errors="replace").replace("\x00", "").strip()
    except OSError:
        return None


def run_command(cmd: list[str], timeout: float = _TIMEOUT_S) -> Optional[str]:
    """stdout (+stderr) of a command, or None when it is not installed, fails or times out."""
    if shutil.which(cmd[0]) is None:
        return None
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0:
        return None
    return (proc.stdout or "") + (proc.stderr or "")


def _version(dist: str) -> Optional[str]:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


# --- CPU and memory ----------------------------------------------------------------------------------
def cpu_info() -> dict[str, Any]:
    """CPU model, logical cores, cores this process may use, physical cores (psutil) and architecture."""
    model = None
    text = _read(Path("/proc/cpuinfo")) or ""
    for key in ("model name", "Model", "Hardware", "cpu model"):
        m = re.search(rf"^{key}\s*:\s*(.+)$", text, re.MULTILINE)
        if m:
            model = m.group(1).strip()
            break
    if model is None:
        lscpu = run_command(["lscpu"])
        m = re.search(r"^Model name:\s*(.+)$", lscpu or "", re.MULTILINE)
        model = m.group(1).strip() if m else (platform.processor() or None)
    affinity = _safe(lambda: len(os.sched_getaffinity(0)))  # type: ignore[attr-defined]
    physical = None
    if importlib.util.find_spec("psutil") is not None:
        import psutil

        physical = _safe(lambda: psutil.cpu_count(logical=False))
    return {
        "model": model,
        "arch": platform.machine(),
        "cores_logical": os.cpu_count(),
        "cores_usable": affinity,
        "cores_physical": physical,
    }


def memory_info() -> dict[str, Any]:
    text = _read(Path("/proc/meminfo")) or ""
    m = re.search(r"^MemTotal:\s*(\d+)\s*kB", text, re.MULTILINE)
    return {"total_mb": int(m.group(1)) // 1024 if m else None}


# --- Python packages -----------------------------------------------------------------------------------
def opencv_info() -> Optional[dict[str, Any]]:
    """OpenCV version and the video back ends it was built with (GStreamer matters on Jetson)."""
    if importlib.util.find_spec("cv2") is None:
        return None
    import cv2

    build = cv2.getBuildInformation()
    return {
        "version": cv2.__version__,
        "gstreamer": _build_flag(build, "GStreamer"),
        "ffmpeg": _build_flag(build, "FFMPEG"),
        "cuda": _build_flag(build, "NVIDIA CUDA"),
        "path": str(Path(cv2.__file__).parent),
    }


def _build_flag(build_info: str, name: str) -> Optional[bool]:
    """'    GStreamer:                   YES (1.16.3)' -> True; None when the line is absent."""
    m = re.search(rf"^\s*{re.escape(name)}:\s*(\S+)", build_info, re.MULTILINE)
    if not m:
        return None
    return m.group(1).upper().startswith("YES")


def onnxruntime_info() -> Optional[dict[str, Any]]:
    if importlib.util.find_spec("onnxruntime") is None:
        return None
    import onnxruntime as ort

    return {
        "version": ort.__version__,
        "providers": list(ort.get_available_providers()),
        "device": _safe(ort.get_device),
    }


def torch_info(import_torch: bool = True) -> Optional[dict[str, Any]]:
    """torch version and its CUDA build; importing torch takes a second, so callers may skip it."""
    if importlib.util.find_spec("torch") is None:
        return None
    if not import_torch and "torch" not in sys.modules:
        return {"version": _version("torch"), "cuda_build": None, "cuda_available": None}
    import torch

    return {
        "version": torch.__version__,
        "cuda_build": torch.version.cuda,
        "cuda_available": bool(_safe(torch.cuda.is_available)),
        "cudnn": _safe(lambda: torch.backends.cudnn.version()) if torch.version.cuda else None,
    }


def tensorrt_info() -> Optional[dict[str, Any]]:
    if importlib.util.find_spec("tensorrt") is None:
        return None
    version = _version("tensorrt")
    if version is None:
        import tensorrt

        version = getattr(tensorrt, "__version__", None)
    return {"version": version}


def package_versions(import_torch: bool = True) -> dict[str, Any]:
    import numpy

    return {
        "edgeanom": __version__,
        "numpy": numpy.__version__,
        "onnxruntime": _safe(onnxruntime_info),
        "opencv": _safe(opencv_info),
        "torch": _safe(lambda: torch_info(import_torch)),
        "tensorrt": _safe(tensorrt_info),
    }


# --- GPUs ----------------------------------------------------------------------------------------------
def cuda_info(import_torch: bool = True) -> Optional[dict[str, Any]]:
    """CUDA devices (name, memory, compute capability), driver and runtime; None without a CUDA GPU."""
    devices: list[dict[str, Any]] = []
    runtime = None
    if import_torch or "torch" in sys.modules:
        devices, runtime = _safe(_torch_devices) or ([], None)
    smi = _nvidia_smi()
    if not devices and smi:
        devices = smi["devices"]
    if not devices:
        return None
    return {
        "devices": devices,
        "driver": smi["driver"] if smi else None,
        "cuda_runtime": runtime,
        "source": "torch" if runtime else "nvidia-smi",
    }


def _torch_devices() -> tuple[list[dict[str, Any]], Optional[str]]:
    if importlib.util.find_spec("torch") is None:
        return [], None
    import torch

    if not torch.cuda.is_available():
        return [], None
    out = []
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        out.append(
            {
                "index": i,
                "name": p.name,
                "memory_total_mb": int(p.total_memory // (1024 * 1024)),
                "compute_capability": f"{p.major}.{p.minor}",
                "multiprocessors": p.multi_processor_count,
            }
        )
    return out, torch.version.cuda


def _nvidia_smi() -> Optional[dict[str, Any]]:
    text = run_command(
        [
            "nvidia-smi",
            "--query-gpu=index,name,driver_version,memory.total,compute_cap",
            "--format=csv,noheader,nounits",
        ]
    )
    if not text:
        return None
    devices, driver = [], None
    for line in text.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 4 or not parts[0].isdigit():
            continue
        driver = parts[2]
        devices.append(
            {
                "index": int(parts[0]),
                "name": parts[1],
                "memory_total_mb": int(float(parts[3])) if re.fullmatch(r"[\d.]+", parts[3]) else None,
                "compute_capability": parts[4] if len(parts) > 4 else None,
            }
        )
    return {"devices": devices, "driver": driver} if devices else None


# --- Jetson ----------------------------------------------------------------------------------------------
def is_jetson() -> bool:
    model = _read(DEVICE_TREE_MODEL) or ""
    return NV_TEGRA_RELEASE.is_file() or "jetson" in model.lower()


def jetson_info() -> Optional[dict[str, Any]]:
    """Module, L4T/JetPack release, nvpmodel mode and whether clocks are locked; None off a Jetson."""
    if not is_jetson():
        return None
    from edgeanom import jetson

    release = _safe(lambda: jetson.parse_nv_tegra_release(_read(NV_TEGRA_RELEASE) or ""))
    core = run_command(["dpkg-query", "-W", "-f=${Version}", "nvidia-l4t-core"])
    l4t_core = jetson.parse_l4t_core_version(core) if core else None
    l4t = l4t_core or (release or {}).get("l4t")
    nvp = run_command(["nvpmodel", "-q"])
    clocks = run_command(["jetson_clocks", "--show"])
    clock_state = jetson.parse_jetson_clocks_show(clocks) if clocks else None
    if clock_state is None:
        clock_state = _safe(_clocks_from_sysfs)
    return {
        "module": _read(DEVICE_TREE_MODEL),
        "l4t": l4t,
        "jetpack": jetson.jetpack_for_l4t(l4t) if l4t else None,
        "nv_tegra_release": release,
        "l4t_core_package": core.strip() if core else None,
        "nvpmodel": jetson.parse_nvpmodel_query(nvp) if nvp else None,
        "jetson_clocks": clock_state,
    }


def _clocks_from_sysfs() -> Optional[dict[str, Any]]:
    """Without root `jetson_clocks --show` fails; cpufreq/devfreq min == max tells the same story."""
    cpus = sorted(Path("/sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq"))
    if not cpus:
        return None
    cpu_locked = all(_read(c / "scaling_min_freq") == _read(c / "scaling_max_freq") for c in cpus)
    gpus = [d for d in Path("/sys/class/devfreq").glob("*") if "gpu" in d.name.lower()]
    gpu_locked = all(_read(g / "min_freq") == _read(g / "max_freq") for g in gpus) if gpus else None
    return {
        "on": bool(cpu_locked and gpu_locked is not False),
        "cpu_locked": cpu_locked,
        "gpu_locked": gpu_locked,
        "emc_freq_override": None,
        "source": "sysfs",
    }


# --- Temperatures and the scoring core ------------------------------------------------------------------
def temperatures() -> dict[str, float]:
    """Thermal zone readings in degrees C (type -> value); invalid sensors (e.g. -256 C) are dropped."""
    out: dict[str, float] = {}
    for zone in sorted(THERMAL_ROOT.glob("thermal_zone*")):
        name = _read(zone / "type") or zone.name
        raw = _read(zone / "temp")
        if raw and re.fullmatch(r"-?\d+", raw):
            celsius = int(raw) / 1000.0
            if -40.0 < celsius < 150.0:
                out[name] = celsius
    return out


def scoring_info() -> Optional[dict[str, Any]]:
    """`edgeanom.scoring.build_info()` (compiler, flags, threads), or None when the core is not built."""
    from edgeanom import scoring

    info = dict(scoring.build_info())
    if "threads" not in info:
        info["threads"] = _safe(scoring.get_num_threads)
    return info


def collect(import_torch: bool = True) -> dict[str, Any]:
    """Everything above in one JSON-ready dict (the `environment` section of a bench report)."""
    return {
        "edgeanom": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "hostname": platform.node(),
        "cpu": _safe(cpu_info),
        "memory": _safe(memory_info),
        "packages": _safe(lambda: package_versions(import_torch)),
        "cuda": _safe(lambda: cuda_info(import_torch)),
        "jetson": _safe(jetson_info),
        "temperatures_c": _safe(temperatures) or {},
        "scoring": _safe(scoring_info),
    }
