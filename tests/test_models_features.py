"""Feature-level models on an ImageNet backbone: the trunks (torchvision's architectures and parameter names),
weight files (loaded without running code, every key and shape checked), and the heads trained, exported
(FP32 and FP16, backbone and head in one graph) and run end to end. Backbones here are randomly initialised
and saved to a file, as a user's torchvision weights would be: nothing is downloaded."""

from __future__ import annotations

import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from edgeanom.errors import EdgeanomError
from edgeanom.models import build_model
from edgeanom.models.backbones import TRUNKS, Backbone

# torchvision's published parameter counts (whole classifier) and the size of each classifier head
PUBLISHED = {
    "resnet18": (11_689_512, 512 * 1000 + 1000),
    "mobilenet_v3_large": (5_483_032, 960 * 1280 + 1280 + 1280 * 1000 + 1000),
    "mobilenet_v3_small": (2_542_856, 576 * 1024 + 1024 + 1024 * 1000 + 1000),
    "efficientnet_b0": (5_288_548, 1280 * 1000 + 1000),
}


@pytest.mark.parametrize("name", list(TRUNKS))
def test_trunks_have_torchvisions_size_and_strides(name: str) -> None:
    backbone = Backbone(name, 3)
    total, classifier = PUBLISHED[name]
    assert sum(p.numel() for p in backbone.trunk.parameters()) == total - classifier
    feats = backbone(torch.rand(2, 3, 64, 96))
    assert [tuple(f.shape) for f in feats] == [
        (2, c, 64 // s, 96 // s) for c, s in zip(backbone.channels, (8, 16, 32))
    ]
    grey = Backbone(name, 1)
    grey.load_state_dict(backbone.state_dict())
    x = torch.rand(1, 1, 64, 64)
    assert torch.equal(grey(x)[0], backbone(x.expand(-1, 3, -1, -1))[0])  # grey = the same grey in R, G, B


def test_backbone_stays_frozen_in_eval_mode() -> None:
    model = build_model("feat-vae", (3, 32, 32), {"backbone": "mobilenet_v3_small"})
    model.train()
    assert not model.backbone.training and model.encoder.training
    assert not any(p.requires_grad for p in model.backbone.parameters())


def test_weight_files_load_safely_and_wrong_files_say_why(tmp_path: Path) -> None:
    torch.manual_seed(1)
    source = Backbone("resnet18", 3)
    state = dict(source.trunk.state_dict())
    state["fc.weight"] = torch.zeros(1000, 512)  # torchvision's files carry the classifier: it is dropped
    good = tmp_path / "resnet18.pth"
    torch.save(state, good)
    target = Backbone("resnet18", 3)
    target.load_weights(good)
    x = torch.rand(2, 3, 32, 32)
    assert all(torch.equal(a, b) for a, b in zip(source(x), target(x)))

    with pytest.raises(EdgeanomError, match=r"not mobilenet_v3_small weights \(lacks 'features"):
        Backbone("mobilenet_v3_small", 3).load_weights(good)
    bent = dict(state)
    bent["layer1.0.conv1.weight"] = torch.zeros(64, 64, 1, 1)
    torch.save(bent, tmp_path / "bent.pth")
    with pytest.raises(EdgeanomError, match=r"'layer1.0.conv1.weight' has shape \(64, 64, 1, 1\)"):
        target.load_weights(tmp_path / "bent.pth")
    (tmp_path / "text.pth").write_text("not a checkpoint")
    with pytest.raises(EdgeanomError, match=r"text\.pth: not a readable torch state dict"):
        target.load_weights(tmp_path / "text.pth")

    class Payload:  # a pickle that would run code when unpickled
        def __reduce__(self) -> tuple:
            return (Path.touch, (tmp_path / "pwned",))

    with (tmp_path / "evil.pth").open("wb") as fh:
        pickle.dump(Payload(), fh)
    with pytest.raises(EdgeanomError, match=r"evil\.pth: not a readable torch state dict"):
        target.load_weights(tmp_path / "evil.pth")
    assert not (tmp_path / "pwned").exists()


def test_same_numbers_as_torchvision_when_it_is_installed(tmp_path: Path) -> None:
    tvm = pytest.importorskip(
        "torchvision.models",
        reason="torchvision does not import beside this torch build; checked in its own venv",
    )
    for name in TRUNKS:
        reference = getattr(tvm, name)(weights=None).eval()
        torch.save(reference.state_dict(), tmp_path / f"{name}.pth")
        ours = Backbone(name, 3)
        ours.load_weights(tmp_path / f"{name}.pth")
        x = torch.rand(1, 3, 64, 64)
        pooled = ours(x)[2].mean(dim=(2, 3))
        trunk = reference.features if hasattr(reference, "features") else None
        with torch.no_grad():
            xn = (x - ours.mean) / ours.std
            if trunk is None:
                r = reference
                h = r.layer4(r.layer3(r.layer2(r.layer1(r.maxpool(r.relu(r.bn1(r.conv1(xn))))))))
            else:
                h = trunk(xn)
        torch.testing.assert_close(pooled, h.mean(dim=(2, 3)), rtol=0, atol=1e-5)


def _spots(root: Path, n: int, rng: np.random.Generator, defect: bool = False) -> Path:
    root.mkdir(parents=True)
    for i in range(n):
        img = (100 + 30 * np.cos(np.arange(32) / 3.0)[:, None] + rng.normal(0, 5, (32, 32))).clip(0, 255)
        img = np.dstack([img, img * 0.9, img * 0.8]).astype(np.uint8)
        if defect:
            cv2.circle(img, (6 + i % 20, 6 + (7 * i) % 20), 5, (20, 240, 250), -1)
        cv2.imwrite(str(root / f"{i:03d}.png"), img)
    return root


@pytest.mark.parametrize(
    ("model", "backbone", "output"),
    [
        ("feat-vae", "resnet18", "score"),
        ("feat-svdd", "mobilenet_v3_small", "embedding"),
        ("feat-map", "efficientnet_b0", "error_map"),
    ],
)
def test_train_export_fp16_and_run(tmp_path: Path, model: str, backbone: str, output: str) -> None:
    from edgeanom.evaluate.api import evaluate_bundle
    from edgeanom.export.pipeline import ExportOptions, export_bundle
    from edgeanom.models.checkpoint import load_model
    from edgeanom.runtime.launch import RunOptions, run_stream
    from edgeanom.train.api import train_bundle

    torch.manual_seed(3)
    weights = tmp_path / f"{backbone}.pth"
    expected = Backbone(backbone, 3).trunk.state_dict()
    torch.save(expected, weights)
    rng = np.random.default_rng(0)
    train = _spots(tmp_path / "train", 40, rng)
    _spots(tmp_path / "test" / "good", 8, rng)
    _spots(tmp_path / "test" / "spot", 8, rng, defect=True)
    bundle = train_bundle(
        train,
        model=model,
        out=tmp_path / "m",
        backbone=backbone,
        backbone_weights=str(weights),
        epochs=3,
        threads=1,
        progress=False,
    )
    assert bundle.onnx["output"] == output and bundle.input_shape == (3, 32, 32)
    assert bundle.meta["model"]["params"]["backbone"] == backbone
    # the file's weights were loaded before training and live on in the bundle: the file is not needed again
    weights.unlink()
    trunk = load_model(bundle).backbone.trunk.state_dict()
    assert all(torch.equal(trunk[k], v) for k, v in expected.items())

    report = evaluate_bundle(bundle.path, tmp_path / "test", plots=False)
    assert np.isfinite(report["auroc"]) and (report["n_normal"], report["n_anomalous"]) == (8, 8)
    result = export_bundle(bundle.path, ExportOptions(fp16=True))
    assert result.parity and all(r.ok is not False for r in result.parity), result.parity
    assert (tmp_path / "m" / result.files["fp16"]).is_file()
    assert any(r.what.endswith("scores vs FP32") for r in result.parity), result.parity

    events = tmp_path / "e.jsonl"
    opts = RunOptions(
        model=bundle.path, images=[tmp_path / "test" / "spot"], events=events, status_interval=0
    )
    opts.install_signal_handlers = False
    summary = run_stream(opts)
    assert summary.stats["frames"] == 8


def test_cli_flags_and_errors_before_any_data_is_read(tmp_path: Path) -> None:
    from edgeanom.cli.main import app

    runner = CliRunner()
    rng = np.random.default_rng(0)
    train = _spots(tmp_path / "train", 24, rng)
    missing = runner.invoke(
        app,
        [
            "train",
            "--data",
            str(tmp_path / "nowhere"),
            "--model-type",
            "feat-vae",
            "--backbone-weights",
            "x.pth",
        ],
    )
    assert missing.exit_code != 0 and "--backbone-weights: file 'x.pth' does not exist" in missing.output
    unknown = runner.invoke(
        app, ["train", "--data", str(train), "--model-type", "feat-map", "--backbone", "vgg16"]
    )
    assert unknown.exit_code != 0 and "unknown backbone 'vgg16'" in unknown.output
    assert "Traceback" not in unknown.output + missing.output
    torch.save(Backbone("mobilenet_v3_small", 3).trunk.state_dict(), tmp_path / "w.pth")
    ok = runner.invoke(
        app,
        [
            "train", "--data", str(train), "--model-type", "feat-vae", "--backbone", "mobilenet_v3_small",
            "--backbone-weights", str(tmp_path / "w.pth"), "--epochs", "1", "--out", str(tmp_path / "m"), "-q",
        ],
    )  # fmt: skip
    assert ok.exit_code == 0, ok.output
    small = runner.invoke(
        app, ["train", "--data", str(train), "--model-type", "feat-svdd", "--image-size", "16"]
    )
    assert small.exit_code != 0 and "too small for a backbone" in small.output
