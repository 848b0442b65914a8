"""One meaning per flag: the bundle is --model in every command, the model type is train's --model-type, batch
size is --batch; the old spellings still work for one release and say so in one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeanom.cli.main import app

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture()
def bundle(tmp_path: Path) -> Path:
    return shutil.copytree(FIXTURES / "legacy_dense_ae", tmp_path / "b")


@pytest.mark.parametrize("command", ["run", "eval", "export", "bench"])
def test_every_command_takes_the_bundle_as_model(command: str) -> None:
    result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "--model" in result.output and "Model bundle directory" in result.output


def test_train_names_the_model_type_and_lists_the_registry() -> None:
    result = CliRunner().invoke(app, ["train", "--help"], terminal_width=400)
    assert "--model-type" in result.output
    for name in ("conv-ae", "window-ae", "deep-svdd", "frame-pred", "iforest"):
        assert name in result.output


def test_old_spellings_still_work_with_a_deprecation_line(bundle: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    report = tmp_path / "r.json"
    result = runner.invoke(
        app,
        [
            "bench",
            str(bundle),
            "--backend",
            "onnxruntime",
            "--batch",
            "1,2",
            "--warmup-s",
            "0",
            "--duration-s",
            "0.2",
            "--json",
            str(report),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "the bundle as a positional argument is deprecated" in result.output
    assert "--json FILE is deprecated" in result.output and report.is_file()
    assert "--batch 1,2 is deprecated and goes in the next release; use --batch 1 --batch 2" in result.output
    assert json.loads(report.read_text())["settings"]["batches"] == [1, 2]


def test_train_old_model_flag_is_the_model_type(tmp_path: Path) -> None:
    csv = tmp_path / "t.csv"
    csv.write_text("a,b\n" + "\n".join(f"{i % 7},{i % 5}" for i in range(200)) + "\n")
    out = tmp_path / "m"
    result = CliRunner().invoke(
        app,
        [
            "train",
            "--data",
            str(csv),
            "--model",
            "iforest",
            "--batch-size",
            "8",
            "--out",
            str(out),
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (
        "train --model TYPE is deprecated" in result.output and "--batch-size is deprecated" in result.output
    )
    assert '"type": "iforest"' in (out / "bundle.json").read_text()
