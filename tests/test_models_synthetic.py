"""The self-supervised synthetic-anomaly segmenter (`synth-seg`): its defect generator, training through
`train_bundle`, scoring through the map path, export with FP16 parity, and `run` on an image folder."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from edgeanom.bundle import load_bundle
from edgeanom.models import build_model
from edgeanom.models.synthetic import blob_masks, line_masks, synthesize, visibility


def test_defects_are_blobs_pasted_only_inside_their_masks() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(16, 3, 32, 32, generator=gen)
    defective, masks = synthesize(x, torch.Generator().manual_seed(1), fraction=1.0, max_area=0.12)
    assert masks.shape == (16, 32, 32) and set(masks.unique().tolist()) <= {0.0, 1.0}
    area = masks.mean(dim=(1, 2))
    assert (area > 0.005).all() and (area < 0.14).all()
    outside = (masks == 0).unsqueeze(1).expand_as(x)
    assert torch.equal(defective[outside], x[outside])  # nothing changes outside a defect
    again, again_masks = synthesize(x, torch.Generator().manual_seed(1), fraction=1.0)
    assert torch.equal(again, defective) and torch.equal(again_masks, masks)  # seeded: reproducible
    none = synthesize(x, torch.Generator().manual_seed(2), fraction=0.0)[1]
    assert none.sum() == 0
    assert blob_masks(2, 40, 24, torch.Generator().manual_seed(3), 0.05).shape == (2, 40, 24)


def test_line_defects_are_thin_strokes_against_a_float64_distance_reference() -> None:
    n, h, w = 12, 64, 96
    masks = line_masks(n, h, w, torch.Generator().manual_seed(4))
    assert masks.shape == (n, h, w) and set(masks.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(masks, line_masks(n, h, w, torch.Generator().manual_seed(4)))
    # re-draw the same strokes from the same random numbers in float64 and compare pixel by pixel
    gen = torch.Generator().manual_seed(4)
    start = (torch.rand(n, 3, 2, generator=gen) * torch.tensor([h, w])).double()
    angle = torch.rand(n, 3, generator=gen).double() * np.pi
    length = 96 * (0.15 + 0.65 * torch.rand(n, 3, generator=gen).double())
    half = (0.5 * 64 * (0.01 + 0.03 * torch.rand(n, 3, generator=gen).double())).clamp(min=0.5)
    used = torch.arange(3).view(1, -1) <= (torch.rand(n, 1, generator=gen) * 3).long()
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    for i in range(n):
        ref = np.zeros((h, w), bool)
        for s in range(3):
            if not used[i, s]:
                continue
            p0 = start[i, s].numpy()
            d = np.array([np.sin(angle[i, s].item()), np.cos(angle[i, s].item())]) * length[i, s].item()
            t = np.clip(((yy - p0[0]) * d[0] + (xx - p0[1]) * d[1]) / (d @ d), 0, 1)
            dist = np.hypot(yy - (p0[0] + t * d[0]), xx - (p0[1] + t * d[1]))
            ref |= dist <= half[i, s].item()
        got = masks[i].numpy() > 0.5
        assert (got != ref).sum() <= 2, i  # float32 rounding at the stroke's edge only
        assert got.mean() < 0.1  # thin: a stroke covers a few per cent of the image at most
    x = torch.rand(n, 1, h, w)
    defective, m = synthesize(x, torch.Generator().manual_seed(5), fraction=1.0, line_fraction=1.0)
    assert m.sum() > 0 and float(m.mean()) < 0.05
    assert torch.equal(defective[m.unsqueeze(1) == 0], x[m.unsqueeze(1) == 0])


def _local_mean_reference(a: np.ndarray, size: int) -> np.ndarray:
    """float64 mean over the size x size window of each pixel, clipped at the border (no padding counted)."""
    h, w = a.shape
    r = size // 2
    out = np.empty((h, w))
    for y in range(h):
        for x in range(w):
            out[y, x] = a[max(0, y - r) : y + r + 1, max(0, x - r) : x + r + 1].mean()
    return out


def test_labels_follow_how_visible_a_defect_is_against_a_float64_reference() -> None:
    gen = torch.Generator().manual_seed(6)
    original = torch.rand(3, 2, 20, 24, generator=gen)
    changed = original.clone()
    changed[0, 1, 5:12, 6:15] += 0.03  # faint in one channel
    changed[1, :, 2:4, :] -= 0.5  # a strong thin band
    original[2] = torch.sin(torch.arange(24.0) * torch.pi / 2).abs().expand(2, 20, 24)  # stripes, period 2
    changed[2] = original[2]
    changed[2, :, 4:16, 2:22] = torch.roll(original[2], 2, dims=2)[:, 4:16, 2:22]  # pasted, moved one period
    got = visibility(changed, original, 0.05).double().numpy()
    diff = (changed - original).double().numpy()
    for i in range(3):
        ref = np.max([np.abs(_local_mean_reference(diff[i, c], 5)) for c in range(2)], axis=0)
        np.testing.assert_allclose(got[i], np.clip(ref / 0.05, 0, 1), atol=1e-5)
    assert abs(got[0, 8, 10] - 0.6) < 1e-5 and got[0, 0, 0] == 0  # 0.03 of 0.05; untouched far away
    assert got[1, 3, 12] == 1.0
    # the same texture moved changes no pixel's neighbourhood: not a defect
    assert np.abs(got[2]).max() < 1e-5
    # in synthesize: the labels are the masks weighted by that visibility, never outside a mask
    x = torch.rand(16, 1, 32, 32, generator=gen)
    masks = synthesize(x, torch.Generator().manual_seed(7), fraction=1.0)[1]
    defective, labels = synthesize(x, torch.Generator().manual_seed(7), fraction=1.0, visible_change=0.05)
    assert torch.allclose(labels, masks * visibility(defective, x, 0.05))
    assert (
        float(labels.min()) >= 0 and float(labels.max()) <= 1 and float(labels[masks == 0].abs().max()) == 0
    )
    # the model passes its hyper-parameter through: its validation loss depends on it
    torch.manual_seed(0)
    plain = build_model("synth-seg", (1, 32, 32), {"width": 4}).eval()
    weighted = build_model("synth-seg", (1, 32, 32), {"width": 4, "visible_change": 0.05}).eval()
    weighted.load_state_dict(plain.state_dict())
    with torch.no_grad():
        assert float(plain.training_loss(x, None)) != float(weighted.training_loss(x, None))


def test_the_map_is_a_probability_per_pixel_and_validation_defects_are_fixed() -> None:
    torch.manual_seed(0)
    model = build_model("synth-seg", (1, 32, 48), {"width": 4}).eval()
    x = torch.rand(3, 1, 32, 48)
    with torch.no_grad():
        out = model(x)
        assert out.shape == (3, 32, 48) and float(out.min()) >= 0.0 and float(out.max()) <= 1.0
        assert float(model.training_loss(x, None)) == float(model.training_loss(x, None))
    with pytest.raises(Exception, match="divisible by 8"):
        build_model("synth-seg", (1, 30, 30), {})


def _textures(root: Path, n: int, rng: np.random.Generator, defect: bool = False) -> Path:
    root.mkdir(parents=True)
    for i in range(n):
        base = (128 + 40 * np.sin(np.arange(32) / 2.0)[None, :] + rng.normal(0, 6, (32, 32))).clip(0, 255)
        img = base.astype(np.uint8)
        if defect:
            cv2.circle(img, (8 + i % 16, 8 + (3 * i) % 16), 4, 255, -1)
        cv2.imwrite(str(root / f"{i:03d}.png"), img)
    return root


def test_train_eval_export_and_run(tmp_path: Path) -> None:
    from edgeanom.evaluate.api import evaluate_bundle
    from edgeanom.export.pipeline import ExportOptions, export_bundle
    from edgeanom.runtime.launch import RunOptions, run_stream
    from edgeanom.train.api import train_bundle

    rng = np.random.default_rng(0)
    train = _textures(tmp_path / "train", 48, rng)
    _textures(tmp_path / "test" / "good", 12, rng)
    _textures(tmp_path / "test" / "spot", 12, rng, defect=True)
    bundle = train_bundle(
        train, model="synth-seg", out=tmp_path / "m", width=4, epochs=25, threads=1, progress=False, seed=0
    )
    assert bundle.onnx["output"] == "error_map" and bundle.input_shape == (1, 32, 32)
    assert bundle.score["map"][
        "normalize"
    ]  # per-pixel normalisation of the map, as for reconstruction models
    report = evaluate_bundle(bundle.path, tmp_path / "test", plots=False)
    assert report["auroc"] > 0.9, report
    result = export_bundle(bundle.path, ExportOptions(fp16=True))
    assert all(r.ok is not False for r in result.parity)
    # the graph's own map gets the blur, normalisation and top-k appended: the engine's score is run's score
    assert "fused" in result.files and load_bundle(bundle.path).onnx["fused"]["map_scored"]
    assert any(r.what == "fused map score vs C++ core" and r.ok for r in result.parity)
    again = evaluate_bundle(bundle.path, tmp_path / "test", plots=False)
    assert abs(again["auroc"] - report["auroc"]) < 1e-9
    events = tmp_path / "e.jsonl"
    opts = RunOptions(
        model=bundle.path, images=[tmp_path / "test" / "spot"], events=events, status_interval=0
    )
    opts.install_signal_handlers = False
    summary = run_stream(opts)
    assert summary.stats["frames"] == 12
