"""The OpenVINO backend (a real OpenVINO runtime on this CPU): parity with ONNX Runtime on fused image graphs
(blur, normalisation and top-k in the graph), sensor graphs and FP16; `run --backend openvino` end to end; and
`--backend auto`, which takes the CPU runtime `edgeanom bench` measured faster on this machine."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edgeanom.backends import open_runner
from edgeanom.backends.cpu_choice import RECORD, faster_cpu_backend, machine_id, measured_choice
from edgeanom.bundle import load_bundle
from edgeanom.errors import EdgeanomError

pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install 'edgeanom[openvino]')")


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from bundle_factory import grating_images, train_tiny_conv_ae
    from edgeanom.export.pipeline import ExportOptions, export_bundle

    root = tmp_path_factory.mktemp("ov")
    train_tiny_conv_ae(root / "m", grating_images(root / "good", 24, color=True))
    export_bundle(root / "m", ExportOptions(fp16=True))
    return root


def _scores(bundle_dir: Path, backend: str, x: np.ndarray, precision: str = "fp32") -> np.ndarray:
    from edgeanom.inference import score_arrays

    bundle = load_bundle(bundle_dir)
    with open_runner(bundle, backend, precision=precision, threads=1) as runner:
        return score_arrays(bundle, runner, x, 4, preprocessed=True).scores


def test_openvino_scores_equal_onnx_runtime_on_the_fused_graph(exported: Path) -> None:
    bundle = load_bundle(exported / "m")
    assert bundle.onnx["fused"]["map_scored"]
    x = np.random.default_rng(1).random((7, *bundle.input_shape), dtype=np.float32)
    ort = _scores(exported / "m", "onnxruntime", x)
    ov = _scores(exported / "m", "openvino", x)
    np.testing.assert_allclose(ov, ort, rtol=1e-4, atol=1e-6)
    half = _scores(exported / "m", "openvino", x, "fp16")
    assert np.corrcoef(half, ort)[0, 1] > 0.99  # FP16 graph: close, not equal
    with open_runner(bundle, "openvino") as runner:
        assert runner.name.startswith("openvino[") and runner.output_names == ["score", "error_map"]
        first = runner.infer(x[:2])["score"]
        runner.infer(x[2:4])
        assert np.array_equal(first, runner.infer(x[:2])["score"])  # outputs are copies, not reused buffers


def test_sensor_graphs_and_clear_refusals(tmp_path: Path) -> None:
    from bundle_factory import make_bundle

    sensors = load_bundle(make_bundle(tmp_path / "s", kind="window"))
    x = np.random.default_rng(2).normal(size=(9, *sensors.input_shape)).astype(np.float32)
    np.testing.assert_allclose(
        _scores(sensors.path, "openvino", x), _scores(sensors.path, "onnxruntime", x), rtol=1e-4, atol=1e-6
    )
    with pytest.raises(EdgeanomError, match="int8 needs the TensorRT backend"):
        open_runner(sensors, "openvino", precision="int8")
    with pytest.raises(EdgeanomError, match="no FP16 ONNX model"):
        open_runner(sensors, "openvino", precision="fp16")


def test_run_with_openvino_flags_what_onnx_runtime_flags(exported: Path, tmp_path: Path) -> None:
    from edgeanom.cli.main import app

    flags = {}
    for backend in ("onnxruntime", "openvino"):
        events = tmp_path / f"{backend}.jsonl"
        result = CliRunner().invoke(
            app,
            ["run", "-m", str(exported / "m"), "--images", str(exported / "good"), "--backend", backend,
             "--events", str(events), "--status-interval", "0"],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        samples = [json.loads(line) for line in events.read_text().splitlines()]
        samples = [s for s in samples if s["kind"] == "sample"]
        assert len(samples) == 24
        flags[backend] = [(s["index"], s["flag"], s["score"]) for s in samples]
    threshold = load_bundle(exported / "m").threshold.value
    for (i, flag_ov, score_ov), (j, flag_ort, score_ort) in zip(flags["openvino"], flags["onnxruntime"]):
        assert i == j and score_ov == pytest.approx(score_ort, rel=1e-4)
        if abs(score_ort - threshold) > 1e-3 * abs(threshold):  # a score on the threshold may tip either way
            assert flag_ov == flag_ort


def test_auto_takes_the_cpu_runtime_bench_measured_faster_here(exported: Path, tmp_path: Path) -> None:
    bundle_dir = Path(shutil.copytree(exported / "m", tmp_path / "m"))
    bundle = load_bundle(bundle_dir)
    assert measured_choice(bundle) is None
    with open_runner(bundle, "auto") as runner:  # no record: ONNX Runtime, the embedded default
        assert runner.name.startswith("onnxruntime[")

    # a real bench of both CPU runtimes writes the record for this machine
    from edgeanom.benchmarking.runner import BenchPlan, run_bench

    plan = BenchPlan(
        bundle_dir=bundle_dir, backends=["onnxruntime", "openvino"], precisions=["fp32"], batches=[1, 4],
        threads=[1], warmup_s=0.05, duration_s=0.2, source="synthetic",
    )  # fmt: skip
    doc = run_bench(plan)
    record = json.loads((bundle_dir / "engines" / RECORD).read_text())
    assert record["machine"] == machine_id() and doc["cpu_backend"]["choice"] == record["choice"]
    assert record["settings"] == [{"batch": 1, "threads": 1}, {"batch": 4, "threads": 1}]
    chosen, why = measured_choice(bundle) or ("", "")
    with open_runner(bundle, "auto") as runner:
        assert runner.name.startswith(f"{chosen}[") and why in runner.selection

    # the record of another machine (a bundle copied to a new device) is not applied
    (bundle_dir / "engines" / RECORD).write_text(
        json.dumps({**record, "machine": "elsewhere", "choice": "openvino"})
    )
    assert measured_choice(bundle) is None
    record.update(choice="openvino", per_frame_ms={"onnxruntime": 2.0, "openvino": 1.0})
    (bundle_dir / "engines" / RECORD).write_text(json.dumps(record))
    with open_runner(bundle, "auto") as runner:
        assert runner.name.startswith("openvino[")
        assert "measured 2.00x faster than onnxruntime on this machine by edgeanom bench" in runner.selection


def test_the_choice_needs_both_runtimes_timed_at_the_same_settings() -> None:
    def result(backend: str, batch: int, ms: float, precision: str = "fp32") -> dict:
        config = {"backend": backend, "precision": precision, "batch": batch, "threads": 2}
        return {"config": config, "per_frame_ms": {"latency": {"p50": ms}}}

    assert faster_cpu_backend([result("onnxruntime", 1, 2.0)]) is None
    assert faster_cpu_backend([result("onnxruntime", 1, 2.0), result("openvino", 8, 1.0)]) is None
    both = [result("onnxruntime", 1, 2.0), result("openvino", 1, 3.0), result("onnxruntime", 8, 1.0),
            result("openvino", 8, 0.5), result("openvino", 1, 0.1, "fp16")]  # fmt: skip
    found = faster_cpu_backend(both)
    assert found is not None and found["choice"] == "openvino"  # geometric means sqrt(1.5) < sqrt(2)
    assert found["per_frame_ms"] == {
        "onnxruntime": pytest.approx(1.4142, abs=1e-4),
        "openvino": pytest.approx(1.2247, abs=1e-4),
    }
