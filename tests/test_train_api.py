"""train_bundle end to end: real files in, a bundle out, calibrated through ONNX Runtime + the C++ scorer."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edgeanom.bundle import load_bundle  # noqa: E402
from edgeanom.data import random_split  # noqa: E402
from edgeanom.errors import EdgeanomError  # noqa: E402
from edgeanom.holdout import load_holdout, sample_holdout  # noqa: E402
from edgeanom.models.checkpoint import load_model, load_sklearn  # noqa: E402
from edgeanom.train.api import train_bundle  # noqa: E402

FAST = {"progress": False, "threads": 1, "epochs": 4}


def _blobs(n=300, f=5, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, f)) * np.arange(1, f + 1) + 3.0


def test_vector_bundle_threshold_matches_float64_reference(tmp_path):
    x = _blobs()
    bundle = train_bundle(table=x, model="dense-ae", out=tmp_path / "b", **FAST)
    meta = json.loads((tmp_path / "b" / "bundle.json").read_text())
    assert {p.name for p in (tmp_path / "b").iterdir()} == {
        "bundle.json",
        "model.onnx",
        "model.pt",
        "holdout.npz",
    }
    assert meta["schema_version"] == 1 and meta["model"]["family"] == "torch"
    assert meta["onnx"] == {
        **meta["onnx"],
        "file": "model.onnx",
        "input": "input",
        "output": "reconstruction",
        "fused": None,
    }
    assert meta["input"] == {"kind": "vector", "shape": [5], "names": ["f0", "f1", "f2", "f3", "f4"]}
    assert meta["preprocess"]["scaler"]["kind"] == "standard" and meta["score"]["map"] is None
    assert [h["epoch"] for h in meta["history"]] == [1, 2, 3, 4]
    assert meta["data"]["n_train"] == 240 and meta["data"]["n_val_normal"] == 60

    # float64 reference: same split, scaler fitted on training rows only, torch model in double precision
    tr, va = random_split(len(x), 0.2, seed=0, what="rows")
    mu, sd = x[tr].mean(axis=0), x[tr].std(axis=0)
    scaled = (x[va] - mu) / sd
    model = load_model(bundle).double()
    with torch.no_grad():
        recon = model(torch.from_numpy(scaled)).numpy()
    ref = ((scaled - recon) ** 2).mean(axis=1)
    assert bundle.threshold.value == pytest.approx(np.percentile(ref, 99), rel=1e-4)
    assert bundle.threshold.stats["mean"] == pytest.approx(ref.mean(), rel=1e-4)
    assert bundle.threshold.stats["max"] == pytest.approx(ref.max(), rel=1e-4)

    # holdout.npz: every held-out row (60 < cap) and 32 training rows, preprocessed exactly like training
    assert meta["holdout"] == {"file": "holdout.npz", "n_normal": 60, "n_anomalous": 0, "n_train": 32}
    with np.load(tmp_path / "b" / "holdout.npz") as z:
        assert z["x"].dtype == np.float32 and z["x"].shape == (60, 5) and z["train_x"].shape == (32, 5)
        assert z["y"].shape == (60,) and not z["y"].any()
        np.testing.assert_allclose(z["x"], scaled, rtol=1e-5, atol=1e-6)
        train_scaled = (x[tr] - mu) / sd
        nearest = np.abs(z["train_x"][:, None, :] - train_scaled[None]).max(axis=2).min(axis=1)
        assert nearest.max() < 1e-5  # each stored training sample is one of the training rows


def _texture(rng, size=32):
    x = np.arange(size)
    img = (
        128
        + 60 * np.sin(rng.uniform(0.3, 0.5) * x[None, :] + rng.uniform(0, 6.28))
        + rng.normal(0, 4, (size, size))
    )
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def image_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    (root / "train").mkdir()
    for i in range(40):
        cv2.imwrite(str(root / "train" / f"{i:03d}.png"), cv2.cvtColor(_texture(rng), cv2.COLOR_GRAY2BGR))
    (root / "train" / "corrupt.png").write_bytes(b"garbage")
    (root / "train" / "truncated.jpg").write_bytes(cv2.imencode(".jpg", _texture(rng))[1].tobytes()[:20])
    for cls in ("good", "scratch"):
        (root / "test" / cls).mkdir(parents=True)
        for i in range(10):
            img = _texture(rng)
            if cls == "scratch":
                cv2.rectangle(img, (6 + i, 8), (14 + i, 18), 255, -1)
            cv2.imwrite(str(root / "test" / cls / f"{i:03d}.jpg"), img)
    return root


def test_image_bundle_skips_corrupt_files_and_detects_defects(tmp_path, image_data):
    from edgeanom.evaluate.api import evaluate_bundle

    bundle = train_bundle(
        image_data / "train",
        model="conv-ae",
        out=tmp_path / "img",
        image_size=32,
        channels=[8, 16],
        latent=16,
        **{**FAST, "epochs": 12},
    )
    meta = bundle.meta
    assert meta["data"]["n_skipped"] == 2 and set(meta["data"]["skipped"]) == {"corrupt.png", "truncated.jpg"}
    assert meta["input"]["shape"] == [1, 32, 32] and meta["preprocess"]["image"] == {
        "size": [32, 32],
        "color": "gray",
        "resize": "fast-area",
    }
    score_map = dict(meta["score"]["map"])
    assert score_map.pop("normalize")["mean"] == "map_mean.npy"  # on by default (test_train_map_norm.py)
    assert score_map == {"blur_sigma": 0.5, "mode": "topk_mean", "k": 10}
    report = evaluate_bundle(bundle.path, image_data / "test", report_dir=tmp_path / "report")
    assert report["auroc"] > 0.9, report
    assert bundle.threshold.method == "fpr:0.05"  # an image set's default: a promised false-alarm rate
    cal = report["calibration"]
    n = bundle.threshold.stats["n"]  # a few held-out images: the threshold is their maximum
    assert n < 12 and cal["expected_far"] == pytest.approx(1 / (n + 1)) and isinstance(cal["held"], bool)
    assert set(report["recall_at_far"]) == {"0.01", "0.05"}
    assert report["per_class"]["scratch"]["auroc_vs_normal"] == pytest.approx(report["auroc"])


def test_all_images_corrupt_is_a_clear_error(tmp_path):
    (tmp_path / "d").mkdir()
    for i in range(3):
        (tmp_path / "d" / f"{i}.png").write_bytes(b"nope")
    with pytest.raises(EdgeanomError, match=r"none of the images could be decoded \(3 unreadable files\)"):
        train_bundle(tmp_path / "d", out=tmp_path / "b", **FAST)


def _sensor_csv(path, n, spike=None, sep=","):
    rng = np.random.default_rng(len(str(path)))
    t = np.arange(n)
    values = np.stack([np.sin(t / 5), np.cos(t / 7), 0.5 * np.sin(t / 3)], axis=1) + rng.normal(
        0, 0.05, (n, 3)
    )
    labels = np.zeros(n, int)
    if spike is not None:
        values[spike : spike + 4, 1] += 3
        labels[spike : spike + 4] = 1
    lines = [sep.join(["timestamp", "a", "b", "c", "label"])]
    lines += [sep.join([f"t{i}", *(f"{v:.5f}" for v in values[i]), str(labels[i])]) for i in range(n)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_window_bundle_from_sensor_csv(tmp_path):
    from edgeanom.evaluate.api import evaluate_bundle

    train_csv = _sensor_csv(tmp_path / "train.csv", 500, sep=";")
    bundle = train_bundle(train_csv, out=tmp_path / "w", window=16, stride=2, **{**FAST, "epochs": 10})
    assert bundle.model_type == "window-ae" and bundle.input_kind == "window"
    pre = bundle.preprocess
    assert (
        pre["window"] == {"length": 16, "stride": 2}
        and pre["columns"] == ["a", "b", "c"]
        and pre["time_column"] == "timestamp"
    )
    assert bundle.input_shape == (16, 3) and bundle.meta["data"]["split"] == "temporal"
    assert bundle.score["adaptive"]["enabled"]  # a sensor stream: judged against its own history at run
    # 93 windows are fewer than the stage's warm-up, so this short file is judged by the fixed threshold
    test_csv = _sensor_csv(tmp_path / "test.csv", 200, spike=100)
    report = evaluate_bundle(bundle.path, test_csv, plots=False, adaptive=False)
    assert report["n_anomalous"] == 9 and report["auroc"] > 0.9


def test_ctrl_c_keeps_the_best_epoch(tmp_path, monkeypatch):
    from edgeanom.models.vectors import DenseAE

    original = DenseAE.training_loss
    calls = {"n": 0}

    def interrupt_in_third_epoch(self, x, loss_fn):
        if self.training:
            calls["n"] += 1
            if calls["n"] == 9:  # 240 rows / batch 64 = 4 batches per epoch: first batch of epoch 3
                raise KeyboardInterrupt
        return original(self, x, loss_fn)

    monkeypatch.setattr(DenseAE, "training_loss", interrupt_in_third_epoch)
    bundle = train_bundle(table=_blobs(), out=tmp_path / "b", **{**FAST, "epochs": 50})
    train = bundle.meta["model"]["train"]
    assert train["interrupted"] is True and train["epochs_run"] == 2
    assert train["best_epoch"] in (1, 2) and load_bundle(tmp_path / "b").threshold.value > 0


def test_divergence_keeps_the_best_epoch(tmp_path, monkeypatch):
    from edgeanom.models.vectors import DenseAE

    original = DenseAE.training_loss
    calls = {"n": 0}

    def nan_from_third_epoch(self, x, loss_fn):
        loss = original(self, x, loss_fn)
        if self.training:
            calls["n"] += 1
            if calls["n"] > 8:
                return loss * float("nan")
        return loss

    monkeypatch.setattr(DenseAE, "training_loss", nan_from_third_epoch)
    bundle = train_bundle(table=_blobs(), out=tmp_path / "b", **{**FAST, "epochs": 10})
    train = bundle.meta["model"]["train"]
    assert train["diverged"] is True and train["epochs_run"] == 2 and np.isfinite(bundle.threshold.value)


def test_overwrite_keeps_the_folder_consistent_and_config_file_with_flag_override(tmp_path):
    out = tmp_path / "b"
    first = train_bundle(table=_blobs(seed=1), out=out, **FAST)
    cfg = tmp_path / "train.yaml"
    cfg.write_text(
        "model: vae\nepochs: 5\nscaler: minmax\nthreshold: sigma:3\nparams:\n  latent: 3\n  beta: 0.5\n"
    )
    second = train_bundle(table=_blobs(seed=2), out=out, config=cfg, epochs=2, progress=False, threads=1)
    assert second.model_type == "vae" and second.meta["model"]["params"] == {
        "hidden": [64, 32],
        "latent": 3,
        "beta": 0.5,
    }
    assert len(second.meta["history"]) == 2  # the keyword beats the config file
    assert second.threshold.method == "sigma:3"
    assert second.meta["data"]["fingerprint"] != first.meta["data"]["fingerprint"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b", "train.yaml"]  # no staging folders left


def test_labelled_training_data_f1_threshold_and_errors(tmp_path):
    rng = np.random.default_rng(0)
    x = np.concatenate([_blobs(300), rng.normal(size=(20, 5)) + 12])
    y = np.r_[np.zeros(300), np.ones(20)]
    bundle = train_bundle(table=x, labels=y, out=tmp_path / "b", threshold="f1", **FAST)
    assert bundle.meta["data"]["n_val_anomalous"] == 20 and bundle.meta["data"]["n_train"] == 240
    assert bundle.threshold.method == "f1" and bundle.threshold.stats["val_f1"] > 0.9
    holdout = load_holdout(bundle)
    assert holdout is not None and (holdout.n_normal, holdout.n_anomalous) == (60, 20)
    assert holdout.x.shape == (80, 5) and holdout.y.tolist() == [0] * 60 + [1] * 20
    assert holdout.x[60:].mean() > holdout.x[:60].mean() + 3  # the anomalies, scaled like training data
    with pytest.raises(EdgeanomError, match="'f1' needs labelled anomalies"):
        train_bundle(table=_blobs(), out=tmp_path / "c", threshold="f1", **FAST)
    with pytest.raises(EdgeanomError, match="model 'conv-ae' takes image input, the data are vectors"):
        train_bundle(table=_blobs(), model="conv-ae", out=tmp_path / "c", **FAST)
    with pytest.raises(EdgeanomError, match="too little data for the validation split"):
        train_bundle(table=_blobs(6), out=tmp_path / "c", **FAST)


@pytest.mark.parametrize("model_type", ["iforest", "deep-svdd"])
def test_baseline_and_deep_svdd_bundles(tmp_path, model_type):
    from edgeanom.backends.onnxruntime import OnnxRuntimeRunner
    from edgeanom.inference import score_arrays

    x = _blobs()
    params = {"n_estimators": 20} if model_type == "iforest" else {}  # skl2onnx converts trees slowly
    bundle = train_bundle(table=x, model=model_type, out=tmp_path / "b", **FAST, **params)
    probe = np.concatenate([x[:5], x[:5] + 20])
    with OnnxRuntimeRunner(bundle.onnx_path) as runner:
        scores = score_arrays(bundle, runner, probe).scores
    assert scores[5:].min() > scores[:5].max()
    scaled = (probe - np.asarray(bundle.preprocess["scaler"]["offset"])) * np.asarray(
        bundle.preprocess["scaler"]["scale"]
    )
    if model_type == "iforest":
        assert bundle.onnx["output"] == "score" and bundle.model_family == "sklearn"
        assert bundle.score["adaptive"]["log_scores"] is False  # a decision function can be negative
        np.testing.assert_allclose(
            scores, -load_sklearn(bundle).decision_function(scaled.astype(np.float32)), rtol=1e-4, atol=1e-5
        )
    else:
        assert {k: bundle.score[k] for k in ("metric", "center", "map")} == {
            "metric": "sse",
            "center": "center.npy",
            "map": None,
        }
        assert not bundle.score["adaptive"]["enabled"]  # independent rows: no stream history to judge by
        assert bundle.score["adaptive"]["log_scores"]
        with torch.no_grad():
            z = load_model(bundle).double()(torch.from_numpy(scaled)).numpy()
        ref = ((z - bundle.center().astype(np.float64)) ** 2).sum(axis=1)
        np.testing.assert_allclose(scores, ref, rtol=1e-4)


def test_in_memory_frames_and_series(tmp_path):
    rng = np.random.default_rng(3)
    frames = [cv2.cvtColor(_texture(rng, 40), cv2.COLOR_GRAY2BGR) for _ in range(20)]
    frames[0] = np.dstack([frames[0][:, :, 0], frames[0][:, :, 1] // 2, frames[0][:, :, 2]])  # real colour
    b = train_bundle(
        frames=frames, model="conv-ae", out=tmp_path / "f", image_size=16, channels=[4], latent=4, **FAST
    )
    assert b.input_shape == (3, 16, 16) and b.meta["data"]["split"] == "temporal"
    holdout = load_holdout(b)
    assert (
        holdout is not None and holdout.x.shape == (4, 3, 16, 16) and holdout.train_x.shape == (16, 3, 16, 16)
    )
    t = np.arange(400)
    series = np.stack([np.sin(t / 4), np.cos(t / 9)], axis=1)
    w = train_bundle(
        series=series,
        model="lstm-ae",
        out=tmp_path / "s",
        window=12,
        stride=3,
        hidden=8,
        latent=4,
        holdout_samples=0,
        **FAST,
    )
    assert w.input_shape == (12, 2) and w.preprocess["columns"] == ["f0", "f1"]
    assert w.meta["holdout"] is None and not (tmp_path / "s" / "holdout.npz").exists()
    assert load_holdout(w) is None


def test_holdout_caps_samples_and_bytes():
    rng = np.random.default_rng(0)
    big = (3, 128, 128)  # 192 KiB per sample
    normal, anomalous = rng.random((100, *big), np.float32), rng.random((30, *big), np.float32)
    train = rng.random((50, *big), np.float32)
    h = sample_holdout(normal, anomalous, train, seed=1)
    assert h is not None and (h.n_normal, h.n_anomalous, len(h.train_x)) == (21, 21, 5)  # 8 MiB, 1 MiB
    assert h.x.nbytes <= 8 * 2**20 and h.train_x.nbytes <= 2**20
    assert any(np.array_equal(h.x[0], n) for n in normal) and any(
        np.array_equal(h.x[-1], a) for a in anomalous
    )
    small = sample_holdout(
        rng.random((400, 4), np.float32), rng.random((3, 4), np.float32), train[:0, 0, 0, :4]
    )
    assert small is not None and (small.n_normal, small.n_anomalous, len(small.train_x)) == (256, 3, 0)
    assert sample_holdout(normal, None, train, max_per_class=0) is None


def test_loading_a_damaged_bundle_names_the_problem(tmp_path):
    bundle = train_bundle(table=_blobs(), model="deep-svdd", out=tmp_path / "b", **FAST)
    meta = json.loads((tmp_path / "b" / "bundle.json").read_text())
    (tmp_path / "b" / "center.npy").unlink()
    with pytest.raises(EdgeanomError, match=r"score.center file 'center.npy' is missing"):
        load_bundle(tmp_path / "b").center()
    (tmp_path / "b" / "model.pt").unlink()
    with pytest.raises(EdgeanomError, match=r"checkpoint file 'model.pt' is missing"):
        load_model(bundle)
    np.savez(tmp_path / "b" / "holdout.npz", x=np.zeros((2, 3), np.float32), y=np.zeros(2, np.int8))
    with pytest.raises(EdgeanomError, match=r"holdout.npz: 'x' has shape \(2, 3\), the model takes \(N, 5\)"):
        load_holdout(bundle)
    (tmp_path / "b" / "holdout.npz").unlink()
    with pytest.raises(EdgeanomError, match=r"holdout file 'holdout.npz' is missing"):
        load_holdout(bundle)
    (tmp_path / "b" / "bundle.json").write_text(json.dumps({**meta, "schema_version": 99}))
    with pytest.raises(EdgeanomError, match="unknown schema_version 99"):
        load_bundle(tmp_path / "b")


@pytest.mark.parametrize(("side", "expected"), [(28, 32), (20, 32), (50, 64), (300, 128)])
def test_small_images_keep_their_size(tmp_path, side, expected):
    rng = np.random.default_rng(1)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(12):
        cv2.imwrite(str(folder / f"{i}.png"), rng.integers(0, 255, (side, side + 4), dtype=np.uint8))
    bundle = train_bundle(folder, model="conv-ae", out=tmp_path / "m", channels=[4, 8], latent=4, **FAST)
    assert bundle.meta["preprocess"]["image"]["size"] == [expected, expected]
    assert bundle.input_shape == (1, expected, expected)


@pytest.mark.parametrize(("side", "expected"), [(300, 256), (256, 256), (200, 192), (150, 144), (100, 112)])
def test_an_image_set_for_grad_knn_is_read_at_up_to_256(tmp_path, side, expected):
    """grad-knn's `image_set_side`: big images at 256 with 16 px cells, never blown up; frames in time order
    (here the same images handed over as ordered frames) stay at the common 128."""
    rng = np.random.default_rng(1)
    folder = tmp_path / "imgs"
    folder.mkdir()
    frames = [rng.integers(0, 255, (side, side + 4), dtype=np.uint8) for _ in range(12)]
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"{i}.png"), frame)
    bundle = train_bundle(folder, out=tmp_path / "m", threads=1, progress=False)
    assert bundle.model_type == "grad-knn" and bundle.meta["data"]["split"] == "random"
    assert bundle.meta["preprocess"]["image"]["size"] == [expected, expected]
    assert bundle.meta["model"]["params"]["grid"] == (expected // 16 if expected >= 144 else 8)
    if side == 300:
        video = train_bundle(frames=frames, out=tmp_path / "v", threads=1, progress=False)
        assert video.meta["data"]["split"] == "temporal"
        assert video.meta["preprocess"]["image"]["size"] == [128, 128]
        assert video.meta["model"]["params"]["grid"] == 8


def test_a_handful_of_good_images_is_enough_for_the_image_default(tmp_path):
    """grad-knn scores each image against the others, so three good parts train a bundle (the split keeps one
    for validation and the bank takes all three); one image cannot, and a trained model still needs two each
    side of its split. The threshold, the maximum of three leave-one-out scores, says it expects 1/4 false
    alarms, and `edgeanom train` warns that the 5% asked for is out of reach."""
    from typer.testing import CliRunner

    from edgeanom.cli.main import app

    rng = np.random.default_rng(2)
    folder = tmp_path / "three"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i}.png"), rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    bundle = train_bundle(folder, out=tmp_path / "m", threads=1, progress=False)
    assert bundle.model_type == "grad-knn" and bundle.meta["model"]["params"]["n_bank"] == 3
    tail = bundle.threshold.stats["tail"]
    assert bundle.threshold.stats["n"] == 3 and tail["expected_far"] == pytest.approx(0.25)
    result = CliRunner().invoke(
        app, ["train", "--data", str(folder), "--out", str(tmp_path / "cli")], terminal_width=200
    )
    assert result.exit_code == 0, result.output
    assert "fpr:0.05 asked for 5.0% false alarms, but 3 normal scores" in result.output
    assert "expect 25.0%" in result.output
    one = tmp_path / "one"
    one.mkdir()
    cv2.imwrite(str(one / "0.png"), rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    with pytest.raises(EdgeanomError, match=r"1 normal images .*\(need at least 1 each\)"):
        train_bundle(one, out=tmp_path / "m1", threads=1, progress=False)
    with pytest.raises(EdgeanomError, match=r"3 normal images .*\(need at least 2 each\)"):
        train_bundle(folder, model="conv-ae", out=tmp_path / "m2", **FAST)


def test_half_a_jpeg_is_corrupt_not_a_grey_training_image(tmp_path):
    from edgeanom.data import truncated_jpeg

    rng = np.random.default_rng(2)
    data = cv2.imencode(".jpg", rng.integers(0, 255, (64, 64), dtype=np.uint8))[1].tobytes()
    half = tmp_path / "half.jpg"
    half.write_bytes(data[: len(data) // 2])
    whole = tmp_path / "whole.jpg"
    whole.write_bytes(data + b"\x00" * 16)  # padding after the end marker is fine
    assert cv2.imread(str(half)) is not None  # libjpeg "decodes" it, grey below the cut
    assert truncated_jpeg(half) and not truncated_jpeg(whole)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(12):
        cv2.imwrite(str(folder / f"{i}.png"), rng.integers(0, 255, (32, 32), dtype=np.uint8))
    (folder / "cut.jpg").write_bytes(half.read_bytes())
    bundle = train_bundle(folder, model="conv-ae", out=tmp_path / "m", channels=[4, 8], latent=4, **FAST)
    assert bundle.meta["data"]["skipped"] == ["cut.jpg"]


def test_a_file_in_the_way_of_out_fails_before_training(tmp_path):
    blocker = tmp_path / "model"
    blocker.write_text("not a bundle")
    with pytest.raises(EdgeanomError, match=r"--out .*model: a file is in the way"):
        train_bundle(table=_blobs(), model="dense-ae", out=blocker, **FAST)
    assert blocker.read_text() == "not a bundle"


def test_config_and_image_size_mistakes_are_one_line(tmp_path, image_data):
    binary = tmp_path / "c.yaml"
    binary.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(EdgeanomError, match=r"c.yaml: not a text file"):
        train_bundle(table=_blobs(), config=binary, out=tmp_path / "m", **FAST)
    with pytest.raises(
        EdgeanomError, match=r"--image-size must be N or HxW with sides from 8 to 4096, got 100000"
    ):
        train_bundle(image_data / "train", out=tmp_path / "m", image_size=100000, **FAST)
