"""Triton model repositories: config.pbtxt parses into Triton's ModelConfig and matches the ONNX graph."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeanom.errors import EdgeanomError
from edgeanom.export.triton import model_config, onnx_io, safe_model_name, write_model_repository

pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="tritonclient[grpc] not installed")


def parse(text: str):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse(text, model_config_pb2.ModelConfig())


def fused_image_onnx(path: Path) -> Path:
    """A real fused graph: tiny conv model + score head, outputs score [N] and error_map [N, 16, 16]."""
    import onnx
    import torch

    from edgeanom.export.fused import ScoreSpec, append_score_head

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 3, 3, padding=1), torch.nn.Sigmoid()).eval()
    torch.onnx.export(
        model,
        (torch.zeros(1, 3, 16, 16),),
        str(path),
        input_names=["input"],
        output_names=["reconstruction"],
        dynamic_axes={"input": {0: "batch"}, "reconstruction": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    fused = append_score_head(onnx.load(str(path)), ScoreSpec(error_map=True))
    onnx.save(fused, str(path))
    return path


def test_onnx_repository_config_parses_and_matches_the_graph(tmp_path: Path) -> None:
    import onnxruntime as ort

    onnx_path = fused_image_onnx(tmp_path / "model.fused.onnx")
    config_path = write_model_repository(
        tmp_path / "repo", "my model", onnx_path, max_batch_size=8, instances=2
    )
    assert config_path == tmp_path / "repo" / "my-model" / "config.pbtxt"
    assert (tmp_path / "repo" / "my-model" / "1" / "model.onnx").read_bytes() == onnx_path.read_bytes()
    cfg = parse(config_path.read_text())
    assert cfg.name == "my-model" and cfg.platform == "onnxruntime_onnx" and cfg.max_batch_size == 8
    from tritonclient.grpc import model_config_pb2 as mc

    assert [(i.name, i.data_type, list(i.dims)) for i in cfg.input] == [("input", mc.TYPE_FP32, [3, 16, 16])]
    outputs = {o.name: o for o in cfg.output}
    assert outputs["score"].data_type == mc.TYPE_FP32
    assert list(outputs["score"].dims) == [1] and list(outputs["score"].reshape.shape) == []
    assert list(outputs["error_map"].dims) == [16, 16] and not outputs["error_map"].HasField("reshape")
    assert list(cfg.dynamic_batching.preferred_batch_size) == [4, 8]
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 100
    # AUTO: Triton places the instances (GPU when it has one, else CPU), so the repository loads on both
    assert cfg.instance_group[0].count == 2 and cfg.instance_group[0].kind == mc.ModelInstanceGroup.KIND_AUTO
    # the dims Triton is told match what the model really returns for a batch
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": np.zeros((5, 3, 16, 16), np.float32)})
    names = [o.name for o in sess.get_outputs()]
    for name, value in zip(names, got):
        per_sample = (
            list(outputs[name].reshape.shape)
            if outputs[name].HasField("reshape")
            else list(outputs[name].dims)
        )
        assert [5, *per_sample] == list(value.shape)


def test_plan_repository_reads_io_from_the_source_onnx(tmp_path: Path) -> None:
    onnx_path = fused_image_onnx(tmp_path / "model.onnx")
    plan = tmp_path / "fp16-b4-0123.plan"
    plan.write_bytes(b"raw engine")
    config_path = write_model_repository(
        tmp_path / "repo", "m-trt", plan, max_batch_size=4, io_from=onnx_path
    )
    cfg = parse(config_path.read_text())
    assert cfg.platform == "tensorrt_plan" and cfg.max_batch_size == 4
    from tritonclient.grpc import model_config_pb2 as mc

    assert cfg.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU  # an engine runs on a GPU only
    assert (config_path.parent / "1" / "model.plan").read_bytes() == b"raw engine"
    assert [o.name for o in cfg.output] == ["score", "error_map"]
    with pytest.raises(EdgeanomError, match="ONNX file the engine was built from"):
        write_model_repository(tmp_path / "repo", "x", plan, max_batch_size=4)


def test_config_text_for_cpu_instances_and_onnx_io(tmp_path: Path) -> None:
    onnx_path = fused_image_onnx(tmp_path / "model.onnx")
    inputs, outputs = onnx_io(onnx_path)
    cfg = parse(model_config("cpu", "onnxruntime_onnx", inputs, outputs, max_batch_size=1, kind="KIND_CPU"))
    from tritonclient.grpc import model_config_pb2 as mc

    assert cfg.instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU
    assert list(cfg.dynamic_batching.preferred_batch_size) == []
    with pytest.raises(EdgeanomError, match="max_batch_size"):
        model_config("x", "onnxruntime_onnx", inputs, outputs, max_batch_size=0)
    assert safe_model_name("../weird name!") == "weird-name"
    with_params = parse(
        model_config(
            "p",
            "onnxruntime_onnx",
            inputs,
            outputs,
            max_batch_size=2,
            parameters={"edgeanom_threshold": "0.25"},
        )
    )
    assert with_params.parameters["edgeanom_threshold"].string_value == "0.25"
    with pytest.raises(EdgeanomError, match="instance kind must be one of"):
        model_config("x", "onnxruntime_onnx", inputs, outputs, max_batch_size=1, kind="KIND_TPU")
