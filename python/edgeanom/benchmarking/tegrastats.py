"""Power, temperature and load from NVIDIA's `tegrastats`, parsed per line and sampled during a run.

Both rail formats are understood: older L4T prints ``POM_5V_IN 1750/1628`` (instant/average mW, no unit),
newer releases ``VDD_IN 5263mW/5263mW``. The board's input power is VDD_IN (Xavier NX, Orin NX/Nano) or
POM_5V_IN (Nano, TX2); where neither exists (AGX Orin, AGX Xavier) the total is the sum of the rails.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

# A rail: a name followed by "instant/average", optionally with mW units, then whitespace or end of line.
# The lookahead rejects "RAM 1923/3964MB", "SWAP 191/1982MB" and "IRAM 0/252kB".
_RAIL = re.compile(r"(?<![\w@])([A-Za-z][A-Za-z0-9_]*)\s+(\d+)(?:mW)?/(\d+)(?:mW)?(?=\s|$)")
_TEMP = re.compile(r"(?<![\w@])([A-Za-z][A-Za-z0-9_]*)@(-?\d+(?:\.\d+)?)C(?=\s|$)")
_RAM = re.compile(r"\bRAM\s+(\d+)/(\d+)MB")
_GR3D = re.compile(r"\bGR3D_FREQ\s+(\d+)%")
_STAMP = re.compile(r"^\s*(\d{2}-\d{2}-\d{4}\s+\d{2}:\d{2}:\d{2})\s")
_NOT_RAILS = {"RAM", "SWAP", "IRAM", "lfb", "cached"}
TOTAL_RAILS = ("VDD_IN", "POM_5V_IN")
# Sensors that read -256 C are switched off (e.g. CV engines when idle).
_MIN_VALID_TEMP_C = -40.0


@dataclass
class TegrastatsSample:
    """One tegrastats line: rails in mW as (instant, average), temperatures in C, RAM in MB, GPU load %."""

    rails_mw: dict[str, tuple[int, int]] = field(default_factory=dict)
    temperatures_c: dict[str, float] = field(default_factory=dict)
    ram_used_mb: Optional[int] = None
    ram_total_mb: Optional[int] = None
    gpu_load_pct: Optional[int] = None
    timestamp: Optional[str] = None

    @property
    def total_rail(self) -> Optional[str]:
        """Name of the board input rail, or 'sum' when the board reports only partial rails."""
        for name in TOTAL_RAILS:
            if name in self.rails_mw:
                return name
        return "sum" if self.rails_mw else None

    @property
    def total_mw(self) -> Optional[int]:
        """Instant input power in mW (VDD_IN / POM_5V_IN, else the sum of all rails)."""
        rail = self.total_rail
        if rail is None:
            return None
        if rail == "sum":
            return sum(v[0] for v in self.rails_mw.values())
        return self.rails_mw[rail][0]


def parse_tegrastats_line(line: str) -> TegrastatsSample:
    """Parse one line of tegrastats output; unknown fields are ignored, never an error."""
    sample = TegrastatsSample()
    stamp = _STAMP.match(line)
    if stamp:
        sample.timestamp = stamp.group(1)
    for name, instant, average in _RAIL.findall(line):
        if name not in _NOT_RAILS:
            sample.rails_mw[name] = (int(instant), int(average))
    for name, value in _TEMP.findall(line):
        celsius = float(value)
        if celsius > _MIN_VALID_TEMP_C:
            sample.temperatures_c[name] = celsius
    ram = _RAM.search(line)
    if ram:
        sample.ram_used_mb, sample.ram_total_mb = int(ram.group(1)), int(ram.group(2))
    gr3d = _GR3D.search(line)
    if gr3d:
        sample.gpu_load_pct = int(gr3d.group(1))
    return sample


def cpu_gpu_rails(names: Sequence[str]) -> list[str]:
    """Rails that feed the CPU and/or GPU (VDD_CPU_GPU_CV, VDD_GPU_SOC, POM_5V_CPU, VDD_SYS_GPU, ...)."""
    return [n for n in names if ("CPU" in n.upper() or "GPU" in n.upper()) and n not in TOTAL_RAILS]


def summarize_power(
    samples: Sequence[TegrastatsSample], frames: int, wall_s: float
) -> Optional[dict[str, Any]]:
    """Average watts (input and per rail) over the samples, and millijoules per frame.

    Energy per frame = mean input power x wall time / frames: everything the board drew while the
    benchmark ran, divided among the frames it processed.
    """
    with_power = [s for s in samples if s.total_mw is not None]
    if not with_power:
        return None
    totals = [s.total_mw for s in with_power]
    mean_w = sum(totals) / len(totals) / 1000.0  # type: ignore[arg-type]
    rails: dict[str, list[int]] = {}
    for s in with_power:
        for name, (instant, _avg) in s.rails_mw.items():
            rails.setdefault(name, []).append(instant)
    rail_w = {name: sum(v) / len(v) / 1000.0 for name, v in rails.items()}
    temps: dict[str, float] = {}
    for s in samples:
        for name, c in s.temperatures_c.items():
            temps[name] = max(temps.get(name, c), c)
    cg = cpu_gpu_rails(list(rail_w))
    return {
        "source": "tegrastats",
        "samples": len(with_power),
        "input_rail": with_power[0].total_rail,
        "input_w": mean_w,
        "rails_w": rail_w,
        "cpu_gpu_w": sum(rail_w[n] for n in cg) if cg else None,
        "cpu_gpu_rails": cg,
        "energy_mj_per_frame": (mean_w * wall_s / frames * 1000.0) if frames > 0 and wall_s > 0 else None,
        "max_temperature_c": temps,
    }


class TegrastatsSampler:
    """Runs `tegrastats --interval N` in the background and keeps the parsed lines with their arrival time.

    Use as a context manager around a run, then `samples_between(t0, t1)` (time.monotonic seconds) picks
    the lines of one configuration. `command` can be replaced (tests feed recorded lines).
    """

    def __init__(self, interval_ms: int = 100, command: Optional[Sequence[str]] = None) -> None:
        self.interval_ms = int(interval_ms)
        self.command = list(command) if command else ["tegrastats", "--interval", str(self.interval_ms)]
        self._proc: Optional[subprocess.Popen[str]] = None
        self._thread: Optional[threading.Thread] = None
        self._lock = threading.Lock()
        self._samples: list[tuple[float, TegrastatsSample]] = []

    @staticmethod
    def available() -> bool:
        return shutil.which("tegrastats") is not None

    def start(self) -> TegrastatsSampler:
        self._proc = subprocess.Popen(
            self.command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1
        )
        self._thread = threading.Thread(target=self._read, name="tegrastats-reader", daemon=True)
        self._thread.start()
        return self

    def _read(self) -> None:
        proc = self._proc
        if proc is None or proc.stdout is None:
            return
        try:
            for line in proc.stdout:
                sample = parse_tegrastats_line(line)
                with self._lock:
                    self._samples.append((time.monotonic(), sample))
        except (OSError, ValueError):  # the pipe was closed under us by stop(): sampling is over
            return

    def samples_between(self, t0: float, t1: float) -> list[TegrastatsSample]:
        with self._lock:
            return [s for t, s in self._samples if t0 <= t <= t1]

    @property
    def samples(self) -> list[TegrastatsSample]:
        with self._lock:
            return [s for _, s in self._samples]

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=2)
        if self._thread is not None:
            self._thread.join(timeout=2)  # the reader sees EOF once the process has exited
            self._thread = None
        if proc is not None and proc.stdout is not None:
            proc.stdout.close()

    def __enter__(self) -> TegrastatsSampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
