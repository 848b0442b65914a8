"""eval on an MVTec-style folder with ground_truth masks: pixel AUROC and PRO against float64 references,
and overlays of the worst misses and false alarms."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeanom.evaluate.localisation import pixel_auroc, pro_score
from edgeanom.runtime.testing import image_bundle

SIZE = 32


def _scene(rng: np.random.Generator) -> np.ndarray:
    return np.clip(100 + rng.normal(0, 3, (SIZE, SIZE)), 0, 255).astype(np.uint8)


@pytest.fixture()
def mvtec(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    root = tmp_path / "part"
    for folder in ("test/good", "test/spot", "ground_truth/spot"):
        (root / folder).mkdir(parents=True)
    for i in range(6):
        cv2.imwrite(str(root / "test" / "good" / f"{i:03d}.png"), _scene(rng))
        img, mask = _scene(rng), np.zeros((SIZE, SIZE), np.uint8)
        y, x = 4 + 3 * i, 6 + 2 * i
        img[y : y + 5, x : x + 5] = 250
        mask[y : y + 5, x : x + 5] = 255
        cv2.imwrite(str(root / "test" / "spot" / f"{i:03d}.png"), img)
        cv2.imwrite(str(root / "ground_truth" / "spot" / f"{i:03d}_mask.png"), mask)
    return root


def test_eval_reports_pixel_auroc_pro_and_overlays(mvtec: Path, tmp_path: Path) -> None:
    from edgeanom.evaluate.api import evaluate_bundle

    background = np.full((SIZE, SIZE), 100, np.uint8)
    bundle = image_bundle(
        tmp_path / "m", background, 0.01, color="gray", score_map={"blur_sigma": 0.5, "mode": "max", "k": 1}
    )
    report = evaluate_bundle(bundle.path, mvtec / "test", report_dir=tmp_path / "rep")
    loc = report["localisation"]
    assert loc["n_images_with_defect_pixels"] == 6 and loc["map_size"] == [SIZE, SIZE]
    assert loc["pixel_auroc"] > 0.95 and loc["pro_0.3"] > 0.9
    overlays = report["files"]["overlays"]
    assert len(overlays) == 6 and all((tmp_path / "rep" / f).is_file() for f in overlays)
    assert sum(f.startswith("overlays/miss-spot") for f in overlays) == 3


def test_pro_and_pixel_auroc_match_references() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(1)
    masks = np.zeros((4, 20, 20), bool)
    masks[0, 2:6, 2:6] = True
    masks[1, 10:18, 3:5] = True
    masks[1, 1:3, 15:19] = True  # a second, small region in the same image
    maps = rng.random((4, 20, 20)) + 1.5 * masks
    assert pixel_auroc(maps, masks) == pytest.approx(roc_auc_score(masks.ravel(), maps.ravel()))
    perfect = masks.astype(float)
    assert pro_score(perfect + 1e-3 * rng.random(perfect.shape), masks) > 0.99
    assert pro_score(rng.random((4, 20, 20)), masks) < 0.3  # chance: about fpr/2 averaged to 0.3
    assert pro_score(maps, np.zeros_like(masks)) is None and pixel_auroc(maps, np.zeros_like(masks)) is None
