"""Jetson parsers on real output: tegrastats lines, /etc/nv_tegra_release, nvpmodel -q, jetson_clocks --show.

Sources of the sample text:
- the per-field examples of NVIDIA's "tegrastats Utility" appendix (L4T 32.5 Development Guide), e.g.
  ``RAM 220/38955MB (lfb 847x4MB)``, ``SWAP 0/1978MB (cached 0MB)``, ``CPU [1%@102,5%@102,0%@102,0%@102]``;
- complete lines captured on devices and published in public repositories: a Jetson Nano on JetPack 4.6.1
  (old ``POM_5V_IN 1750/1628`` rail format), a Jetson Orin Nano on JetPack 6 (``VDD_IN 5263mW/5263mW``)
  and an AGX Orin (no VDD_IN: partial rails only);
- nv_tegra_release first lines and nvpmodel / jetson_clocks output as printed on Jetson Nano, TX2, AGX
  Xavier/Orin boards.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from edgeanom import environment, jetson
from edgeanom.benchmarking.tegrastats import TegrastatsSampler, parse_tegrastats_line, summarize_power

NANO_JP461 = (
    "RAM 1923/3964MB (lfb 2x2MB) SWAP 191/1982MB (cached 6MB) IRAM 0/252kB(lfb 252kB) "
    "CPU [5%@1224,4%@1224,3%@1224,6%@1224] EMC_FREQ 0%@1600 GR3D_FREQ 0%@76 APE 25 PLL@37C CPU@40C "
    "PMIC@50C GPU@40C AO@45C thermal@40C POM_5V_IN 1750/1628 POM_5V_GPU 0/0 POM_5V_CPU 366/406"
)
ORIN_NANO_JP6 = (
    "05-05-2025 06:05:39 RAM 2639/7620MB (lfb 9x4MB) SWAP 0/3810MB (cached 0MB) "
    "CPU [1%@729,4%@729,8%@729,4%@729,5%@729,4%@729] GR3D_FREQ 0% cpu@44.156C soc2@43.781C "
    "soc0@44.687C gpu@45.968C tj@45.968C soc1@45.312C VDD_IN 5263mW/5263mW VDD_CPU_GPU_CV 717mW/717mW "
    "VDD_SOC 1794mW/1794mW"
)
AGX_ORIN = (
    "04-11-2025 10:36:27 RAM 4321/62801MB (lfb 1759x4MB) SWAP 19/31400MB (cached 0MB) "
    "CPU [0%@729,0%@729,0%@729,0%@729,0%@729,0%@729,0%@729,0%@729,0%@729,0%@729,0%@729,0%@729] "
    "EMC_FREQ 0%@2133 GR3D_FREQ 0%@[0,0] VIC_FREQ 729 APE 174 CV0@-256C CPU@44.562C Tboard@32C "
    "SOC2@40.093C Tdiode@33C SOC0@41.093C CV1@-256C GPU@-256C tj@44.343C SOC1@41.25C CV2@-256C "
    "VDD_GPU_SOC 2340mW/2340mW VDD_CPU_CV 390mW/390mW VIN_SYS_5V0 4025mW/4025mW NC 0mW/0mW "
    "VDDQ_VDD2_1V8AO 301mW/301mW NC 0mW/0mW"
)


# --- tegrastats ---------------------------------------------------------------------------------------
def test_old_format_rails_without_units() -> None:
    s = parse_tegrastats_line(NANO_JP461)
    assert s.rails_mw == {"POM_5V_IN": (1750, 1628), "POM_5V_GPU": (0, 0), "POM_5V_CPU": (366, 406)}
    assert s.total_rail == "POM_5V_IN" and s.total_mw == 1750
    assert (s.ram_used_mb, s.ram_total_mb) == (1923, 3964)
    assert s.gpu_load_pct == 0
    assert s.temperatures_c == {
        "PLL": 37.0,
        "CPU": 40.0,
        "PMIC": 50.0,
        "GPU": 40.0,
        "AO": 45.0,
        "thermal": 40.0,
    }
    assert s.timestamp is None


def test_new_format_rails_with_mw_and_timestamp() -> None:
    s = parse_tegrastats_line(ORIN_NANO_JP6)
    assert s.rails_mw == {"VDD_IN": (5263, 5263), "VDD_CPU_GPU_CV": (717, 717), "VDD_SOC": (1794, 1794)}
    assert s.total_rail == "VDD_IN" and s.total_mw == 5263
    assert s.timestamp == "05-05-2025 06:05:39"
    assert s.temperatures_c["tj"] == pytest.approx(45.968)
    assert s.temperatures_c["soc1"] == pytest.approx(45.312)
    assert (s.ram_used_mb, s.ram_total_mb) == (2639, 7620)


def test_boards_without_an_input_rail_sum_their_rails() -> None:
    s = parse_tegrastats_line(AGX_ORIN)
    assert set(s.rails_mw) == {"VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0", "NC", "VDDQ_VDD2_1V8AO"}
    assert s.total_rail == "sum"
    assert s.total_mw == 2340 + 390 + 4025 + 0 + 301
    assert "CV0" not in s.temperatures_c and "GPU" not in s.temperatures_c  # -256 C: sensor off
    assert s.temperatures_c["CPU"] == pytest.approx(44.562)


def test_doc_field_examples_are_not_mistaken_for_rails() -> None:
    s = parse_tegrastats_line(
        "RAM 220/38955MB (lfb 847x4MB) SWAP 0/1978MB (cached 0MB) IRAM 0/252kB(lfb 252kB) "
        "CPU [1%@102,5%@102,0%@102,0%@102] EMC_FREQ 1%@1600"
    )
    assert s.rails_mw == {} and s.total_mw is None and s.total_rail is None
    assert (s.ram_used_mb, s.ram_total_mb) == (220, 38955)
    assert s.temperatures_c == {}


def test_power_summary_average_watts_and_energy_per_frame() -> None:
    a = parse_tegrastats_line(ORIN_NANO_JP6)
    b = parse_tegrastats_line(ORIN_NANO_JP6.replace("VDD_IN 5263mW/5263mW", "VDD_IN 6263mW/5763mW"))
    p = summarize_power([a, b], frames=500, wall_s=2.0)
    assert p is not None
    assert p["samples"] == 2 and p["input_rail"] == "VDD_IN"
    assert p["input_w"] == pytest.approx(5.763)
    assert p["rails_w"]["VDD_SOC"] == pytest.approx(1.794)
    assert p["cpu_gpu_rails"] == ["VDD_CPU_GPU_CV"] and p["cpu_gpu_w"] == pytest.approx(0.717)
    # 5.763 W for 2 s over 500 frames = 23.052 mJ per frame
    assert p["energy_mj_per_frame"] == pytest.approx(5.763 * 2.0 / 500 * 1000)
    old = summarize_power([parse_tegrastats_line(NANO_JP461)], frames=10, wall_s=1.0)
    assert old is not None and old["input_w"] == pytest.approx(1.75)
    assert sorted(old["cpu_gpu_rails"]) == ["POM_5V_CPU", "POM_5V_GPU"]
    assert summarize_power([parse_tegrastats_line("RAM 1/2MB")], 1, 1.0) is None


def test_sampler_reads_a_live_process_and_stops_it() -> None:
    script = (
        "import sys, time\n"
        f"lines = {[NANO_JP461, ORIN_NANO_JP6]!r}\n"
        "for i in range(400):\n"
        "    print(lines[i % 2], flush=True)\n"
        "    time.sleep(0.01)\n"
    )
    sampler = TegrastatsSampler(command=[sys.executable, "-c", script])
    with sampler:
        t0 = time.monotonic()
        deadline = t0 + 10
        while len(sampler.samples) < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        t1 = time.monotonic()
        proc = sampler._proc
    assert proc is not None and proc.poll() is not None  # the child was stopped on exit
    got = sampler.samples
    assert len(got) >= 4
    assert {s.total_rail for s in got} == {"POM_5V_IN", "VDD_IN"}
    assert sampler.samples_between(t0 - 60, t1 + 60) == got
    assert sampler.samples_between(t1 + 3600, t1 + 7200) == []


# --- nv_tegra_release / L4T core ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("line", "l4t", "jetpack", "board"),
    [
        (
            "# R32 (release), REVISION: 6.1, GCID: 27863751, BOARD: t186ref, EABI: aarch64, "
            "DATE: Mon Jul 26 19:36:31 UTC 2021",
            "32.6.1",
            "4.6",
            "t186ref",
        ),
        (
            "# R32 (release), REVISION: 7.4, GCID: 33514132, BOARD: t210ref, EABI: aarch64, "
            "DATE: Fri Jun  9 04:25:08 UTC 2023",
            "32.7.4",
            "4.6.4",
            "t210ref",
        ),
        (
            "# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64, "
            "DATE: Tue Aug  1 19:57:35 UTC 2023",
            "35.4.1",
            "5.1.2",
            "t186ref",
        ),
        (
            "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, "
            "DATE: Wed Jan  8 01:49:37 UTC 2025",
            "36.4.3",
            "6.2",
            "generic",
        ),
        (
            "# R32 (release), REVISION: 5, GCID: 25531747, BOARD: t186ref, EABI: aarch64, "
            "DATE: Sat Nov 07 23:21:05 UTC 2020",
            "32.5",
            "4.5",
            "t186ref",
        ),
    ],
)
def test_nv_tegra_release(line: str, l4t: str, jetpack: str, board: str) -> None:
    text = line + "\n# KERNEL_VARIANT: oot\nTARGET_USERSPACE_LIB_DIR=nvidia\n"
    r = jetson.parse_nv_tegra_release(text)
    assert r is not None
    assert (r["l4t"], r["jetpack"], r["board"], r["eabi"]) == (l4t, jetpack, board, "aarch64")


def test_nv_tegra_release_rejects_other_text() -> None:
    assert jetson.parse_nv_tegra_release("") is None
    assert jetson.parse_nv_tegra_release("not a release line") is None
    assert jetson.jetpack_for_l4t("99.1.0") is None
    assert jetson.jetpack_for_l4t("36.3.0") == "6.0"


def test_l4t_core_package_version() -> None:
    assert jetson.parse_l4t_core_version("36.4.3-20250107174145") == "36.4.3"
    assert jetson.parse_l4t_core_version("32.7.1-20220219090432") == "32.7.1"
    assert jetson.parse_l4t_core_version("") is None


# --- nvpmodel -----------------------------------------------------------------------------------------
def test_nvpmodel_query() -> None:
    assert jetson.parse_nvpmodel_query("NV Power Mode: MAXN\n0\n") == {"name": "MAXN", "id": 0}
    assert jetson.parse_nvpmodel_query("NV Power Mode: 5W\n1\n") == {"name": "5W", "id": 1}
    with_warning = "NVPM WARN: Golden image context is already created\nNV Power Mode: MAXN_SUPER\n2\n"
    assert jetson.parse_nvpmodel_query(with_warning) == {"name": "MAXN_SUPER", "id": 2}
    assert jetson.parse_nvpmodel_query("NV Power Mode: 15W") == {"name": "15W", "id": None}
    assert jetson.parse_nvpmodel_query("nvpmodel: command not found") is None


# --- jetson_clocks --show -----------------------------------------------------------------------------
NANO_CLOCKS_DYNAMIC = """SOC family:tegra210  Machine:NVIDIA Jetson Nano Developer Kit
Online CPUs: 0-3
CPU Cluster Switching: Disabled
cpu0: Online=1 Governor=schedutil MinFreq=102000 MaxFreq=1428000 CurrentFreq=1428000 IdleStates: WFI=1 c7=1
cpu1: Online=1 Governor=schedutil MinFreq=102000 MaxFreq=1428000 CurrentFreq=921600 IdleStates: WFI=1 c7=1
cpu2: Online=1 Governor=schedutil MinFreq=102000 MaxFreq=1428000 CurrentFreq=1132800 IdleStates: WFI=1 c7=1
cpu3: Online=1 Governor=schedutil MinFreq=102000 MaxFreq=1428000 CurrentFreq=1326000 IdleStates: WFI=1 c7=1
GPU MinFreq=76800000 MaxFreq=921600000 CurrentFreq=230400000
EMC MinFreq=204000000 MaxFreq=1600000000 CurrentFreq=1600000000 FreqOverride=0
Fan: speed=0
NV Power Mode: MAXN
"""
NANO_CLOCKS_LOCKED = """SOC family:tegra210  Machine:NVIDIA Jetson Nano Developer Kit
Online CPUs: 0-3
CPU Cluster Switching: Disabled
cpu0: Online=1 Governor=schedutil MinFreq=1428000 MaxFreq=1428000 CurrentFreq=1428000 IdleStates: WFI=0 c7=0
cpu1: Online=1 Governor=schedutil MinFreq=1428000 MaxFreq=1428000 CurrentFreq=1428000 IdleStates: WFI=0 c7=0
cpu2: Online=1 Governor=schedutil MinFreq=1428000 MaxFreq=1428000 CurrentFreq=1428000 IdleStates: WFI=0 c7=0
cpu3: Online=1 Governor=schedutil MinFreq=1428000 MaxFreq=1428000 CurrentFreq=1428000 IdleStates: WFI=0 c7=0
GPU MinFreq=921600000 MaxFreq=921600000 CurrentFreq=921600000
EMC MinFreq=204000000 MaxFreq=1600000000 CurrentFreq=1600000000 FreqOverride=1
Fan: speed=255
NV Power Mode: MAXN
"""
NANO_5W_LOCKED_TWO_CORES = """SOC family:tegra210  Machine:NVIDIA Jetson Nano Developer Kit
Online CPUs: 0-1
CPU Cluster Switching: Disabled
cpu0: Online=1 Governor=schedutil MinFreq=921600 MaxFreq=921600 CurrentFreq=921600 IdleStates: WFI=0 c7=0
cpu1: Online=1 Governor=schedutil MinFreq=921600 MaxFreq=921600 CurrentFreq=921600 IdleStates: WFI=0 c7=0
cpu2: Online=0 Governor=schedutil MinFreq=921600 MaxFreq=921600 CurrentFreq=921600 IdleStates: WFI=0 c7=0
cpu3: Online=0 Governor=schedutil MinFreq=921600 MaxFreq=921600 CurrentFreq=921600 IdleStates: WFI=0 c7=0
GPU MinFreq=614400000 MaxFreq=614400000 CurrentFreq=614400000
EMC MinFreq=204000000 MaxFreq=1600000000 CurrentFreq=1600000000 FreqOverride=1
Fan: speed=255
NV Power Mode: 5W
"""


def test_jetson_clocks_show() -> None:
    dynamic = jetson.parse_jetson_clocks_show(NANO_CLOCKS_DYNAMIC)
    assert dynamic is not None
    assert dynamic["on"] is False and dynamic["cpu_locked"] is False and dynamic["gpu_locked"] is False
    assert dynamic["emc_freq_override"] is False
    assert dynamic["soc_family"] == "tegra210" and dynamic["machine"] == "NVIDIA Jetson Nano Developer Kit"
    assert dynamic["power_mode"] == "MAXN"
    locked = jetson.parse_jetson_clocks_show(NANO_CLOCKS_LOCKED)
    assert locked is not None and locked["on"] is True and locked["online_cpus"] == 4
    five_watt = jetson.parse_jetson_clocks_show(NANO_5W_LOCKED_TWO_CORES)
    assert five_watt is not None and five_watt["on"] is True and five_watt["online_cpus"] == 2
    assert five_watt["power_mode"] == "5W"
    assert jetson.parse_jetson_clocks_show("Error: permission denied") is None


# --- environment.jetson_info on a simulated Jetson ------------------------------------------------------
def test_jetson_info_assembles_the_probes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    release = tmp_path / "nv_tegra_release"
    release.write_text(
        "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, "
        "DATE: Wed Jan  8 01:49:37 UTC 2025\n"
    )
    model = tmp_path / "model"
    model.write_bytes(b"NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super\x00")
    outputs = {
        "dpkg-query": "36.4.3-20250107174145",
        "nvpmodel": "NV Power Mode: MAXN_SUPER\n2\n",
        "jetson_clocks": NANO_CLOCKS_DYNAMIC,
    }
    monkeypatch.setattr(environment, "NV_TEGRA_RELEASE", release)
    monkeypatch.setattr(environment, "DEVICE_TREE_MODEL", model)
    monkeypatch.setattr(environment, "run_command", lambda cmd, timeout=3.0: outputs.get(cmd[0]))
    info = environment.jetson_info()
    assert info is not None
    assert info["module"] == "NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super"
    assert (info["l4t"], info["jetpack"]) == ("36.4.3", "6.2")
    assert info["nvpmodel"] == {"name": "MAXN_SUPER", "id": 2}
    assert info["jetson_clocks"]["on"] is False


def test_not_a_jetson(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(environment, "NV_TEGRA_RELEASE", tmp_path / "absent")
    monkeypatch.setattr(environment, "DEVICE_TREE_MODEL", tmp_path / "absent-model")
    assert environment.jetson_info() is None
