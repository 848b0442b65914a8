"""`grad-knn`, the training-free memory bank of gradient-orientation histograms: its score against an
independent float64 reference, the bank (fitted, thinned, saved and loaded), `train_bundle` with no epochs,
the exported ONNX graph in ONNX Runtime, `eval` and `run` on generated image folders."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from edgeanom.errors import EdgeanomError
from edgeanom.models import build_model
from edgeanom.models.gradknn import reference_scores


def _fitted(shape: tuple[int, int, int], train: torch.Tensor, **params: object) -> torch.nn.Module:
    model = build_model("grad-knn", shape, dict(params))
    model.prepare(lambda: iter(train.split(5)))
    return model.eval()


@pytest.mark.parametrize(
    ("shape", "params"),
    [
        ((1, 32, 32), {}),
        ((3, 24, 36), {"grid": 4, "bins": 6, "topk": 2}),
        ((1, 16, 48), {"grid": 2, "topk": 4}),
    ],
)
def test_scores_match_a_float64_reference(shape: tuple[int, int, int], params: dict) -> None:
    gen = torch.Generator().manual_seed(sum(shape))
    train = torch.rand(11, *shape, generator=gen)
    test = torch.rand(7, *shape, generator=gen)
    model = _fitted(shape, train, **params)
    assert model.params["n_bank"] == 11 and tuple(model.bank.shape[:1]) == (11,)
    with torch.no_grad():
        got = model(test).double().numpy()
    full = {**model.params}
    want = reference_scores(test.numpy(), model.bank.double().numpy(), full)
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=1e-6)
    # the bank itself is the reference's descriptors of the training images: each scores (almost) zero
    with torch.no_grad():
        assert float(model(train).abs().max()) < 1e-5


def test_a_line_scores_above_clean_images_and_brightness_alone_does_not() -> None:
    rng = np.random.default_rng(0)

    def texture(n: int) -> np.ndarray:
        grain = rng.normal(0.5, 0.08, (n, 64, 64))
        return cv2.GaussianBlur(grain.transpose(1, 2, 0), (0, 0), 1.5).transpose(2, 0, 1)[:, None]

    model = _fitted((1, 64, 64), torch.from_numpy(texture(40)).float())
    clean = texture(10)
    lined = clean.copy()
    for img in lined[:, 0]:
        cv2.line(img, (4, 10), (60, 50), 0.1, 1)
    darker = clean * 0.8  # the same structure, 20% darker: orientation histograms are unit length
    with torch.no_grad():
        s_clean, s_line, s_dark = (model(torch.from_numpy(a).float()).numpy() for a in (clean, lined, darker))
    assert s_line.min() > s_clean.max()
    np.testing.assert_allclose(s_dark, s_clean, rtol=0.05)


def test_bank_is_thinned_evenly_and_survives_a_checkpoint(tmp_path: Path) -> None:
    from edgeanom.models.checkpoint import save_torch

    train = torch.rand(12, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    model = _fitted((1, 16, 16), train, grid=4, max_bank=5)
    assert model.params["n_bank"] == 5
    full = _fitted((1, 16, 16), train, grid=4)
    torch.testing.assert_close(model.bank, full.bank[[0, 3, 6, 8, 11]])  # linspace(0, 11, 5), rounded
    save_torch(model, tmp_path / "model.pt")
    again = build_model("grad-knn", (1, 16, 16), dict(model.params))
    again.load_state_dict(torch.load(tmp_path / "model.pt", weights_only=True)["state_dict"])
    torch.testing.assert_close(again.bank, model.bank)


@pytest.mark.parametrize(
    ("shape", "params", "message"),
    [
        ((1, 30, 32), {}, r"image size 30x32 must be divisible by grid 8; use --image-size 24"),
        ((1, 32, 32), {"bins": 1}, "bins must be >= 2"),
        ((1, 32, 32), {"grid": 2, "topk": 5}, r"topk must be in \[1, 4\]"),
        ((2, 32, 32), {}, "needs grey or RGB images, got 2 channels"),
        ((1, 32, 32), {"max_bank": 0}, "max_bank must be >= 1"),
    ],
)
def test_bad_settings_are_one_line_errors(shape: tuple[int, int, int], params: dict, message: str) -> None:
    with pytest.raises(EdgeanomError, match=message):
        build_model("grad-knn", shape, params)


SETS = {"train": 60, "test/good": 12, "test/crack": 12}  # generated images per folder


def _folder(root: Path, n: int, rng: np.random.Generator, defect: bool = False) -> Path:
    root.mkdir(parents=True)
    for i in range(n):
        grain = cv2.GaussianBlur(rng.normal(140, 20, (48, 48)), (0, 0), 1.2)
        img = grain.clip(0, 255).astype(np.uint8)
        if defect:
            cv2.line(img, (3, 5 + i % 20), (44, 30 + i % 15), 40, 1)
        cv2.imwrite(str(root / f"{i:03d}.png"), img)
    return root


def test_train_eval_export_and_run(tmp_path: Path) -> None:
    import onnxruntime as ort

    from edgeanom.bundle import load_bundle
    from edgeanom.evaluate.api import evaluate_bundle
    from edgeanom.export.pipeline import ExportOptions, export_bundle
    from edgeanom.models.checkpoint import load_model
    from edgeanom.runtime.launch import RunOptions, run_stream
    from edgeanom.train.api import train_bundle

    rng = np.random.default_rng(0)
    folders = {name: (tmp_path / name, n, name == "test/crack") for name, n in SETS.items()}
    for root, n, cracked in folders.values():
        _folder(root, n, rng, defect=cracked)
    bundle = train_bundle(
        tmp_path / "train", model="grad-knn", out=tmp_path / "m", image_size=48, threads=1, progress=False
    )
    assert (
        bundle.onnx["output"] == "score" and bundle.score["metric"] == "model" and bundle.score["map"] is None
    )
    train_meta = bundle.meta["model"]["train"]
    assert (
        train_meta["epochs_run"] == 0 and bundle.meta["model"]["params"]["n_bank"] == 48
    )  # 60 minus 20% held out
    # the bundle's graph in ONNX Runtime gives the checkpoint's scores
    x = np.random.default_rng(1).random((5, *bundle.input_shape), dtype=np.float32)
    session = ort.InferenceSession(str(bundle.onnx_path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        want = load_model(bundle)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(session.run(["score"], {"input": x})[0], want, rtol=1e-5, atol=1e-7)
    report = evaluate_bundle(bundle.path, tmp_path / "test", plots=False)
    assert report["auroc"] > 0.95, report
    result = export_bundle(bundle.path, ExportOptions(fp16=True))
    assert all(r.ok is not False for r in result.parity) and (bundle.path / "model.fp16.onnx").is_file()
    again = evaluate_bundle(load_bundle(bundle.path).path, tmp_path / "test", plots=False)
    assert abs(again["auroc"] - report["auroc"]) < 1e-9
    events = tmp_path / "e.jsonl"
    crack = tmp_path / "test" / "crack"
    summary = run_stream(
        RunOptions(
            bundle.path, images=[crack], events=events, status_interval=0, install_signal_handlers=False
        )
    )
    assert summary.stats["frames"] == 12
    samples = [json.loads(line) for line in events.read_text().splitlines()]
    flagged = [s for s in samples if s.get("kind") == "sample" and s.get("flag")]
    assert len(flagged) >= 6  # the threshold (at the held-out maximum of 12 images) catches most drawn cracks
