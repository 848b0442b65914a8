"""Device-side recipes under export/: the trtexec script agrees with `edgeanom export`, the systemd unit and the
Triton example are valid."""

from __future__ import annotations

import configparser
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from edgeanom.engines.cache import Profile
from edgeanom.export.trtexec import trtexec_commands

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "export" / "jetson" / "build_engine.sh"
UNIT = ROOT / "export" / "systemd" / "edgeanom.service"

FAKE_TRTEXEC = """#!/usr/bin/env bash
if [[ "$1" == "--help" ]]; then
  echo "&&&& RUNNING TensorRT.trtexec [TensorRT v${FAKE_CODE}] # trtexec --help"
  echo "  --skipInference   Exit after the engine has been built"
  exit 0
fi
printf '%s\\n' "$@" > "$ARGS_FILE"
for a in "$@"; do case "$a" in --saveEngine=*) echo plan > "${a#--saveEngine=}";; esac; done
"""


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    """The files build_engine.sh reads: bundle.json and the ONNX graphs it names."""
    root = tmp_path / "bundle"
    root.mkdir()
    meta = {
        "schema_version": 1,
        "input": {"kind": "image", "shape": [3, 64, 64]},
        "onnx": {
            "file": "model.fused.onnx",
            "input": "input",
            "fused": {"score": "score", "error_map": "error_map"},
            "fp16_file": "model.fp16.onnx",
        },
    }
    (root / "bundle.json").write_text(json.dumps(meta))
    for name in ("model.onnx", "model.fused.onnx", "model.fp16.onnx"):
        (root / name).write_bytes(b"onnx")
    return root


def run_script(
    bundle: Path, tmp_path: Path, code: int, *args: str
) -> tuple[subprocess.CompletedProcess, list[str]]:
    fake = tmp_path / "trtexec"
    fake.write_text(FAKE_TRTEXEC)
    fake.chmod(0o755)
    args_file = tmp_path / "args.txt"
    env = {"PATH": "/usr/bin:/bin", "FAKE_CODE": str(code), "ARGS_FILE": str(args_file)}
    proc = subprocess.run(
        ["bash", str(SCRIPT), str(bundle), *args, "--trtexec", str(fake)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    argv = args_file.read_text().splitlines() if args_file.exists() else []
    return proc, argv


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize(("code", "major"), [(100300, 10), (110000, 11)])
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_build_engine_script_matches_python_commands(
    bundle: Path, tmp_path: Path, code: int, major: int, precision: str
) -> None:
    flags = ["--fp16"] if precision == "fp16" else []
    proc, argv = run_script(bundle, tmp_path, code, *flags, "--max-batch", "4", "--workspace", "512")
    assert proc.returncode == 0, proc.stderr
    plan = f"engines/model.{precision}.b4.plan"
    assert (bundle / plan).is_file() and f"TensorRT {major}" in proc.stdout
    expected = trtexec_commands(
        onnx_fp32="model.fused.onnx",
        onnx_fp16="model.fp16.onnx",
        plan=plan,
        input_name="input",
        profile=Profile.for_batch((3, 64, 64), 4),
        precision=precision,
        workspace_mb=512,
        timing_cache="engines/timing.cache",
    )[major]
    assert expected.argv is not None and argv == expected.argv[1:]


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_build_engine_script_errors(bundle: Path, tmp_path: Path) -> None:
    proc, _ = run_script(bundle, tmp_path, 110000, "--int8", str(tmp_path / "calib.cache"))
    assert proc.returncode == 1 and "Q/DQ" in proc.stderr
    proc, _ = run_script(bundle, tmp_path, 100300, "--int8", str(tmp_path / "missing.cache"))
    assert proc.returncode == 1 and "calibration cache" in proc.stderr
    (bundle / "model.fp16.onnx").unlink()
    proc, _ = run_script(bundle, tmp_path, 110000, "--fp16")
    assert proc.returncode == 1 and "edgeanom export" in proc.stderr and "--fp16" in proc.stderr
    proc, _ = run_script(tmp_path / "nothing", tmp_path, 100300)
    assert proc.returncode == 1 and "not an edgeanom bundle" in proc.stderr


def test_build_engine_int8_on_trt10_uses_the_calibration_cache(bundle: Path, tmp_path: Path) -> None:
    calib = tmp_path / "calibration.cache"
    calib.write_bytes(b"scales")
    proc, argv = run_script(bundle, tmp_path, 100300, "--int8", str(calib))
    assert proc.returncode == 0, proc.stderr
    assert {"--int8", "--fp16", f"--calib={calib}", "--layerPrecisions=score_head/*:fp32"} <= set(argv)


def test_systemd_unit_runs_edgeanom_with_restart_on_failure() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string(UNIT.read_text())
    service = unit["Service"]
    assert 'edgeanom}" run --model' in service["ExecStart"]
    assert service["Restart"] == "on-failure" and service["KillSignal"] == "SIGTERM"
    assert service["NoNewPrivileges"] == "yes" and service["ProtectSystem"] == "strict"
    assert service["User"] == "edgeanom"
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    if shutil.which("systemd-analyze"):
        proc = subprocess.run(
            ["systemd-analyze", "verify", str(UNIT)], capture_output=True, text=True, timeout=60, check=False
        )
        assert "edgeanom.service:" not in proc.stderr, proc.stderr


def test_triton_example_config_parses() -> None:
    pytest.importorskip("tritonclient.grpc.model_config_pb2")
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    text = (ROOT / "export" / "triton" / "config.pbtxt.example").read_text()
    config = text_format.Parse(text, model_config_pb2.ModelConfig())
    assert config.platform == "onnxruntime_onnx" and [o.name for o in config.output] == ["score", "error_map"]


def _fake_python(tmp_path: Path, version_ok: bool) -> Path:
    """A stand-in interpreter for tools/install_jetson.sh: logs pip calls, answers the version check."""
    log = tmp_path / "pip.log"
    fake = tmp_path / "python3"
    fake.write_text(
        "#!/usr/bin/env bash\n"
        'if [[ "$1" == "-V" ]]; then echo "Python 3.8.10"; exit 0; fi\n'
        f'if [[ "$1" == "-c" && "$2" == *version_info* ]]; then exit {0 if version_ok else 1}; fi\n'
        f'if [[ "$1" == "-m" && "$2" == "pip" ]]; then echo "$@" >> {log}; exit 0; fi\n'
        'if [[ "$1" == "-" ]]; then cat > /dev/null; exit 0; fi\n'
        "exit 0\n"
    )
    fake.chmod(0o755)
    return fake


def test_jetson_installer_refuses_python_38_and_pins_numpy_below_2(tmp_path: Path) -> None:
    script = ROOT / "tools" / "install_jetson.sh"
    old = subprocess.run(
        ["bash", str(script)],
        env={**os.environ, "PYTHON": str(_fake_python(tmp_path, version_ok=False))},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert old.returncode == 1
    assert "Python 3.8.10 is too old: edgeanom needs Python >= 3.9 (JetPack 6)" in old.stderr
    env = {
        **os.environ,
        "PYTHON": str(_fake_python(tmp_path, version_ok=True)),
        "PATH": f"{tmp_path}:/usr/bin:/bin",
    }
    (tmp_path / "edgeanom").write_text("#!/usr/bin/env bash\nexit 0\n")
    (tmp_path / "edgeanom").chmod(0o755)
    done = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    pip = (tmp_path / "pip.log").read_text()
    assert "numpy>=1.21,<2" in pip and "--no-deps ." in pip


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_build_engine_on_tensorrt_8_says_the_head_is_not_pinned(bundle: Path, tmp_path: Path) -> None:
    proc, argv = run_script(bundle, tmp_path, 8601, "--fp16")
    assert proc.returncode == 0, proc.stderr
    assert "--fp16" in argv and not any(a.startswith("--layerPrecisions") for a in argv)
    assert "cannot pin the score head to FP32 (needs TensorRT >= 9)" in proc.stderr
    note = trtexec_commands(
        onnx_fp32="model.fused.onnx",
        onnx_fp16=None,
        plan="engines/p.plan",
        input_name="input",
        profile=Profile.for_batch((3, 64, 64), 4),
        precision="fp16",
        workspace_mb=1024,
        timing_cache="engines/timing.cache",
        calib_cache=None,
        fused=True,
    )
    assert "TensorRT >= 9" in note[10].note
