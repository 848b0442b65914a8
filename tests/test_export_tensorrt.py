"""TensorRT engines from exported bundles: build, cache, reuse, rebuild on mismatch, run (needs a GPU).

Skipped with a reason where TensorRT or a CUDA device is missing (CPU machines, CI).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from bundle_factory import train_tiny_conv_ae
from edgeanom.engines.build import tensorrt_status

USABLE, WHY = tensorrt_status()
pytestmark = [pytest.mark.gpu, pytest.mark.tensorrt, pytest.mark.skipif(not USABLE, reason=WHY)]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgeanom.export.pipeline import ExportOptions, export_bundle

    out = train_tiny_conv_ae(tmp_path_factory.mktemp("trt") / "bundle")
    export_bundle(out, ExportOptions(fp16=True))
    return out


@pytest.fixture
def bundle(exported: Path, tmp_path: Path):
    from edgeanom.bundle import load_bundle

    dst = tmp_path / "bundle"
    shutil.copytree(exported, dst)
    return load_bundle(dst)


def ort_outputs(bundle, x: np.ndarray) -> dict[str, np.ndarray]:
    from edgeanom.backends.onnxruntime import OnnxRuntimeRunner

    with OnnxRuntimeRunner(bundle.onnx_path, providers=["CPUExecutionProvider"]) as runner:
        return runner.infer(x)


def test_fp32_engine_matches_onnx_runtime_and_is_cached(bundle) -> None:
    from edgeanom.backends.tensorrt import TensorRTRunner
    from edgeanom.engines.build import ensure_engine

    x = np.random.default_rng(1).random((5, 1, 32, 32), dtype=np.float32)
    with TensorRTRunner.from_bundle(bundle, precision="fp32", max_batch=4) as runner:
        assert runner.input_name == "input" and set(runner.output_names) == {"score", "error_map"}
        assert runner.max_batch == 4
        got = runner.infer(x)  # 5 > max batch: run in two chunks
        again = [runner.infer(x[:2]) for _ in range(3)]  # third call replays a CUDA graph
        timings = runner.last_timings  # CUDA-event times of the graph replay
        assert set(timings) == {"h2d_ms", "compute_ms", "d2h_ms"} and timings["compute_ms"] > 0
        assert all(v >= 0 for v in timings.values())
        assert runner.precision == "fp32" and runner.engine_cache_key == runner.plan_path.stem
    want = ort_outputs(bundle, x)
    for name in ("score", "error_map"):
        rel = np.abs(got[name] - want[name]).max() / np.abs(want[name]).max()
        assert rel < 1e-4, (name, rel)
        for a in again:
            np.testing.assert_allclose(a[name], got[name][:2], rtol=1e-6)
    meta = json.loads((bundle.path / "bundle.json").read_text())
    assert meta["engines"] and meta["engines"][0]["key"]["precision"] == "fp32"
    plan = bundle.path / meta["engines"][0]["file"]
    sidecar = json.loads(plan.with_suffix(".json").read_text())
    assert sidecar["key"]["profile"]["max"][0] == 4 and sidecar["key"]["onnx_sha256"]
    path, built = ensure_engine(bundle, precision="fp32", max_batch=4)
    assert path == plan and not built
    path, built = ensure_engine(bundle, precision="fp32", max_batch=2)  # a smaller batch fits the b4 engine
    assert path == plan and not built
    path, built = ensure_engine(bundle, precision="fp32", max_batch=4, opt_batch=2, exact_profile=True)
    assert path != plan and built  # export asked for another profile: a second engine, the first one kept
    assert plan.is_file()


def test_mismatched_engine_is_rebuilt_with_one_log_line(bundle, caplog: pytest.LogCaptureFixture) -> None:
    from edgeanom.engines.build import ensure_engine

    plan, built = ensure_engine(bundle, precision="fp32", max_batch=2)
    assert built
    sidecar = plan.with_suffix(".json")
    entry = json.loads(sidecar.read_text())
    entry["key"]["tensorrt"] = "9.0.0"  # as if built by an older TensorRT
    sidecar.write_text(json.dumps(entry))
    with caplog.at_level(logging.INFO):
        plan2, built2 = ensure_engine(bundle, precision="fp32", max_batch=2)
    assert built2 and plan2.is_file()
    lines = [r.getMessage() for r in caplog.records if "rebuilding" in r.getMessage()]
    assert len(lines) == 1 and "TensorRT 9.0.0 !=" in lines[0]


def test_damaged_plan_is_rebuilt_not_crashed(bundle) -> None:
    from edgeanom.backends.tensorrt import TensorRTRunner
    from edgeanom.engines.build import ensure_engine

    plan, _ = ensure_engine(bundle, precision="fp32", max_batch=2)
    plan.write_bytes(plan.read_bytes()[:100])  # truncated: size/sha256 no longer match the sidecar
    x = np.random.default_rng(2).random((2, 1, 32, 32), dtype=np.float32)
    with TensorRTRunner.from_bundle(bundle, precision="fp32", max_batch=2) as runner:
        got = runner.infer(x)
    assert np.isfinite(got["score"]).all()


def test_fp16_engine_keeps_the_ranking(bundle) -> None:
    from scipy.stats import spearmanr

    from edgeanom.backends.tensorrt import TensorRTRunner

    rng = np.random.default_rng(3)
    x = rng.random((32, 1, 32, 32), dtype=np.float32)
    x[16:, :, 8:16, 8:16] = 1.0
    with TensorRTRunner.from_bundle(bundle, precision="fp16", max_batch=8) as runner:
        got = runner.infer(x)["score"]
    want = ort_outputs(bundle, x)["score"]
    assert np.median(np.abs(got - want) / want) < 1e-2
    assert spearmanr(got, want).statistic > 0.99


def test_parser_errors_name_the_rejected_node(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    from edgeanom.engines.build import BuildRequest, build_engine
    from edgeanom.engines.cache import Profile
    from edgeanom.errors import EdgeanomError

    node = helper.make_node("NotARealOp", ["input"], ["output"], name="mystery", domain="edgeanom.test")
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 4])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("edgeanom.test", 1)]
    )
    path = tmp_path / "bad.onnx"
    onnx.save(model, str(path))
    with pytest.raises(EdgeanomError, match="cannot parse") as err:
        build_engine(BuildRequest(path, "fp32", "input", Profile.for_batch((4,), 2)))
    assert "NotARealOp" in str(err.value) or "mystery" in str(err.value)
