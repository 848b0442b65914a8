"""Bench reports: schema validation (both validators), atomic writing, loading, and `--compare` ratios."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from bundle_factory import make_bundle
from edgeanom.benchmarking import report
from edgeanom.benchmarking.compare import compare_reports
from edgeanom.benchmarking.runner import BenchPlan, run_bench
from edgeanom.cli.main import app
from edgeanom.errors import EdgeanomError

cli = CliRunner()


@pytest.fixture(scope="module")
def doc(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    bundle = make_bundle(tmp_path_factory.mktemp("rep") / "b", kind="vector")
    plan = BenchPlan(
        bundle_dir=bundle, backends=["onnxruntime"], batches=[1, 4], warmup_s=0.05, duration_s=0.2
    )
    return run_bench(plan)


def test_generated_report_is_valid(doc: dict[str, Any]) -> None:
    report.validate_report(doc)
    report._validate_minimal(doc)


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d.pop("results"), "results"),
        (lambda d: d["results"][0].pop("throughput_fps"), "throughput_fps"),
        (lambda d: d["results"][0]["latency_ms"].pop("p99"), "p99"),
        (lambda d: d["results"][0]["config"].update(precision="fp8"), "results/0/config/precision"),
        (lambda d: d.update(schema_version=2), "schema_version"),
    ],
)
def test_schema_rejects_broken_reports(doc: dict[str, Any], mutate: Any, field: str) -> None:
    bad = copy.deepcopy(doc)
    mutate(bad)
    with pytest.raises(EdgeanomError, match="bench report") as info:
        report.validate_report(bad)
    assert field in str(info.value)


def test_minimal_validator_catches_missing_fields(doc: dict[str, Any]) -> None:
    bad = copy.deepcopy(doc)
    del bad["results"][0]["stages_ms"]
    with pytest.raises(EdgeanomError, match="results/0: required field 'stages_ms'"):
        report._validate_minimal(bad)
    with pytest.raises(EdgeanomError, match="'environment' is missing"):
        report._validate_minimal({k: v for k, v in doc.items() if k != "environment"})


def test_write_and_load_round_trip(doc: dict[str, Any], tmp_path: Path) -> None:
    d = copy.deepcopy(doc)
    d["results"][0]["stability"]["cov"] = float("nan")  # NaN is not JSON: written as null
    path = report.write_report(d, tmp_path / "sub" / "r.json")
    assert [p.name for p in path.parent.iterdir()] == ["r.json"]  # no temp file left behind
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask  # like any file the user writes
    back = report.load_report(path)
    assert back["results"][0]["stability"]["cov"] is None
    assert back["results"][1]["key"] == doc["results"][1]["key"]


def test_load_report_errors(tmp_path: Path) -> None:
    with pytest.raises(EdgeanomError, match="not found"):
        report.load_report(tmp_path / "absent.json")
    (tmp_path / "bad.json").write_text("{ nope")
    with pytest.raises(EdgeanomError, match="invalid JSON"):
        report.load_report(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text(json.dumps({"kind": "something else"}))
    with pytest.raises(EdgeanomError, match="not an edgeanom bench report"):
        report.load_report(tmp_path / "other.json")


def _faster_copy(doc: dict[str, Any], factor: float) -> dict[str, Any]:
    b = copy.deepcopy(doc)
    for r in b["results"]:
        r["throughput_fps"] *= factor
        for key in ("latency_ms", "end_to_end_ms"):
            r[key] = {k: (v if k == "count" else v / factor) for k, v in r[key].items()}
    return b


def test_compare_ratios_and_environment_flags(doc: dict[str, Any]) -> None:
    b = _faster_copy(doc, 2.0)
    b["environment"]["cpu"]["model"] = "NVIDIA Carmel ARMv8.2"
    cmp = compare_reports(doc, b)
    assert [(p["a"], p["b"], p["same_config"]) for p in cmp["pairs"]] == [
        ("onnxruntime/fp32/b1", "onnxruntime/fp32/b1", True),
        ("onnxruntime/fp32/b4", "onnxruntime/fp32/b4", True),
    ]
    for p in cmp["pairs"]:
        m = p["metrics"]
        assert m["throughput_fps"]["ratio"] == pytest.approx(2.0)
        assert m["latency_p50_ms"]["ratio"] == pytest.approx(0.5)
        assert m["end_to_end_p99_ms"]["ratio"] == pytest.approx(0.5)
        assert m["energy_mj_per_frame"]["ratio"] is None
        assert p["differs"] == ["cpu"]
    assert cmp["environment_differences"][0]["field"] == "cpu"
    assert compare_reports(doc, doc)["environment_differences"] == []


def test_compare_pairs_different_backends_by_batch(doc: dict[str, Any]) -> None:
    b = _faster_copy(doc, 4.0)
    for r in b["results"]:
        r["config"].update(backend="tensorrt", precision="fp16")
        r["key"] = f"tensorrt/fp16/b{r['config']['batch']}"
        r["precision_used"] = "fp16"
    b["results"] = b["results"][:1]
    cmp = compare_reports(doc, b)
    (pair,) = cmp["pairs"]
    assert (pair["a"], pair["b"], pair["same_config"], pair["batch"]) == (
        "onnxruntime/fp32/b1",
        "tensorrt/fp16/b1",
        False,
        1,
    )
    assert "precision_used" in pair["differs"]
    assert pair["metrics"]["throughput_fps"]["ratio"] == pytest.approx(4.0)
    assert cmp["only_in_a"] == ["onnxruntime/fp32/b4"] and cmp["only_in_b"] == []


def test_compare_command(doc: dict[str, Any], tmp_path: Path) -> None:
    a = report.write_report(doc, tmp_path / "a.json")
    b_doc = _faster_copy(doc, 3.0)
    b_doc["environment"]["packages"]["onnxruntime"]["version"] = "0.0-other"
    b = report.write_report(b_doc, tmp_path / "b.json")
    out = tmp_path / "cmp.json"
    result = cli.invoke(app, ["bench", "--compare", str(a), str(b), "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "3.00x" in result.output and "0.33x" in result.output
    assert "environment differs" in result.output and "onnxruntime" in result.output
    cmp = json.loads(out.read_text())
    assert cmp["pairs"][0]["metrics"]["throughput_fps"]["ratio"] == pytest.approx(3.0)
    missing = cli.invoke(app, ["bench", "--compare", str(a), str(tmp_path / "nope.json")])
    assert missing.exit_code == 2 and "error: bench report" in missing.output
