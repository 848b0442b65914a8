"""Engine cache keys, sidecars and the lookup / rebuild rules, with made-up device metadata (no TensorRT).

Plans here are opaque bytes: the cache never looks inside an engine, it only checks the sidecar key and the
plan's size and sha256.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import pytest

from edgeanom.engines.build import jetson_release
from edgeanom.engines.cache import (
    DeviceInfo,
    EngineCache,
    EngineKey,
    Profile,
    mismatch_reasons,
    timing_cache_path,
)
from edgeanom.errors import EdgeanomError

ORIN = DeviceInfo("10.3.0", "Orin", "8.7", l4t="36.4.3", jetpack="6.2")
RTX = DeviceInfo("10.7.0", "NVIDIA GeForce RTX 4090", "8.9")
SHA = "ab" * 32


def key(device: DeviceInfo = ORIN, precision: str = "fp16", max_batch: int = 8, sha: str = SHA) -> EngineKey:
    return EngineKey(device, precision, "input", Profile.for_batch((3, 64, 64), max_batch), sha)


def test_profile_min_one_opt_half_max_n() -> None:
    p = Profile.for_batch((1, 32, 32), 8)
    assert (p.min, p.opt, p.max) == ((1, 1, 32, 32), (4, 1, 32, 32), (8, 1, 32, 32))
    assert Profile.for_batch((5,), 1).opt == (1, 5)
    assert Profile.for_batch((5,), 16, opt_batch=32).opt == (16, 5)  # clamped to max
    assert Profile.from_json(p.to_json()) == p
    with pytest.raises(EdgeanomError, match="--max-batch"):
        Profile.for_batch((5,), 0)


def test_key_digest_is_stable_and_covers_every_field() -> None:
    base = key()
    assert base.digest() == key().digest()
    assert len(base.digest()) == 16
    variants = [
        key(device=replace(ORIN, tensorrt="10.3.1")),
        key(device=replace(ORIN, gpu="Xavier")),
        key(device=replace(ORIN, compute_capability="7.2")),
        key(device=replace(ORIN, l4t="36.3.0")),
        key(precision="fp32"),
        key(max_batch=16),
        key(sha="cd" * 32),
        EngineKey(ORIN, "fp16", "images", Profile.for_batch((3, 64, 64), 8), SHA),
    ]
    digests = {v.digest() for v in variants}
    assert len(digests) == len(variants) and base.digest() not in digests
    # JetPack is derived from L4T: informational, not part of the key
    assert key(device=replace(ORIN, jetpack="something else")).digest() == base.digest()
    assert base.file_name() == f"fp16-b8-{base.digest()}.plan"
    with pytest.raises(EdgeanomError, match="precision"):
        key(precision="bf16")


def test_store_writes_raw_plan_and_sidecar(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path / "engines")
    plan = b"\x00raw engine bytes\xff" * 10
    path = cache.store(key(), plan, {"build_seconds": 1.5})
    assert path.read_bytes() == plan  # no header: trtexec / DeepStream / Triton load it as is
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["key"] == key().fields()
    assert sidecar["key"]["onnx_sha256"] == SHA
    assert sidecar["key"]["profile"] == {"min": [1, 3, 64, 64], "opt": [4, 3, 64, 64], "max": [8, 3, 64, 64]}
    assert sidecar["device"]["jetpack"] == "6.2"
    assert sidecar["plan_bytes"] == len(plan) and sidecar["build_seconds"] == 1.5
    assert cache.lookup(key()) == path
    assert cache.bundle_records()[0]["file"] == f"engines/{path.name}"


def test_lookup_misses_on_any_key_difference(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    cache.store(key(), b"plan")
    assert cache.lookup(key(device=RTX)) is None
    assert cache.lookup(key(precision="fp32")) is None
    assert cache.lookup(key(sha="cd" * 32)) is None
    assert cache.lookup(key(max_batch=4)) is None
    assert cache.lookup(key(max_batch=4), any_profile=True) is not None  # `run` without --max-batch


def test_any_profile_picks_the_closest_engine_that_fits(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    old_graph = cache.store(key(max_batch=4, sha="11" * 32), b"old graph")
    # an engine for the same GPU and precision but another graph replaces the stale one...
    small = cache.store(key(max_batch=4), b"small")
    assert not old_graph.exists()
    # ...while one for the same graph and another profile is kept
    big = cache.store(key(max_batch=16), b"big")
    assert len(cache.entries()) == 2
    assert cache.lookup(key(max_batch=1), any_profile=True) == small  # a single stream: the b4 engine
    assert cache.lookup(key(max_batch=8), any_profile=True) == big  # 8 streams need the b16 one
    assert cache.lookup(key(max_batch=32), any_profile=True) is None  # nothing accepts 32: build one


def test_engines_for_other_gpus_and_precisions_are_kept(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    orin = cache.store(key(ORIN), b"orin")
    rtx = cache.store(key(RTX), b"rtx")
    orin32 = cache.store(key(ORIN, precision="fp32"), b"orin fp32")
    assert orin.exists() and rtx.exists() and orin32.exists()
    assert cache.lookup(key(ORIN)) == orin and cache.lookup(key(RTX)) == rtx


def test_damaged_plan_is_not_used(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    path = cache.store(key(), b"0123456789")
    path.write_bytes(b"01234")  # truncated copy
    assert cache.lookup(key()) is None
    assert "damaged" in (cache.explain_miss(key()) or "")
    path.write_bytes(b"0123456780")  # same size, other bytes
    assert cache.lookup(key()) is None
    (tmp_path / "junk.json").write_text("{not json")  # unreadable sidecars are skipped
    assert len(cache.entries()) == 1


def test_mismatch_reasons_name_each_field() -> None:
    entry = {"key": key().fields()}
    wanted = key(device=RTX, precision="fp16", max_batch=16, sha="cd" * 32)
    reasons = mismatch_reasons(entry, wanted)
    text = "; ".join(reasons)
    assert "TensorRT 10.3.0 != 10.7.0" in text
    assert "GPU Orin != NVIDIA GeForce RTX 4090" in text
    assert "compute capability 8.7 != 8.9" in text
    assert "L4T 36.4.3 != None" in text
    assert "profile shapes 1x3x64x64/4x3x64x64/8x3x64x64 != 1x3x64x64/8x3x64x64/16x3x64x64" in text
    assert "ONNX graph changed" in text
    assert mismatch_reasons(entry, key()) == []


def test_get_or_build_reuses_and_rebuilds_with_one_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = EngineCache(tmp_path)
    builds: list[str] = []

    def build(tag: str):  # returns the builder callback the runner passes
        def run() -> tuple[bytes, dict]:
            builds.append(tag)
            return tag.encode(), {"note": tag}

        return run

    path, built = cache.get_or_build(key(), build("first"))
    assert built and path.read_bytes() == b"first"
    path2, built2 = cache.get_or_build(key(), build("unused"))
    assert (path2, built2) == (path, False) and builds == ["first"]

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="edgeanom.engines.cache"):
        upgraded = key(device=replace(ORIN, tensorrt="10.4.0"))
        path3, built3 = cache.get_or_build(upgraded, build("upgraded"))
    assert built3 and path3.read_bytes() == b"upgraded"
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1
    assert "does not fit" in lines[0] and "TensorRT 10.3.0 != 10.4.0" in lines[0] and "rebuilding" in lines[0]
    assert not path.exists()  # the stale engine for this device and precision is gone


def test_empty_plan_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(EdgeanomError, match="empty engine"):
        EngineCache(tmp_path).store(key(), b"")


def test_timing_cache_is_per_device(tmp_path: Path) -> None:
    assert timing_cache_path(tmp_path, ORIN) == timing_cache_path(tmp_path, replace(ORIN, jetpack=None))
    assert timing_cache_path(tmp_path, ORIN) != timing_cache_path(tmp_path, RTX)
    assert timing_cache_path(tmp_path, ORIN).parent == tmp_path


def test_jetson_release_from_nv_tegra_release(tmp_path: Path) -> None:
    release = tmp_path / "nv_tegra_release"
    release.write_text(
        "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, DATE: Wed Jan  8 01:49:37 UTC 2025\n"
    )
    assert jetson_release(release) == ("36.4.3", "6.2")
    assert jetson_release(tmp_path / "missing") == (None, None)
    release.write_text("garbage\n")
    assert jetson_release(release) == (None, None)
