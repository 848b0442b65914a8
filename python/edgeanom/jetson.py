"""Parsers for the text NVIDIA Jetson tools print: /etc/nv_tegra_release, `nvpmodel -q`, `jetson_clocks --show`.

Pure functions on strings (tested on real output lines), so `environment` can probe a device cheaply and
everything here also runs on a desktop.
"""

from __future__ import annotations

import re
from typing import Any, Optional

# L4T (Jetson Linux) release -> JetPack release, from NVIDIA's JetPack archive. Unknown releases map to None.
L4T_TO_JETPACK = {
    "32.1": "4.2",
    "32.2": "4.2.1",
    "32.2.1": "4.2.2",
    "32.3.1": "4.3",
    "32.4.3": "4.4",
    "32.4.4": "4.4.1",
    "32.5": "4.5",
    "32.5.0": "4.5",
    "32.5.1": "4.5.1",
    "32.5.2": "4.5.1",
    "32.6.1": "4.6",
    "32.7.1": "4.6.1",
    "32.7.2": "4.6.2",
    "32.7.3": "4.6.3",
    "32.7.4": "4.6.4",
    "32.7.5": "4.6.5",
    "32.7.6": "4.6.6",
    "34.1": "5.0 DP",
    "34.1.1": "5.0.1 DP",
    "35.1": "5.0.2",
    "35.1.0": "5.0.2",
    "35.2.1": "5.1",
    "35.3.1": "5.1.1",
    "35.4.1": "5.1.2",
    "35.5.0": "5.1.3",
    "35.6.0": "5.1.4",
    "36.2": "6.0 DP",
    "36.2.0": "6.0 DP",
    "36.3": "6.0",
    "36.3.0": "6.0",
    "36.4": "6.1",
    "36.4.0": "6.1",
    "36.4.3": "6.2",
    "36.4.4": "6.2.1",
}

_RELEASE = re.compile(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*([0-9.]+)", re.IGNORECASE)
_FIELD = re.compile(r"(GCID|BOARD|EABI|DATE):\s*([^,]+?)\s*(?:,|$)")


def parse_nv_tegra_release(text: str) -> Optional[dict[str, Any]]:
    """'# R32 (release), REVISION: 6.1, GCID: ..., BOARD: t186ref, ...' -> {l4t: '32.6.1', jetpack, board, ...}."""
    first = next((line for line in text.splitlines() if line.strip()), "")
    m = _RELEASE.search(first)
    if not m:
        return None
    l4t = f"{m.group(1)}.{m.group(2)}"
    out: dict[str, Any] = {"l4t": l4t, "jetpack": jetpack_for_l4t(l4t), "raw": first.strip()}
    for key, value in _FIELD.findall(first):
        out[key.lower()] = value.strip()
    return out


def jetpack_for_l4t(l4t: str) -> Optional[str]:
    """JetPack release for an L4T version ('36.4.3' -> '6.2'); tries 'major.minor' when the patch is unknown."""
    if l4t in L4T_TO_JETPACK:
        return L4T_TO_JETPACK[l4t]
    parts = l4t.split(".")
    if len(parts) == 3 and parts[2] == "0":
        return L4T_TO_JETPACK.get(".".join(parts[:2]))
    return None


def parse_l4t_core_version(text: str) -> Optional[str]:
    """`dpkg-query -W -f='${Version}' nvidia-l4t-core` ('36.4.3-20250107174145') -> '36.4.3'."""
    m = re.match(r"\s*(\d+\.\d+(?:\.\d+)?)", text)
    return m.group(1) if m else None


def parse_nvpmodel_query(text: str) -> Optional[dict[str, Any]]:
    """`nvpmodel -q` -> {name: 'MAXN', id: 0}. Ignores NVPM WARN/ERROR lines; id may be missing."""
    name: Optional[str] = None
    mode_id: Optional[int] = None
    for line in text.splitlines():
        line = line.strip()
        m = re.match(r"NV\s*Power\s*Mode\s*:\s*(.+)$", line, re.IGNORECASE) or re.match(
            r"NVPOWERMODE\s*:\s*(.+)$", line, re.IGNORECASE
        )
        if m:
            name = m.group(1).strip()
            inline = re.search(r"\(ID:\s*(\d+)\)", name)
            if inline:
                mode_id = int(inline.group(1))
                name = name[: inline.start()].strip()
            continue
        if name is not None and mode_id is None and re.fullmatch(r"\d+", line):
            mode_id = int(line)
    if name is None:
        return None
    return {"name": name, "id": mode_id}


_CPU_LINE = re.compile(r"^cpu(\d+):\s*(.*)$")
_KV = re.compile(r"(\w+)=(\S+)")


def parse_jetson_clocks_show(text: str) -> Optional[dict[str, Any]]:
    """`jetson_clocks --show` -> whether clocks are locked at their maximum, with the evidence.

    `on` is True when every online CPU core and the GPU have MinFreq == MaxFreq (what jetson_clocks sets)
    and, where reported, EMC FreqOverride=1. None when the text has no CPU or GPU lines.
    """
    cpus: list[dict[str, str]] = []
    gpu: Optional[dict[str, str]] = None
    emc: Optional[dict[str, str]] = None
    out: dict[str, Any] = {}
    for raw in text.splitlines():
        line = raw.strip()
        m = _CPU_LINE.match(line)
        if m:
            kv = dict(_KV.findall(m.group(2)))
            kv["cpu"] = m.group(1)
            cpus.append(kv)
        elif line.startswith("GPU ") or line.startswith("GPU MinFreq"):
            gpu = dict(_KV.findall(line))
        elif line.startswith("EMC "):
            emc = dict(_KV.findall(line))
        elif line.startswith("SOC family:"):
            fam = re.search(r"SOC family:\s*(\S+)", line)
            machine = re.search(r"Machine:\s*(.+)$", line)
            out["soc_family"] = fam.group(1) if fam else None
            out["machine"] = machine.group(1).strip() if machine else None
        elif line.startswith("NV Power Mode:"):
            out["power_mode"] = line.split(":", 1)[1].strip()
    if not cpus and gpu is None:
        return None
    online = [c for c in cpus if c.get("Online", "1") == "1"]
    cpu_locked = bool(online) and all("MinFreq" in c and c.get("MinFreq") == c.get("MaxFreq") for c in online)
    gpu_locked = gpu is None or ("MinFreq" in gpu and gpu.get("MinFreq") == gpu.get("MaxFreq"))
    emc_override = None if emc is None or "FreqOverride" not in emc else emc["FreqOverride"] == "1"
    out.update(
        {
            "on": bool(cpu_locked and gpu_locked and emc_override is not False),
            "cpu_locked": cpu_locked,
            "gpu_locked": gpu_locked if gpu is not None else None,
            "emc_freq_override": emc_override,
            "online_cpus": len(online),
        }
    )
    return out
