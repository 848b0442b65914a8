"""Backend selection and runners: ONNX Runtime with reused output buffers, the PyTorch reference path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeanom.backends import open_runner, tensorrt_unavailable
from edgeanom.backends.onnxruntime import OnnxRuntimeRunner
from edgeanom.bundle import Bundle, fixed_threshold, load_bundle, new_bundle, onnx_section, preprocess_section
from edgeanom.errors import EdgeanomError
from edgeanom.runtime.testing import image_bundle


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    bg = np.random.default_rng(0).integers(0, 255, (16, 16, 3), dtype=np.uint8)
    return image_bundle(tmp_path_factory.mktemp("b") / "model", bg, threshold=0.01, color="rgb")


def test_reused_output_buffers_match_plain_runs(bundle: Bundle) -> None:
    plain = OnnxRuntimeRunner(bundle.onnx_path)
    bound = OnnxRuntimeRunner(bundle.onnx_path, reuse_outputs=True, intra_op_threads=1, spin_wait=False)
    rng = np.random.default_rng(1)
    first = None
    for n in (1, 4, 4, 3, 1):
        x = rng.random((n, 3, 16, 16), dtype=np.float32)
        a = plain.infer(x)["reconstruction"]
        b = bound.infer(x)["reconstruction"]
        np.testing.assert_array_equal(a, b)
        if n == 4:
            first = b if first is None else first
    # The same batch size writes into the same buffer (no allocation per batch).
    assert bound.infer(np.zeros((4, 3, 16, 16), np.float32))["reconstruction"] is first
    plain.close()
    bound.close()


def test_auto_says_what_it_chose_and_why(bundle: Bundle) -> None:
    runner = open_runner(bundle, "auto")
    try:
        assert runner.name.startswith("onnxruntime[") or runner.name.startswith("tensorrt")
        assert runner.selection.startswith("auto: ")
        reason = tensorrt_unavailable()
        if reason is not None:
            assert reason in runner.selection
    finally:
        runner.close()


def test_bad_backend_and_precision_requests_are_clear(bundle: Bundle) -> None:
    with pytest.raises(EdgeanomError, match="unknown backend 'tpu'"):
        open_runner(bundle, "tpu")
    with pytest.raises(EdgeanomError, match="no FP16 ONNX model"):
        open_runner(bundle, "onnxruntime", precision="fp16")
    with pytest.raises(EdgeanomError, match="int8 needs the TensorRT backend"):
        open_runner(bundle, "onnxruntime", precision="int8")
    with pytest.raises(EdgeanomError, match="torch backend is the FP32 reference path; fp16"):
        open_runner(bundle, "torch", precision="fp16")


def test_fixed_batch_model_caps_the_pipeline_batch(tmp_path: Path) -> None:
    bg = np.full((8, 8, 3), 50, np.uint8)
    b = image_bundle(tmp_path / "fixed", bg, threshold=1.0, fixed_batch=1)
    runner = open_runner(b, "onnxruntime")
    assert runner.max_batch == 1
    with pytest.raises(EdgeanomError, match="fixed batch size 1"):
        runner.infer(np.zeros((2, 1, 8, 8), np.float32))


def test_torch_reference_runner_matches_onnxruntime(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from edgeanom.models import build_model
    from edgeanom.models.checkpoint import save_torch
    from edgeanom.models.onnx_export import export_onnx

    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = build_model("conv-ae", [1, 16, 16], {"channels": [4, 8], "latent": 8}).eval()
    root = tmp_path / "convae"
    root.mkdir()
    save_torch(model, root / "model.pt")
    export_onnx(model, root / "model.onnx")
    new_bundle(
        root,
        model_type="conv-ae",
        params=model.params,
        input_kind="image",
        shape=[1, 16, 16],
        names=["input"],
        preprocess=preprocess_section(image={"size": [16, 16], "color": "gray"}),
        threshold=fixed_threshold(0.1),
        onnx=onnx_section("reconstruction"),
        checkpoint="model.pt",
    ).save()
    b = load_bundle(root)
    x = np.random.default_rng(0).random((3, 1, 16, 16), dtype=np.float32)
    with open_runner(b, "torch") as ref, open_runner(b, "onnxruntime") as ort_runner:
        assert ref.selection.startswith("torch[cpu]")
        np.testing.assert_allclose(
            ref.infer(x)["reconstruction"], ort_runner.infer(x)["reconstruction"], rtol=1e-4, atol=1e-5
        )
