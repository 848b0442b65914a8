"""evaluate_bundle and `edgeanom eval`: the deployed path on frame folders, tables and the CLI."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

pytest.importorskip("torch")

from typer.testing import CliRunner

from edgeanom.cli.main import app
from edgeanom.errors import EdgeanomError
from edgeanom.evaluate.api import evaluate_bundle
from edgeanom.train.api import train_bundle

FAST = {"progress": False, "threads": 1}


def _frame(rng, bright_box=False):
    img = np.clip(100 + rng.normal(0, 6, (24, 24)), 0, 255).astype(np.uint8)
    if bright_box:
        cv2.rectangle(img, (8, 8), (15, 15), 255, -1)
    return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)


def test_frame_folders_with_ped2_labels_scored_like_the_runtime(tmp_path):
    from edgeanom.backends.onnxruntime import OnnxRuntimeRunner
    from edgeanom.bundle import load_bundle
    from edgeanom.inference import score_arrays

    rng = np.random.default_rng(0)
    bundle = train_bundle(
        frames=[_frame(rng) for _ in range(30)],
        out=tmp_path / "b",
        model="conv-ae",
        image_size=24,
        channels=[4, 8],
        latent=8,
        epochs=6,
        **FAST,
    )
    test = tmp_path / "test"
    for seq in ("01", "02"):
        (test / seq).mkdir(parents=True)
        for i in range(8):
            cv2.imwrite(str(test / seq / f"{i:03d}.jpg"), _frame(rng, bright_box=seq == "01" and 3 <= i <= 6))
    labels = tmp_path / "labels.json"
    labels.write_text(
        json.dumps({"videos": {"01": {"anomalous_ranges": [[4, 7]]}, "02": {"anomalous_ranges": []}}})
    )
    report = evaluate_bundle(tmp_path / "b", test, labels=labels, report_dir=tmp_path / "rep")
    assert report["n_anomalous"] == 4 and report["n_normal"] == 12 and report["auroc"] > 0.95
    assert report["model"]["type"] == "conv-ae" and report["data"]["n_skipped"] == 0

    # the same frames through the runtime's building blocks give the same scores as the report's CSV
    frames = [cv2.imread(str(p)) for seq in ("01", "02") for p in sorted((test / seq).iterdir())]
    with OnnxRuntimeRunner(bundle.onnx_path) as runner:
        direct = score_arrays(load_bundle(tmp_path / "b"), runner, frames, batch_size=5).scores
    csv_scores = [
        float(r.split(",")[-1]) for r in (tmp_path / "rep" / "scores.csv").read_text().splitlines()[1:]
    ]
    np.testing.assert_allclose(csv_scores, direct, rtol=1e-6)


def test_eval_errors(tmp_path):
    rng = np.random.default_rng(1)
    train_bundle(table=rng.normal(size=(100, 3)), out=tmp_path / "b", epochs=2, **FAST)
    (tmp_path / "t.csv").write_text("f0,f1,f2\n1,2,3\n4,5,6\n")
    with pytest.raises(EdgeanomError, match=r"eval needs labels: .*t\.csv has no label column"):
        evaluate_bundle(tmp_path / "b", tmp_path / "t.csv")
    (tmp_path / "u.csv").write_text("f0,f1,label\n1,2,0\n")
    with pytest.raises(EdgeanomError, match=r"column\(s\) 'f2' not found"):
        evaluate_bundle(tmp_path / "b", tmp_path / "u.csv")
    with pytest.raises(EdgeanomError, match="no model bundle at"):
        evaluate_bundle(tmp_path / "missing", tmp_path / "t.csv")


def test_cli_train_then_eval(tmp_path):
    rng = np.random.default_rng(2)
    normal = rng.normal(size=(200, 3))
    train_csv = tmp_path / "train.csv"
    train_csv.write_text("a,b,c\n" + "".join(f"{x:.4f},{y:.4f},{z:.4f}\n" for x, y, z in normal))
    test_rows = np.concatenate([rng.normal(size=(40, 3)), rng.normal(size=(10, 3)) + 6])
    test_csv = tmp_path / "test.csv"
    test_csv.write_text(
        "a,b,c,label\n"
        + "".join(f"{r[0]:.4f},{r[1]:.4f},{r[2]:.4f},{int(i >= 40)}\n" for i, r in enumerate(test_rows))
    )
    runner = CliRunner()
    out = tmp_path / "bundle"
    res = runner.invoke(
        app,
        [
            "train",
            "--data",
            str(train_csv),
            "--out",
            str(out),
            "--model",
            "vae",
            "--epochs",
            "3",
            "--threads",
            "1",
            "--latent",
            "2",
            "--param",
            "hidden=16,8",
            "-q",
        ],
    )
    assert res.exit_code == 0, res.output
    meta = json.loads((out / "bundle.json").read_text())
    assert meta["model"]["params"] == {"hidden": [16, 8], "latent": 2, "beta": 1.0}
    assert meta["preprocess"]["scaler"]["kind"] == "minmax"
    res = runner.invoke(
        app,
        [
            "eval",
            "--model",
            str(out),
            "--data",
            str(test_csv),
            "--report",
            str(tmp_path / "rep"),
            "--threads",
            "1",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "auroc" in res.output and "report written to" in res.output
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert report["n_anomalous"] == 10 and report["auroc"] > 0.95

    res = runner.invoke(app, ["eval", "--model", str(out), "--data", str(tmp_path / "nope.csv")])
    assert res.exit_code == 2 and "error: data path" in res.output
    res = runner.invoke(
        app, ["train", "--data", str(train_csv), "--out", str(out), "--threshold", "median:5", "-q"]
    )
    assert res.exit_code == 2 and "error: threshold method 'median:5'" in res.output
    res = runner.invoke(app, ["train", "--data", str(train_csv), "--param", "latent", "-q"])
    assert res.exit_code == 2 and "expected NAME=VALUE" in res.output


def test_a_video_cut_short_is_reported_not_silently_scored_in_part(tmp_path):
    from typer.testing import CliRunner

    from edgeanom.cli.main import app
    from edgeanom.demo import write_video
    from edgeanom.runtime.testing import image_bundle

    frames = [np.full((32, 32, 3), 100 + (40 if 8 <= i < 12 else 0), np.uint8) for i in range(20)]
    whole = write_video(tmp_path / "clip.avi", frames, fps=10.0)
    cut = tmp_path / "cut" / "clip.avi"
    cut.parent.mkdir()
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) * 6 // 10])  # a copy interrupted at 60%
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join("1" if 8 <= i < 12 else "0" for i in range(20)) + "\n")
    bundle = image_bundle(tmp_path / "m", np.full((32, 32, 3), 100, np.uint8), 0.01, color="rgb")
    result = CliRunner().invoke(
        app, ["eval", "--model", str(bundle.path), "--data", str(cut.parent), "--labels", str(labels)]
    )
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())  # rich wraps long lines
    assert (
        "warning: clip.avi: decoded 2 of 20 frames (cut short or damaged); frames past the cut were not"
        in out
    )
    assert "warning: AUROC n/a: the 2 scored samples hold 0 anomalous and 2 normal ones" in out
