"""`edgeanom export --deepstream DIR`: the nvinfer config parsed back (DeepStream's key-file format) and checked
against the graph it names, and the probe's verdict on that graph's outputs equal to `run`'s. DeepStream itself
cannot run here."""

from __future__ import annotations

import configparser
import importlib.util
from pathlib import Path

import cv2
import pytest

from edgeanom.errors import EdgeanomError


def _read_config(path: Path) -> dict[str, str]:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(path, encoding="utf-8")
    assert parser.sections() == ["property"]
    return dict(parser["property"])


def _probe(path: Path):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("edgeanom_probe", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # pyds is imported inside the probe function only
    return module


@pytest.fixture(scope="module")
def image_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from bundle_factory import grating_images, train_tiny_conv_ae

    root = tmp_path_factory.mktemp("ds")
    train_tiny_conv_ae(root / "m", grating_images(root / "good", 24))
    return root


def test_config_matches_the_graph_and_the_probe_gives_runs_verdict(
    image_bundle: Path, tmp_path: Path
) -> None:
    import onnx
    import onnxruntime as ort

    from edgeanom.bundle import load_bundle
    from edgeanom.export.pipeline import ExportOptions, export_bundle
    from edgeanom.preprocess import Preprocessor
    from edgeanom.scorer import Scorer

    out = tmp_path / "ds"
    result = export_bundle(image_bundle / "m", ExportOptions(deepstream_dir=out, max_batch=4))
    bundle = load_bundle(image_bundle / "m")
    assert [p.name for p in result.deepstream[:2]] == ["config_infer_edgeanom.txt", "edgeanom_probe.py"]
    cfg = _read_config(out / "config_infer_edgeanom.txt")
    model = onnx.load(str(out / cfg["onnx-file"]))
    outputs = [o.name for o in model.graph.output]
    assert cfg["output-blob-names"].split(";") == outputs == ["score", "error_map"]
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim[1:]]
    assert [int(v) for v in cfg["infer-dims"].split(";")] == dims == list(bundle.input_shape)
    assert cfg["network-type"] == "100" and cfg["output-tensor-meta"] == "1" and cfg["network-mode"] == "0"
    assert cfg["model-color-format"] == "2" and cfg["batch-size"] == "4"  # grey frames, --max-batch
    assert float(cfg["net-scale-factor"]) == pytest.approx(1 / 255) and cfg["offsets"] == "0"
    assert cfg["model-engine-file"].endswith("_b4_gpu0_fp32.engine")

    # nvinfer hands the probe the graph's outputs; its verdict must be run's (same score, same flag)
    frames = [cv2.imread(str(p)) for p in sorted((image_bundle / "good").glob("*.png"))[:6]]
    frames[0][8:20, 8:20] = 255  # one obvious defect
    x = Preprocessor(bundle)(frames).copy()
    session = ort.InferenceSession(str(out / cfg["onnx-file"]), providers=["CPUExecutionProvider"])
    got = dict(zip(outputs, session.run(outputs, {"input": x})))
    want = Scorer(bundle)(x, got).scores  # what run computes from the deployed graph
    probe = _probe(out / "edgeanom_probe.py")
    assert bundle.threshold.value == probe.THRESHOLD
    for i in range(len(frames)):
        score, flagged = probe.frame_scores([(name, float(got[name][i].reshape(-1)[0])) for name in outputs])
        assert score == pytest.approx(float(want[i]), rel=1e-6) and flagged == (
            want[i] > bundle.threshold.value
        )
    assert probe.frame_scores([("score", want[0])])[1]  # the defect is flagged
    with pytest.raises(KeyError, match="no 'score' output"):
        probe.frame_scores([("error_map", 0.0)])


def test_fp16_and_what_deepstream_cannot_serve(image_bundle: Path, tmp_path: Path) -> None:
    import shutil

    from bundle_factory import make_bundle
    from edgeanom.export.pipeline import ExportOptions, export_bundle

    copy = Path(shutil.copytree(image_bundle / "m", tmp_path / "m"))
    export_bundle(copy, ExportOptions(fp16=True, deepstream_dir=tmp_path / "half"))
    cfg = _read_config(tmp_path / "half" / "config_infer_edgeanom.txt")
    assert cfg["network-mode"] == "2" and cfg["onnx-file"] == "model.fp16.onnx"
    assert (tmp_path / "half" / "model.fp16.onnx").is_file()

    with pytest.raises(EdgeanomError, match="needs the whole score in the graph"):
        export_bundle(copy, ExportOptions(fused=False, deepstream_dir=tmp_path / "plain"))
    sensors = make_bundle(tmp_path / "sensors", kind="window")
    with pytest.raises(EdgeanomError, match=r"DeepStream runs video models; bundle .* takes windows"):
        export_bundle(sensors, ExportOptions(deepstream_dir=tmp_path / "s"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(EdgeanomError, match="--deepstream"):
        export_bundle(copy, ExportOptions(deepstream_dir=tmp_path / "file"))
