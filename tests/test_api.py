"""The Python API (`edgeanom.load` and the callable `train`/`export`/`evaluate`), the README's example, and
bundles written by the release before the restructure (tests/fixtures, made by make_legacy_bundles.py)."""

from __future__ import annotations

import doctest
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

import edgeanom
from edgeanom.bundle import load_bundle
from edgeanom.errors import EdgeanomError

FIXTURES = Path(__file__).parent / "fixtures"
ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["legacy_dense_ae", "legacy_conv_ae"])
def test_legacy_bundle_loads_and_scores_identically(name: str, tmp_path: Path) -> None:
    """A bundle written by edgeanom 0.1.0 before the restructure scores bit-for-bit as it did then."""
    bundle_dir = shutil.copytree(FIXTURES / name, tmp_path / name)
    expected = json.loads((FIXTURES / "expected_scores.json").read_text())[name]["scores"]
    probe = np.load(bundle_dir / "probe_input.npy")
    with edgeanom.load(bundle_dir, backend="onnxruntime", threads=1) as detector:
        got = detector.score(probe).scores
        assert detector.backend.startswith("onnxruntime")
    np.testing.assert_array_equal(got, np.asarray(expected, dtype=np.float32))


def test_legacy_bundle_runs_through_the_cli(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from edgeanom.cli.main import app

    bundle_dir = shutil.copytree(FIXTURES / "legacy_dense_ae", tmp_path / "b")
    probe = np.load(bundle_dir / "probe_input.npy")
    csv = tmp_path / "rows.csv"
    csv.write_text("\n".join(",".join(f"{v:.9g}" for v in row) for row in probe) + "\n")
    events = tmp_path / "e.jsonl"
    result = CliRunner().invoke(
        app,
        [
            "run",
            "--model",
            str(bundle_dir),
            "--sensor",
            str(csv),
            "--events",
            str(events),
            "--status-interval",
            "0",
        ],
    )
    assert result.exit_code == 0, result.output
    scores = [json.loads(line)["score"] for line in events.read_text().splitlines() if '"score"' in line]
    expected = json.loads((FIXTURES / "expected_scores.json").read_text())["legacy_dense_ae"]["scores"]
    np.testing.assert_allclose(scores, expected, rtol=1e-6)


def test_detector_flags_what_is_above_the_threshold(tmp_path: Path) -> None:
    bundle_dir = shutil.copytree(FIXTURES / "legacy_dense_ae", tmp_path / "b")
    with edgeanom.load(bundle_dir, backend="onnxruntime") as detector:
        far = np.full((1, 4), 50.0, dtype=np.float32)
        near = np.zeros((1, 4), dtype=np.float32)
        result = detector.score(np.concatenate([near, far]))
        assert result.is_anomaly.tolist() == [False, True]
        assert result.scores[1] > detector.threshold > result.scores[0]
        assert 0.0 <= result.normalised[0] < 0.5 < result.normalised[1] <= 1.0
        assert detector.is_anomaly(far).tolist() == [True]


def test_image_detector_returns_maps(tmp_path: Path) -> None:
    bundle_dir = shutil.copytree(FIXTURES / "legacy_conv_ae", tmp_path / "b")
    frames = np.load(bundle_dir / "probe_input.npy")
    with edgeanom.load(bundle_dir, backend="onnxruntime") as detector:
        result = detector.score(frames)  # an [N, H, W, 3] uint8 array, or a list of frames
    assert result.maps is not None and result.maps.shape == (3, 32, 32)


def test_load_rejects_a_bad_bundle_with_one_line(tmp_path: Path) -> None:
    bundle_dir = shutil.copytree(FIXTURES / "legacy_dense_ae", tmp_path / "b")
    meta = json.loads((bundle_dir / "bundle.json").read_text())
    meta["threshold"]["value"] = "high"
    (bundle_dir / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(EdgeanomError, match=r"threshold.value must be a finite number, got 'high'"):
        edgeanom.load(bundle_dir)


def test_train_export_evaluate_are_callable_and_still_packages() -> None:
    import edgeanom.export.pipeline  # the subpackages keep working as packages

    assert callable(edgeanom.train) and callable(edgeanom.export) and callable(edgeanom.evaluate)
    assert edgeanom.export.pipeline.export_bundle is not None


def _readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"## Python API.*?```python\n(.*?)```", text, re.S)
    assert match, "README.md has no '## Python API' section with a python example"
    return match.group(1)


@pytest.mark.slow
def test_readme_python_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    test = doctest.DocTestParser().get_doctest(_readme_example(), {}, "README", "README.md", 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    runner.run(test)
    assert runner.failures == 0 and runner.tries >= 4, (
        f"{runner.failures} of {runner.tries} README lines failed"
    )
    assert load_bundle(tmp_path / "pump-model").model_type == "dense-ae"


def test_bundles_come_from_one_builder_and_save_refuses_a_bad_one(tmp_path: Path) -> None:
    from edgeanom.bundle import BUNDLE_FILE, fixed_threshold, new_bundle, onnx_section, preprocess_section

    bundle = new_bundle(
        tmp_path / "b",
        model_type="mlp-ae",
        input_kind="vector",
        shape=(3,),
        preprocess=preprocess_section(columns=["a", "b", "c"]),
        threshold=fixed_threshold(0.5),
        onnx=onnx_section("reconstruction"),
    )
    bundle.save()
    written = json.loads((tmp_path / "b" / BUNDLE_FILE).read_text())
    # every section of the schema is present, absent steps as null
    assert set(written) >= {"schema_version", "edgeanom_version", "model", "input", "preprocess", "score"}
    assert set(written) >= {"threshold", "onnx", "checkpoint", "history", "data", "holdout"}
    assert set(written["preprocess"]) == {"image", "scaler", "window", "columns", "time_column"}
    assert load_bundle(tmp_path / "b", need_onnx=False).threshold.value == 0.5

    before = (tmp_path / "b" / BUNDLE_FILE).read_bytes()
    bundle.meta["threshold"]["value"] = float("nan")
    with pytest.raises(EdgeanomError, match=r"bundle.json: threshold.value must be a finite number, got nan"):
        bundle.save()
    assert (tmp_path / "b" / BUNDLE_FILE).read_bytes() == before  # the good file is kept
