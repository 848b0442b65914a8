"""`edgeanom export` through Typer's CliRunner: artifacts, the parity table, trtexec commands, clear errors."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bundle_factory import train_tiny_conv_ae
from edgeanom.cli.main import app

torch = pytest.importorskip("torch")
pytest.importorskip("edgeanom.scoring", reason="the C++ scoring core is not built")

cli = CliRunner()
HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny_conv_ae(tmp_path_factory.mktemp("cli") / "edgeanom-model")


@pytest.fixture
def bundle(trained: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "edgeanom-model"
    shutil.copytree(trained, dst)
    return dst


def test_export_fp16_prints_parity_and_trtexec_commands(bundle: Path, tmp_path: Path) -> None:
    repo = tmp_path / "model_repository"
    result = cli.invoke(app, ["export", str(bundle), "--fp16", "--max-batch", "4", "--triton", str(repo)])
    assert result.exit_code == 0, result.output
    out = result.output
    # an image bundle: the whole map score is in the fused graph, checked against the core
    assert "model.onnx vs PyTorch" in out and "fused map score vs C++ core" in out
    assert "what FP16 costs" in out and "Spearman" in out
    assert "onnxslim:" in out
    assert "TensorRT 10: trtexec --onnx=model.fused.onnx --fp16" in out
    assert "TensorRT 11: trtexec --onnx=model.fp16.onnx" in out
    assert "--maxShapes=input:4x1x32x32" in out
    # no --data: parity and the FP16 cost run on the samples training kept in the bundle
    assert "inputs train: 13 training samples (holdout.npz)" in out
    assert "inputs held-out: 3 held-out normal samples (holdout.npz)" in out
    assert "FP16 cost on held-out: no labelled data: AUROC delta n/a — pass --data with labels" in out
    assert "no real samples" not in out
    meta = json.loads((bundle / "bundle.json").read_text())
    fp16 = meta["onnx"]["parity"]["fp16"]
    assert fp16["samples"] == "held-out" and fp16["n"] == 3 and fp16["spearman"] > 0.99
    assert fp16["score_rel_err_median"] < 1e-2 and fp16["delta_auroc"] is None
    assert meta["onnx"]["file"] == "model.fused.onnx" and meta["onnx"]["fp16_file"] == "model.fp16.onnx"
    assert all(c["ok"] is not False for c in meta["onnx"]["parity"]["checks"])
    config = (repo / "edgeanom-model" / "config.pbtxt").read_text()
    assert 'platform: "onnxruntime_onnx"' in config and "max_batch_size: 4" in config
    assert "kind: KIND_AUTO" in config  # loads on a CPU-only Triton as well as on a GPU one
    threshold = repr(float(meta["threshold"]["value"]))
    assert f'key: "edgeanom_threshold"\n  value: {{ string_value: "{threshold}" }}' in config
    assert (repo / "edgeanom-model" / "1" / "model.onnx").read_bytes() == (
        bundle / "model.fp16.onnx"
    ).read_bytes()


def test_fp16_cost_on_labelled_held_out_samples(tmp_path: Path) -> None:
    """A bundle trained with labelled anomalies keeps them: `export --fp16` gives delta AUROC without --data."""
    from edgeanom.train.api import train_bundle

    rng = np.random.default_rng(1)
    x = np.concatenate([rng.standard_normal((200, 4)), rng.standard_normal((12, 4)) + 5])
    y = np.r_[np.zeros(200), np.ones(12)]
    out = tmp_path / "vec"
    train_bundle(table=x, labels=y, model="dense-ae", out=out, epochs=2, progress=False, threads=1)
    result = cli.invoke(app, ["export", str(out), "--fp16"])
    assert result.exit_code == 0, result.output
    assert (
        "inputs held-out: 40 held-out normal + 12 labelled anomalous samples (holdout.npz)" in result.output
    )
    assert "no labelled data" not in result.output
    fp16 = json.loads((out / "bundle.json").read_text())["onnx"]["parity"]["fp16"]
    assert fp16["samples"] == "held-out" and fp16["n"] == 52 and fp16["n_anomalous"] == 12
    assert fp16["auroc_fp32"] > 0.9 and abs(fp16["delta_auroc"]) <= 0.005 and fp16["spearman"] > 0.99


def test_bundle_without_holdout_falls_back_to_random_inputs(bundle: Path) -> None:
    meta = json.loads((bundle / "bundle.json").read_text())
    (bundle / "bundle.json").write_text(json.dumps({**meta, "holdout": None}))  # as older bundles
    result = cli.invoke(app, ["export", str(bundle), "--fp16", "--no-simplify"])
    assert result.exit_code == 0, result.output
    assert "no real samples: the bundle has no holdout.npz" in result.output
    assert "inputs random: 16 random inputs in [0, 1]" in result.output
    fp16 = json.loads((bundle / "bundle.json").read_text())["onnx"]["parity"]["fp16"]
    assert fp16["samples"] == "random" and fp16["auroc_note"].startswith("no labelled data")


def test_default_bundle_dir_and_no_simplify(bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(bundle.parent)
    result = cli.invoke(app, ["export", "--no-simplify", "--no-fused-score"])
    assert result.exit_code == 0, result.output
    assert "onnxslim" not in result.output and "fused score" not in result.output
    assert json.loads((bundle / "bundle.json").read_text())["onnx"]["file"] == "model.onnx"


@pytest.mark.skipif(HAS_TENSORRT, reason="checks the message shown where TensorRT is missing")
def test_engine_without_tensorrt_writes_onnx_and_says_why(bundle: Path) -> None:
    (bundle / "model.fused.onnx").unlink(missing_ok=True)
    result = cli.invoke(app, ["export", str(bundle), "--engine"])
    assert result.exit_code == 2
    assert "error: no TensorRT engine built: TensorRT is not installed" in result.output
    assert "pip install 'edgeanom[trt]'" in result.output and "python3-libnvinfer" in result.output
    assert (
        "TensorRT 10: trtexec --onnx=model.fused.onnx --saveEngine=engines/model.fp32.b8.plan"
        in result.output
    )
    assert (bundle / "model.fused.onnx").is_file()  # the ONNX artifacts were written first


def test_int8_needs_calibration_data(bundle: Path) -> None:
    result = cli.invoke(app, ["export", str(bundle), "--int8"])
    assert result.exit_code == 2
    assert "error: --int8 needs calibration data: --calib-data PATH" in result.output


def test_int8_commands_with_calibration_data(bundle: Path, tmp_path: Path) -> None:
    calib = tmp_path / "calib.npy"
    np.save(calib, np.random.default_rng(1).random((16, 1, 32, 32), dtype=np.float32))
    result = cli.invoke(app, ["export", str(bundle), "--int8", "--calib-data", str(calib)])
    assert result.exit_code == 0, result.output
    assert re.search(r"--int8 --fp16 --calib=engines/calibration-[0-9a-f]{16}\.cache", result.output)
    assert "TensorRT 11: INT8 needs an explicitly quantized (Q/DQ) ONNX" in result.output
    assert (
        "model.onnx vs PyTorch" in result.output and " data " in result.output
    )  # calib data doubles as real samples

    np.save(calib, np.zeros((4, 3, 8, 8), np.float32))
    bad = cli.invoke(app, ["export", str(bundle), "--int8", "--calib-data", str(calib)])
    assert bad.exit_code == 2
    assert "samples have shape (4, 3, 8, 8), the model takes (N, 1, 32, 32)" in bad.output


def test_damaged_checkpoints_are_one_line(bundle: Path, tmp_path: Path) -> None:
    import torch

    good = torch.load(bundle / "model.pt", weights_only=True)
    for payload, message in [
        ([1, 2, 3], "not an edgeanom checkpoint (format 'list')"),
        ({**good, "state_dict": {"nope": torch.zeros(1)}}, "the weights do not fit a conv-ae model"),
        ({k: v for k, v in good.items() if k != "params"}, "checkpoint lacks params"),
    ]:
        torch.save(payload, bundle / "model.pt")
        result = cli.invoke(app, ["export", "--model", str(bundle)])
        assert result.exit_code == 2 and message in result.output, result.output
    torch.save(good, bundle / "model.pt")


def test_missing_checkpoint_unknown_schema_and_missing_bundle(bundle: Path, tmp_path: Path) -> None:
    (bundle / "model.pt").unlink()
    result = cli.invoke(app, ["export", str(bundle)])
    assert result.exit_code == 2 and "checkpoint file 'model.pt' is missing" in result.output

    meta = json.loads((bundle / "bundle.json").read_text())
    meta["schema_version"] = 99
    (bundle / "bundle.json").write_text(json.dumps(meta))
    result = cli.invoke(app, ["export", str(bundle)])
    assert result.exit_code == 2 and "unknown schema_version 99" in result.output

    result = cli.invoke(app, ["export", str(tmp_path / "nowhere")])
    assert result.exit_code == 2 and "no model bundle at" in result.output


def test_bad_data_path_is_named(bundle: Path, tmp_path: Path) -> None:
    result = cli.invoke(app, ["export", str(bundle), "--data", str(tmp_path / "missing-folder")])
    assert result.exit_code == 2 and "missing-folder' does not exist" in result.output


def test_torch_backend_scores_a_fused_bundle_like_the_fused_engine(bundle: Path, tmp_path: Path) -> None:
    """After a fused export, the PyTorch reference (which has no fused outputs) still scores through the C++
    core from the input, and agrees with ONNX Runtime's fused score/map outputs."""
    from edgeanom.demo import write_video

    assert cli.invoke(app, ["export", str(bundle)]).exit_code == 0
    assert json.loads((bundle / "bundle.json").read_text())["onnx"]["fused"]
    rng = np.random.default_rng(1)
    video = write_video(
        tmp_path / "clip.avi", [(100 + 40 * rng.random((32, 32, 3))).astype(np.uint8) for _ in range(6)]
    )
    scores = {}
    for backend in ("torch", "onnxruntime"):
        events = tmp_path / f"{backend}.jsonl"
        args = [
            "run",
            "-m",
            str(bundle),
            "--video",
            str(video),
            "--backend",
            backend,
            "--events",
            str(events),
        ]
        result = cli.invoke(app, [*args, "--status-interval", "0"])
        assert result.exit_code == 0, result.output
        lines = [json.loads(line) for line in events.read_text().splitlines()]
        scores[backend] = [r["score"] for r in lines if r["kind"] == "sample"]
    assert len(scores["torch"]) == 6
    np.testing.assert_allclose(scores["torch"], scores["onnxruntime"], rtol=1e-4)
