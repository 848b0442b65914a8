"""`grad-knn`, the image default, a training-free memory bank of edge-orientation histograms and cell colours:
its map and score against an independent float64 reference, leave-one-out scoring of its own training images,
bundles saved before the colour term, the bank (fitted, thinned, saved and loaded), `train_bundle` with no epochs,
the exported ONNX graph in ONNX Runtime, `eval` and `run` on generated image folders."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from edgeanom.errors import EdgeanomError
from edgeanom.models import build_model, default_model
from edgeanom.models.gradknn import balancing_weight, greedy_coreset, reference_maps, reference_scores


def _fitted(shape: tuple[int, int, int], train: torch.Tensor, **params: object) -> torch.nn.Module:
    model = build_model("grad-knn", shape, dict(params))
    model.prepare(lambda: iter(train.split(5)))
    return model.eval()


def _raw_bank(model: torch.nn.Module) -> np.ndarray:
    bank = model.bank.double()
    return (bank + model.bank_mean.double() if hasattr(model, "bank_mean") else bank).numpy()


def _anywhere(model: torch.nn.Module) -> tuple | None:
    """The position-free half's fitted buffers, as `reference_maps` takes them (None when it is off)."""
    if not model.params.get("anywhere"):
        return None
    cells = model.cell_bank.double() + model.cell_mean.double()
    return cells.numpy(), model.cell_source.numpy(), model.scales.double().numpy()


def test_it_is_the_image_default() -> None:
    assert default_model("image") == "grad-knn"


@pytest.mark.parametrize(
    ("shape", "params"),
    [
        ((1, 32, 32), {}),
        ((3, 24, 36), {"grid": 4, "bins": 6, "topk": 2}),
        ((3, 32, 32), {"colour_weight": 0}),
        ((1, 16, 48), {"grid": 2, "topk": 4, "colour_weight": 2.5}),
        ((3, 32, 32), {"nearest": "cell", "map": False, "anywhere": 0}),
        ((3, 32, 32), {"anywhere": 50}),  # a coreset of 50 of the 704 cells
        ((1, 32, 32), {"anywhere": 0}),  # aligned half alone (bundles saved before it)
    ],
)
def test_map_and_score_match_a_float64_reference(shape: tuple[int, int, int], params: dict) -> None:
    gen = torch.Generator().manual_seed(sum(shape))
    train = torch.rand(11, *shape, generator=gen)
    test = torch.cat([torch.rand(6, *shape, generator=gen), train[:1]])  # the last is a training image
    model = _fitted(shape, train, **params)
    assert model.params["n_bank"] == 11 and tuple(model.bank.shape[:1]) == (11,)
    assert model.params["colour_weight"] != "auto"  # fitted to a number
    with torch.no_grad():
        got = model(test).double().numpy()
    cells = reference_maps(test.numpy(), _raw_bank(model), model.params, _anywhere(model))
    want_scores = reference_scores(cells, model.params["topk"])
    if not model.params["map"]:
        np.testing.assert_allclose(got, want_scores, rtol=2e-4, atol=1e-6)
        return
    g = model.params["grid"]
    ch, cw = shape[1] // g, shape[2] // g
    np.testing.assert_allclose(got, np.repeat(np.repeat(cells, ch, axis=1), cw, axis=2), rtol=2e-4, atol=1e-6)
    # the bundle's map score (top-k mean over topk cells' pixels) is the mean of the topk largest cells
    from edgeanom import scoring

    section = model.score_section(Path("."), None)["map"]
    assert section["blur_sigma"] == 0.0 and section["k"] == model.params["topk"] * ch * cw
    score = scoring.map_score(got.astype(np.float32), mode="topk_mean", k=section["k"])
    np.testing.assert_allclose(score, want_scores, rtol=2e-4, atol=1e-6)


@pytest.mark.parametrize("colour_weight", [1.0, 20.0])  # 20: cells far apart, the skip must still win
def test_a_training_image_scores_against_the_others(colour_weight: float) -> None:
    """Its own bank entry and its cells are skipped: the map equals that of a bank fitted without it
    (leave-one-out; every cell is in the position-free bank here, 9 x 64 < `anywhere`)."""
    train = torch.rand(9, 1, 32, 32, generator=torch.Generator().manual_seed(3))
    model = _fitted((1, 32, 32), train, colour_weight=colour_weight)
    assert model.leave_one_out(model.params)
    for i in (0, 4):
        others = _fitted((1, 32, 32), torch.cat([train[:i], train[i + 1 :]]), colour_weight=colour_weight)
        others.scales = model.scales  # the two halves' units are fitted on the whole bank
        with torch.no_grad():
            mine, theirs = model(train[i : i + 1]), others(train[i : i + 1])
        torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-6)
        assert float(mine.max()) > 0.1
    by_cell = build_model("grad-knn", (1, 32, 32), {"nearest": "cell", "anywhere": 0})
    assert not by_cell.leave_one_out(by_cell.params)


def test_bundles_saved_before_the_colour_term_keep_their_scores() -> None:
    """A checkpoint's params without the new settings build the model those bundles were made with."""
    old = {"grid": 8, "bins": 9, "topk": 3, "max_bank": 2000, "n_bank": 0}
    model = build_model("grad-knn", (1, 32, 32), old, saved=True)
    assert model.params["nearest"] == "cell" and model.params["map"] is False
    assert model.output_name == "score" and model.bank.shape[2] == 9 and not hasattr(model, "bank_mean")
    assert model.score_section(Path("."), {"k": 10})["map"] is None
    assert build_model("grad-knn", (1, 32, 32), old).output_name == "error_map"


def test_colour_weight_balances_the_two_parts() -> None:
    gen = torch.Generator().manual_seed(0)
    hist, colour = torch.rand(20, 4, 9, generator=gen), 0.1 * torch.rand(20, 4, 3, generator=gen)
    h = hist.double().var(dim=0, unbiased=False).sum(dim=1).mean()
    c = colour.double().var(dim=0, unbiased=False).sum(dim=1).mean()
    assert balancing_weight(hist, colour) == pytest.approx(float((h / c).sqrt()))
    assert balancing_weight(hist[:1], colour[:1]) == 1.0  # one image: nothing varies
    assert balancing_weight(hist, torch.zeros_like(colour)) == 1.0


def test_a_line_and_a_stain_score_above_clean_images() -> None:
    rng = np.random.default_rng(0)

    def texture(n: int) -> np.ndarray:
        grain = rng.normal(0.5, 0.08, (n, 64, 64))
        return cv2.GaussianBlur(grain.transpose(1, 2, 0), (0, 0), 1.5).transpose(2, 0, 1)[:, None]

    train = torch.from_numpy(texture(40)).float()
    model = _fitted((1, 64, 64), train)
    edges_only = _fitted((1, 64, 64), train, colour_weight=0)
    clean = texture(10)
    lined = clean.copy()
    for img in lined[:, 0]:
        cv2.line(img, (4, 10), (60, 50), 0.1, 1)
    stained = clean.copy()
    stained[:, :, 16:40, 16:40] *= 0.6  # a dark patch: edges only at its border, a colour change inside
    darker = clean * 0.8  # the same structure, 20% darker: orientation histograms are unit length

    def scores(m: torch.nn.Module, a: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return m(torch.from_numpy(a).float()).flatten(1).topk(3 * 64, dim=1).values.mean(dim=1).numpy()

    assert scores(model, lined).min() > scores(model, clean).max()
    assert scores(model, stained).min() > scores(model, clean).max()
    np.testing.assert_allclose(scores(edges_only, darker), scores(edges_only, clean), rtol=0.05)


def test_a_scratch_on_a_shifted_surface_scores_above_clean_shifted_ones() -> None:
    """Crops of one surface at different places (a part that is not placed the same way each time): the
    position-free half finds each clean cell somewhere in the bank, so a scratch stands out; the aligned half
    alone compares cells with unrelated ones and cannot tell."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    surface = cv2.GaussianBlur(rng.normal(0.5, 0.1, (160, 160)), (0, 0), 1.5).astype(np.float32)

    def crop(scratch: bool) -> np.ndarray:
        x, y = rng.integers(0, 13, 2) * 8
        img = surface[y : y + 64, x : x + 64].copy()
        if scratch:
            a, b = (int(v) for v in rng.integers(4, 44, 2))
            cv2.line(img, (b, a), (b + 16, a + 10), 0.3, 1)
        return img[None]

    train = torch.from_numpy(np.stack([crop(False) for _ in range(40)]))
    test = torch.from_numpy(np.stack([crop(False) for _ in range(15)] + [crop(True) for _ in range(15)]))
    labels = np.r_[np.zeros(15), np.ones(15)]

    def auroc(model: torch.nn.Module) -> float:
        with torch.no_grad():
            scores = model(test).flatten(1).topk(3 * 64, dim=1).values.mean(dim=1).numpy()
        return float(roc_auc_score(labels, scores))

    assert auroc(_fitted((1, 64, 64), train)) >= 0.9
    assert auroc(_fitted((1, 64, 64), train, anywhere=0)) <= 0.75


@pytest.mark.parametrize(
    ("shape", "grid"),
    [((1, 256, 256), 16), ((3, 128, 128), 8), ((1, 96, 128), 8), ((1, 256, 192), 8), ((1, 32, 32), 8)],
)
def test_grid_auto_keeps_16_pixel_cells_where_it_can(shape: tuple[int, int, int], grid: int) -> None:
    assert build_model("grad-knn", shape, {}).params["grid"] == grid


def test_greedy_coreset_matches_farthest_first_in_float64() -> None:
    points = torch.randn(300, 5, generator=torch.Generator().manual_seed(4))
    x = points.double().numpy()
    want = [int(np.square(x - x.mean(axis=0)).sum(axis=1).argmax())]
    gap = np.square(x - x[want[0]]).sum(axis=1)
    for _ in range(39):
        want.append(int(gap.argmax()))
        gap = np.minimum(gap, np.square(x - x[want[-1]]).sum(axis=1))
    picked = greedy_coreset(points, 40)
    assert picked.tolist() == want and len(set(want)) == 40
    assert greedy_coreset(points[:30], 40).tolist() == list(range(30))  # no more rows than asked: all


def test_bank_is_thinned_evenly_and_survives_a_checkpoint(tmp_path: Path) -> None:
    from edgeanom.models.checkpoint import save_torch

    train = torch.rand(12, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    model = _fitted((3, 16, 16), train, grid=4, max_bank=5)
    assert model.params["n_bank"] == 5
    full = _fitted((3, 16, 16), train, grid=4, colour_weight=model.params["colour_weight"])
    picked = [0, 3, 6, 8, 11]  # linspace(0, 11, 5), rounded
    torch.testing.assert_close(_raw_bank(model), _raw_bank(full)[picked])
    save_torch(model, tmp_path / "model.pt")
    again = build_model("grad-knn", (3, 16, 16), dict(model.params), saved=True)
    again.load_state_dict(torch.load(tmp_path / "model.pt", weights_only=True)["state_dict"])
    x = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(again.eval()(x), model(x))


@pytest.mark.parametrize(
    ("shape", "params", "message"),
    [
        ((1, 30, 32), {}, r"image size 30x32 must be divisible by grid 8; use --image-size 24"),
        ((1, 32, 32), {"bins": 1}, "bins must be >= 2"),
        ((1, 32, 32), {"grid": 2, "topk": 5}, r"topk must be in \[1, 4\]"),
        ((2, 32, 32), {}, "needs grey or RGB images, got 2 channels"),
        ((1, 32, 32), {"max_bank": 0}, "max_bank must be >= 1"),
        ((1, 32, 32), {"nearest": "pixel"}, "nearest must be 'image' or 'cell', got 'pixel'"),
        ((1, 32, 32), {"map": "yes"}, "map must be true or false, got 'yes'"),
        ((1, 32, 32), {"colour_weight": -1}, "colour_weight must be 'auto' or a number >= 0, got -1"),
        ((1, 32, 32), {"colour_weight": "high"}, "colour_weight must be 'auto' or a number >= 0, got 'high'"),
        ((1, 32, 32), {"grid": "fine"}, "grid must be 'auto' or a whole number, got 'fine'"),
        ((1, 32, 32), {"anywhere": -1}, "anywhere must be a whole number of cells >= 0, got -1"),
        ((1, 32, 32), {"anywhere": 2.5}, "anywhere must be a whole number of cells >= 0, got 2.5"),
        ((1, 32, 32), {"nearest": "cell"}, r"anywhere needs nearest 'image' \(set --param anywhere=0"),
    ],
)
def test_bad_settings_are_one_line_errors(shape: tuple[int, int, int], params: dict, message: str) -> None:
    with pytest.raises(EdgeanomError, match=message):
        build_model("grad-knn", shape, params)


def _printed_summary(bundle: object) -> str:
    import contextlib
    import io

    from edgeanom.cli.train import print_summary

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        print_summary(bundle)
    return " ".join(err.getvalue().replace("│", " ").split())


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
    bundle = train_bundle(tmp_path / "train", out=tmp_path / "m", image_size=48, threads=1, progress=False)
    assert bundle.model_type == "grad-knn"  # the image default
    assert bundle.onnx["output"] == "error_map" and bundle.score["map"] == {
        "blur_sigma": 0.0,
        "mode": "topk_mean",
        "k": 3 * 6 * 6,
    }  # no per-pixel normalisation: the cells' distances are the map
    train_meta = bundle.meta["model"]["train"]
    assert train_meta["epochs_run"] == 0 and train_meta["leave_one_out"] is True
    # every training image is in the bank (the 20% held out too) and calibration saw all 60 of their scores
    assert bundle.meta["model"]["params"]["n_bank"] == 60
    assert bundle.meta["model"]["params"]["n_cells"] == 60 * 64  # all cells: fewer than `anywhere`
    assert bundle.threshold.stats["n"] == 60
    assert bundle.threshold.stats["out_of_fold"] == {"leave_one_out": True, "n_scores": 48}
    # the bundle's graph in ONNX Runtime gives the checkpoint's maps
    x = np.random.default_rng(1).random((5, *bundle.input_shape), dtype=np.float32)
    session = ort.InferenceSession(str(bundle.onnx_path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        want = load_model(bundle)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(session.run(["error_map"], {"input": x})[0], want, rtol=1e-5, atol=1e-6)
    summary = _printed_summary(bundle)  # what `edgeanom train` prints
    assert (
        "memory bank of 60 images and 3840 of their cells (no epochs)" in summary
        and "60 leave-one-out normal scores" in summary
    )
    report = evaluate_bundle(bundle.path, tmp_path / "test", plots=False)
    assert report["auroc"] > 0.95, report
    result = export_bundle(bundle.path, ExportOptions(fp16=True))
    assert all(r.ok is not False for r in result.parity) and (bundle.path / "model.fp16.onnx").is_file()
    fused = load_bundle(bundle.path)
    assert fused.onnx["fused"]["map_scored"] is True  # the whole score is in the exported graph
    again = evaluate_bundle(fused.path, tmp_path / "test", plots=False)
    assert abs(again["auroc"] - report["auroc"]) < 1e-6
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
    assert (
        len(flagged) >= 6
    )  # the threshold (calibrated on 60 leave-one-out scores) catches most drawn cracks


def test_video_frames_keep_their_held_out_block_out_of_the_bank(tmp_path: Path) -> None:
    """Frames in time order are near-copies of their neighbours: no leave-one-out calibration on them, and a
    stricter default false-alarm rate than for an image set."""
    from edgeanom.train.api import train_bundle

    rng = np.random.default_rng(2)
    base = cv2.GaussianBlur(rng.normal(140, 20, (48, 48)), (0, 0), 1.2)
    frames = [
        np.repeat(np.roll(base, i, axis=1).clip(0, 255).astype(np.uint8)[..., None], 3, axis=2)
        for i in range(40)
    ]
    bundle = train_bundle(frames=frames, out=tmp_path / "v", image_size=48, threads=1, progress=False)
    assert bundle.model_type == "grad-knn" and bundle.meta["data"]["split"] == "temporal"
    assert bundle.meta["model"]["train"]["leave_one_out"] is False
    assert bundle.meta["model"]["params"]["n_bank"] == 32  # the last 20% (8 frames) held out
    assert bundle.threshold.stats["n"] == 8 and bundle.threshold.stats.get("out_of_fold") is None
    assert bundle.threshold.method == "fpr:0.01"  # frames in time order: `run` decides on every one
    # the same frames handed over as an unordered image set: random split, every frame in the bank
    unordered = train_bundle(
        frames=frames, frames_ordered=False, out=tmp_path / "u", image_size=48, threads=1, progress=False
    )
    assert unordered.meta["data"]["split"] == "random"
    assert unordered.meta["model"]["train"]["leave_one_out"] is True
    assert unordered.meta["model"]["params"]["n_bank"] == 40 and unordered.threshold.stats["n"] == 40
    assert unordered.threshold.method == "fpr:0.05"  # an image set: one decision per image


def test_onnx_runtime_skips_a_training_image_with_flat_areas_too(tmp_path: Path) -> None:
    """Flat areas must give exactly zero gradients in every runtime: rounding noise there, magnified by the unit-
    length histograms, would move a training image's descriptors off its bank entry and defeat the self-skip."""
    import onnxruntime as ort

    from edgeanom.models.onnx_export import export_onnx

    gen = torch.Generator().manual_seed(4)
    train = torch.rand(12, 3, 128, 128, generator=gen)
    train[:, :, :, :64] = torch.rand(12, 3, 1, 1, generator=gen)  # the left half one flat colour per image
    model = _fitted((3, 128, 128), train)
    export_onnx(model, tmp_path / "m.onnx")
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(["error_map"], {"input": train.numpy()})[0]
    with torch.no_grad():
        want = model(train).numpy()
    assert want.max(axis=(1, 2)).min() > 0.1  # leave-one-out scores, not the image itself
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
