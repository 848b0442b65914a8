"""Protocol code of the quality benchmarks (benchmarks/quality) on tiny generated data in the real layouts.

Never touches ../shared/data: every file here is generated in tmp_path.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

QUALITY = Path(__file__).resolve().parents[1] / "benchmarks" / "quality"
sys.path.insert(0, str(QUALITY))

import common  # noqa: E402


# --------------------------------------------------------------------------------------------- SKAB protocol
def notebook_flags(window_flags: np.ndarray, n_points: int, length: int) -> np.ndarray:
    """SKAB's Conv-AE notebook loop, written out literally (the reference for the vectorised version)."""
    out = np.zeros(n_points, dtype=bool)
    for data_idx in range(length - 1, len(window_flags) - length + 1):
        if np.all(window_flags[data_idx - length + 1 : data_idx]):
            out[data_idx] = True
    return out


def test_leaderboard_rule_hand_example() -> None:
    # 10 points, windows of 3 -> 8 windows; windows 2..5 alarm.
    wf = np.array([0, 0, 1, 1, 1, 1, 0, 0], dtype=bool)
    got = common.skab_point_flags(wf, 10, 3, "leaderboard")
    # point d in [2, 5] is flagged when windows d-2 and d-1 both alarm: d=4 (windows 2,3), d=5 (windows 3,4)
    expected = np.zeros(10, dtype=bool)
    expected[[4, 5]] = True
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(got, notebook_flags(wf, 10, 3))


def test_covering_rule_hand_example() -> None:
    wf = np.array([0, 0, 1, 1, 1, 1, 0, 0], dtype=bool)
    got = common.skab_point_flags(wf, 10, 3, "covering")
    # point p is covered by windows max(0, p-2) .. min(7, p): all alarm only for p = 4 (2,3,4) and 5 (3,4,5)
    expected = np.zeros(10, dtype=bool)
    expected[[4, 5]] = True
    np.testing.assert_array_equal(got, expected)
    # the last point is covered by window 7 alone, the first by window 0 alone
    edge = common.skab_point_flags(np.array([1, 0, 0, 0, 0, 0, 0, 1], dtype=bool), 10, 3, "covering")
    np.testing.assert_array_equal(np.flatnonzero(edge), [0, 9])


@pytest.mark.parametrize("seed", range(5))
def test_leaderboard_rule_matches_notebook_loop(seed: int) -> None:
    rng = np.random.default_rng(seed)
    length = int(rng.integers(2, 12))
    n = int(rng.integers(length, 80))
    wf = rng.random(n - length + 1) < 0.8
    np.testing.assert_array_equal(
        common.skab_point_flags(wf, n, length, "leaderboard"), notebook_flags(wf, n, length)
    )


def test_unknown_rule_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown point rule"):
        common.skab_point_flags(np.ones(3, bool), 5, 3, "nearest")


def test_binary_metrics_hand_example() -> None:
    y = np.array([1, 1, 0, 0, 1, 0, 0])
    p = np.array([1, 0, 1, 0, 1, 0, 0])
    m = common.binary_metrics(y, p)
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (2, 1, 1, 3)
    assert m["f1"] == pytest.approx(2 / (2 + (1 + 1) / 2))
    assert m["far_pct"] == pytest.approx(100 * 1 / 4)
    assert m["mar_pct"] == pytest.approx(100 * 1 / 3)


def write_skab_file(path: Path, rows: int, anomalous: slice, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    cols = [
        "Accelerometer1RMS",
        "Accelerometer2RMS",
        "Current",
        "Pressure",
        "Temperature",
        "Thermocouple",
        "Voltage",
        "Volume Flow RateRMS",
    ]
    values = rng.normal(size=(rows, len(cols)))
    labels = np.zeros(rows)
    labels[anomalous] = 1
    values[anomalous] += 6.0
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        fh.write(";".join(["datetime", *cols, "anomaly", "changepoint"]) + "\n")
        for i in range(rows):
            stamp = f"2020-03-09 10:{i // 60 % 60:02d}:{i % 60:02d}"
            fh.write(";".join([stamp, *(f"{v:.6f}" for v in values[i]), f"{labels[i]:.1f}", "0.0"]) + "\n")


def test_skab_files_and_reading(tmp_path: Path) -> None:
    write_skab_file(tmp_path / "valve1" / "10.csv", 30, slice(20, 25))
    write_skab_file(tmp_path / "valve1" / "2.csv", 30, slice(5, 9))
    write_skab_file(tmp_path / "other" / "1.csv", 30, slice(0, 0))
    write_skab_file(tmp_path / "anomaly-free" / "anomaly-free.csv", 30, slice(0, 0))
    files = common.skab_experiment_files(tmp_path)
    assert [f"{f.parent.name}/{f.stem}" for f in files] == ["other/1", "valve1/2", "valve1/10"]
    exp = common.read_skab(files[1])
    assert exp.name == "valve1/2"
    assert exp.values.shape == (30, 8)
    assert len(exp.columns) == 8
    np.testing.assert_array_equal(np.flatnonzero(exp.anomaly), [5, 6, 7, 8])


def test_read_skab_rejects_other_csv(tmp_path: Path) -> None:
    bad = tmp_path / "x.csv"
    bad.write_text("a;b\n1;2\n")
    with pytest.raises(ValueError, match="datetime"):
        common.read_skab(bad)


# --------------------------------------------------------------------------------------------- Ped2 layout
def test_ped2_labels_are_one_based_inclusive(tmp_path: Path) -> None:
    spec = {
        "videos": {
            "01": {"frames": 6, "anomalous_ranges": [[2, 3], [6, 6]]},
            "02": {"frames": 3, "anomalous_ranges": []},
        }
    }
    f = tmp_path / "labels.json"
    f.write_text(json.dumps(spec))
    labels = common.ped2_labels(f)
    np.testing.assert_array_equal(labels["01"], [False, True, True, False, False, True])
    np.testing.assert_array_equal(labels["02"], [False, False, False])


def test_ped2_labels_reject_out_of_range(tmp_path: Path) -> None:
    f = tmp_path / "labels.json"
    f.write_text(json.dumps({"videos": {"01": {"frames": 4, "anomalous_ranges": [[3, 5]]}}}))
    with pytest.raises(ValueError, match=r"outside 1\.\.4"):
        common.ped2_labels(f)


def test_ped2_videos_in_frame_order(tmp_path: Path) -> None:
    import cv2

    for vid in ("02", "01"):
        d = tmp_path / "testing" / "frames" / vid
        d.mkdir(parents=True)
        for k in (10, 0, 2):
            cv2.imwrite(str(d / f"{k:03d}.jpg"), np.full((8, 12, 3), k * 10, np.uint8))
    videos = common.ped2_videos(tmp_path, "testing")
    assert list(videos) == ["01", "02"]
    assert [p.name for p in videos["01"]] == ["000.jpg", "002.jpg", "010.jpg"]
    frames = common.read_images(videos["01"])
    assert frames[2].shape == (8, 12, 3) and abs(int(frames[2].mean()) - 100) <= 2
    with pytest.raises(FileNotFoundError, match="training"):
        common.ped2_videos(tmp_path, "training")


def test_ped2_metrics_over_the_frames_run_scores() -> None:
    """Each video's warm-up frames (no past yet: run emits nothing for them) are left out, and the causal
    smoothing starts at the first frame run scores, as the AlarmFilter of a fresh stream does."""
    import ped2
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    labels = {"01": np.r_[np.ones(4), np.zeros(20), np.ones(8)].astype(bool), "02": np.zeros(30, dtype=bool)}
    scores = {v: rng.random(len(y)) + 2.0 * y for v, y in labels.items()}
    scores["01"][:4] = 0.0  # the warm-up frames of a prediction model: a repeated past predicts itself
    got = ped2.metrics(labels, scores, 0.3, 1.0, warmup=4)
    kept = {v: (labels[v][4:], scores[v][4:]) for v in labels}
    y_all = np.concatenate([y for y, _ in kept.values()])
    run = got["frames_run_scores"]
    assert run["warmup_frames_per_video"] == 4
    assert run["auroc_pooled"] == pytest.approx(
        roc_auc_score(y_all, np.concatenate([s for _, s in kept.values()]))
    )
    smoothed = []
    for (
        _,
        s,
    ) in kept.values():  # float64 reference of the EWMA, restarted per stream at its first scored frame
        e = np.empty_like(s)
        for i, x in enumerate(s):
            e[i] = x if i == 0 else 0.3 * x + 0.7 * e[i - 1]
        smoothed.append(e)
    assert run["auroc_pooled_causal_ewma"] == pytest.approx(
        roc_auc_score(y_all, np.concatenate(smoothed)), abs=1e-9
    )
    assert (
        got["auroc_pooled"] < run["auroc_pooled"]
    )  # the unscorable anomalous warm-up frames counted as misses
    assert "frames_run_scores" not in ped2.metrics(labels, scores, 0.3, 1.0)


def test_ped2_rescore_adds_the_frames_run_scores_to_a_saved_results_file(tmp_path: Path) -> None:
    import ped2

    rng = np.random.default_rng(1)
    labels = {"01": np.r_[np.ones(3), np.zeros(10), np.ones(5)].astype(bool), "02": np.zeros(12, dtype=bool)}
    scores = {v: (rng.random(len(y)) + y).tolist() for v, y in labels.items()}
    saved = tmp_path / "old.json"
    saved.write_text(json.dumps({"settings": {"temporal_spacing": 1}, "scores_fp32": scores, "fp32": {}}))
    payload = ped2.rescore(saved, labels, 0.3)
    expected = ped2.metrics(labels, {v: np.asarray(s) for v, s in scores.items()}, 0.3, 0.0, warmup=2)
    assert (
        payload["fp32"] == expected and payload["fp32"]["frames_run_scores"]["warmup_frames_per_video"] == 2
    )
    saved.write_text("{}")
    with pytest.raises(SystemExit, match=r"old\.json: not a Ped2 results file"):
        ped2.rescore(saved, labels, 0.3)


# --------------------------------------------------------------------------------------------- MVTec layout
def test_mvtec_split_and_per_defect_auroc(tmp_path: Path) -> None:
    import cv2

    def img(folder: Path, n: int) -> None:
        folder.mkdir(parents=True)
        for i in range(n):
            cv2.imwrite(str(folder / f"{i:03d}.png"), np.zeros((8, 8, 3), np.uint8))

    img(tmp_path / "train" / "good", 3)
    img(tmp_path / "test" / "good", 2)
    img(tmp_path / "test" / "crack", 2)
    img(tmp_path / "test" / "hole", 1)
    train, test = common.mvtec_split(tmp_path)
    assert len(train) == 3
    assert [(t.defect, t.label) for t in test] == [
        ("crack", 1),
        ("crack", 1),
        ("good", 0),
        ("good", 0),
        ("hole", 1),
    ]
    labels = np.array([t.label for t in test])
    groups = np.array([t.defect for t in test])
    scores = np.array([0.9, 0.2, 0.1, 0.3, 0.8])
    per = common.per_group_auroc(labels, scores, groups)
    # crack: (0.9 beats both goods) + (0.2 beats 0.1 only) -> 3 of 4 pairs; hole: 0.8 beats both -> 1.0
    assert per == {"crack": pytest.approx(0.75), "hole": pytest.approx(1.0)}
    assert common.auroc(labels, scores) == pytest.approx(5 / 6)


# --------------------------------------------------------------------------------------------- ELPV protocol
def test_elpv_split_and_training_free_baselines() -> None:
    import elpv

    rng = np.random.default_rng(0)
    proba = np.array([0.0] * 20 + [1.0] * 6 + [0.33] * 3)  # 0.33: neither good nor certainly defective
    images = rng.integers(140, 160, size=(len(proba), 24, 24), dtype=np.uint8)
    images[proba == 1.0, 4:12, 4:20] = 20  # a dark inactive region
    types = np.array(["mono", "poly"] * 14 + ["mono"])
    train, test, labels = elpv.split(proba, seed=3)
    assert len(train) == 16 and sorted(np.r_[train, test[labels == 0]]) == list(range(20))
    assert set(test[labels == 1]) == set(range(20, 26)) and not set(train) & set(test)
    np.testing.assert_array_equal(elpv.split(proba, seed=3)[0], train)  # the split is the seed's alone
    scores = elpv.baseline_scores(images, train, test)
    expected_dark = -images[test].reshape(len(test), -1).mean(axis=1) / 255.0
    np.testing.assert_allclose(scores["darkness"], expected_dark)
    # nearest-cell distance checked against a brute-force float64 reference on the same thumbnails
    import cv2

    def thumb(i: int) -> np.ndarray:
        return cv2.resize(images[i], (8, 8), interpolation=cv2.INTER_AREA).astype(np.float64).ravel() / 255.0

    reference = [min(np.linalg.norm(thumb(t) - thumb(r)) for r in train) for t in test]
    np.testing.assert_allclose(scores["nearest_cell_8x8"], reference, rtol=1e-9)
    found = elpv.baselines(images, types, train, test, labels)
    assert found["darkness"]["all"] == 1.0 and found["nearest_cell_8x8"]["all"] == 1.0
    assert set(found["darkness"]) == {"all", "mono", "poly"}


# --------------------------------------------------------------------------------------------- plumbing
def test_missing_data_folder_exits_with_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        common.require_dir(tmp_path / "nope", "SKAB")
    assert info.value.code == common.MISSING_DATA_EXIT
    assert "SKAB data folder" in capsys.readouterr().err


def test_write_results_round_trip(tmp_path: Path) -> None:
    path = common.write_results("x", {"a": np.float32(0.5), "b": np.arange(3), "c": float("inf")}, tmp_path)
    assert json.loads(path.read_text()) == {"a": 0.5, "b": [0, 1, 2], "c": None}
    assert not list(tmp_path.glob("*.tmp"))


# --------------------------------------------------------------------------------------------- map normalisation


def test_scorer_applies_map_normalisation(tmp_path: Path) -> None:
    from edgeanom.bundle import Bundle
    from edgeanom.errors import EdgeanomError
    from edgeanom.scorer import Scorer

    rng = np.random.default_rng(0)
    x = rng.random((3, 2, 4, 5), dtype=np.float32)
    x_hat = rng.random((3, 2, 4, 5), dtype=np.float32)
    mean = rng.random((4, 5)).astype(np.float32)
    scale = (1.0 + rng.random((4, 5))).astype(np.float32)
    np.save(tmp_path / "m.npy", mean)
    np.save(tmp_path / "s.npy", scale)
    meta = {
        "model": {"type": "conv-ae"},
        "input": {"kind": "image", "shape": [2, 4, 5]},
        "threshold": {"value": 1.0},
        "score": {
            "metric": "mse",
            "map": {
                "blur_sigma": 0.0,
                "mode": "max",
                "k": 1,
                "normalize": {"mean": "m.npy", "scale": "s.npy"},
            },
        },
        "onnx": {"output": "reconstruction"},
    }
    result = Scorer(Bundle(tmp_path, meta))(x, {"reconstruction": x_hat})
    err = ((x.astype(np.float64) - x_hat) ** 2).mean(axis=1)
    expected = ((err - mean) * scale).reshape(3, -1).max(axis=1)
    np.testing.assert_allclose(result.scores, expected, rtol=1e-5, atol=1e-6)
    (tmp_path / "s.npy").unlink()
    with pytest.raises(EdgeanomError, match=r"normalize\.scale file 's\.npy' is missing"):
        Scorer(Bundle(tmp_path, meta))
    # hostile or damaged map statistics: one line each, nothing unpickled
    meta["preprocess"] = {"image": {"size": [4, 5], "color": "rgb"}}
    bad = {
        "objects": (
            lambda p: np.save(p, np.array([object()] * 20).reshape(4, 5), allow_pickle=True),
            "readable",
        ),
        "truncated": (lambda p: p.write_bytes(np.lib.format.magic(1, 0) + b"\x10\x00{'descr"), "readable"),
        "wrong shape": (lambda p: np.save(p, np.ones((5, 4), np.float32)), r"expected a 4x5 array"),
        "nan": (lambda p: np.save(p, np.full((4, 5), np.nan, np.float32)), "NaN or infinite"),
    }
    for make, match in bad.values():
        make(tmp_path / "s.npy")
        with pytest.raises(EdgeanomError, match=match):
            Scorer(Bundle(tmp_path, meta))


# --------------------------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_skab_script_end_to_end_on_generated_files(tmp_path: Path) -> None:
    """Train, export, score FP32 and FP16 through the deployed path on one generated SKAB-layout file."""
    import skab

    data = tmp_path / "skab"
    write_skab_file(data / "valve1" / "0.csv", 560, slice(470, 520))
    write_skab_file(data / "anomaly-free" / "anomaly-free.csv", 100, slice(0, 0))
    args = [
        "--data",
        str(data),
        "--work",
        str(tmp_path / "work"),
        "--results-dir",
        str(tmp_path / "res"),
        "--epochs",
        "2",
    ]
    assert skab.main(args) == 0
    result = json.loads((tmp_path / "res" / "skab.json").read_text())
    board = result["metrics_fp32"]["leaderboard"]
    assert board["tp"] + board["fp"] + board["fn"] + board["tn"] == 560
    assert result["metrics_fp16"]["leaderboard"]["tp"] + result["metrics_fp16"]["leaderboard"]["fn"] == 50
    # the bundle alarms at the protocol's UCL
    bundle = json.loads((tmp_path / "work" / "valve1_0" / "bundle.json").read_text())
    assert bundle["threshold"]["value"] == pytest.approx(result["per_file_ucl"]["valve1/0"])
    assert bundle["score"]["metric"] == "mae"


# --------------------------------------------------------------------------------------------- temporal packing
def test_frame_pred_copies_past_and_exports_to_onnx(tmp_path: Path) -> None:
    import onnxruntime as ort
    import torch

    from edgeanom.models import build_model, model_names

    assert "frame-pred" in model_names()
    torch.manual_seed(0)
    model = build_model("frame-pred", (3, 16, 20), {"width": 4}).eval()
    x = torch.rand(2, 3, 16, 20)
    with torch.no_grad():
        y = model(x)
    assert y.shape == x.shape
    assert torch.equal(y[:, :2], x[:, :2])  # the error map is the newest frame's prediction error only
    path = tmp_path / "m.onnx"
    torch.onnx.export(
        model,
        x,
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["input"],
        output_names=["reconstruction"],
        dynamic_axes={"input": {0: "n"}, "reconstruction": {0: "n"}},
    )
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})[
        0
    ]
    np.testing.assert_allclose(got, y.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "script",
    sorted(p.name for p in QUALITY.glob("*.py") if p.name != "common.py"),
)
def test_every_script_prints_its_help(script: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`--help` must work: argparse formats every help text with %, so a bare '%' breaks only this."""
    import importlib

    module = importlib.import_module(script.removesuffix(".py"))
    with pytest.raises(SystemExit) as done:
        module.parse_args(["--help"])
    assert done.value.code == 0 and "usage:" in capsys.readouterr().out
