"""`edgeanom run` refuses impossible options with one line before it opens anything (no traceback, no hang)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeanom.cli.main import app
from edgeanom.runtime.testing import window_bundle


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-frames", "0"], "--max-frames must be >= 1, got 0"),
        (["--threads", "2147483648"], "--threads must be in [0, 1024] (0: one per core), got 2147483648"),
        (["--threads", "-3"], "--threads must be in [0, 1024] (0: one per core), got -3"),
        (["--max-frames", "-5"], "--max-frames must be >= 1, got -5"),
        (["--batch", "1000000000"], "--batch must be in [1, 4096], got 1000000000"),
        (["--n", "100000000"], "--n must be <= 1048576, got 100000000"),
        (["--k", "3", "--n", "2"], "--k/--n must satisfy 1 <= k <= n, got k=3 n=2"),
        (["--duration", "0"], "--duration must be > 0 seconds, got 0.0"),
        (["--recalibrate"], "--recalibrate works through the adaptive stage"),
        (
            ["--threshold", "-1"],
            "--threshold -1 is below 0, where no mse error ever is: every sample would alarm",
        ),
        (["--adaptive", "--threshold", "1"], "--adaptive needs a score.adaptive section"),
    ],
)
def test_bad_run_options_are_one_line_errors(tmp_path: Path, args: list[str], message: str) -> None:
    bundle = window_bundle(tmp_path / "b", ["a"], 4, 1.0)
    csv = tmp_path / "s.csv"
    csv.write_text("a\n" + "\n".join(str(i % 3) for i in range(20)) + "\n")
    result = CliRunner().invoke(
        app, ["run", "--model", str(bundle.path), "--sensor", str(csv), "--status-interval", "0", *args]
    )
    assert result.exit_code == 2, result.output
    assert "error: " in result.output and message in result.output and "Traceback" not in result.output


def test_a_bundle_whose_shape_disagrees_with_its_graph_is_one_line(tmp_path: Path) -> None:
    import json

    bundle = window_bundle(tmp_path / "b", ["a"], 4, 1.0)
    meta = json.loads((bundle.path / "bundle.json").read_text())
    meta["input"]["shape"] = [6, 1]
    meta["preprocess"]["window"]["length"] = 6
    (bundle.path / "bundle.json").write_text(json.dumps(meta))
    csv = tmp_path / "s.csv"
    csv.write_text("a,label\n" + "\n".join(f"{i % 3},0" for i in range(20)) + "\n")
    for command in (["run", "--sensor", str(csv), "--status-interval", "0"], ["eval", "--data", str(csv)]):
        result = CliRunner().invoke(app, [command[0], "--model", str(bundle.path), *command[1:]])
        assert result.exit_code == 2, result.output
        assert (
            "the graph takes samples of shape [4, 1], the bundle's input.shape says [6, 1]" in result.output
        )


def test_output_folders_with_a_file_in_the_way_fail_before_the_work(tmp_path: Path) -> None:
    from edgeanom.errors import EdgeanomError
    from edgeanom.evaluate.api import evaluate_bundle
    from edgeanom.export.pipeline import ExportOptions, export_bundle

    bundle = window_bundle(tmp_path / "b", ["a"], 4, 1.0)
    csv = tmp_path / "s.csv"
    csv.write_text("a,label\n" + "\n".join(f"{i % 3},{int(i == 10)}" for i in range(30)) + "\n")
    blocker = tmp_path / "taken"
    blocker.write_text("x")
    with pytest.raises(EdgeanomError, match=r"--report .*taken: a file is in the way"):
        evaluate_bundle(bundle.path, csv, report_dir=blocker, adaptive=False)
    with pytest.raises(EdgeanomError, match=r"--triton .*taken: a file is in the way"):
        export_bundle(bundle.path, ExportOptions(triton_dir=blocker))
    assert blocker.read_text() == "x"


def test_run_defaults_to_the_precision_of_the_bundles_engine(tmp_path: Path) -> None:
    from edgeanom.runtime.launch import default_precision

    bundle = window_bundle(tmp_path / "b", ["a"], 4, 1.0)
    assert default_precision(bundle, "tensorrt") == "fp32"  # no engine yet
    bundle.meta["engines"] = [
        {"file": "engines/a.plan", "key": {"precision": "fp32"}, "created": "2026-01-01T00:00:00"},
        {"file": "engines/b.plan", "key": {"precision": "fp16"}, "created": "2026-02-01T00:00:00"},
    ]
    assert default_precision(bundle, "tensorrt") == "fp16"  # export --fp16 --engine: run uses that engine
    assert default_precision(bundle, "onnxruntime") == "fp32"
    assert default_precision(bundle, "auto") == "fp32"  # no TensorRT here: auto runs ONNX Runtime in FP32
