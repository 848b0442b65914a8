"""`edgeanom export --triton` served by a real Triton server on 127.0.0.1 (the tritonserver of the
nvidia-pytriton wheel, CPU, Python backend, in its own venv made by `tools/setup.sh --services`, loading the
repository's Python-backend model), and `run --backend triton://HOST:PORT/MODEL` against it: the scores and
flags that come back equal `run`'s local ones, and the client example prints them too."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from _services import free_ports, stop_process
from edgeanom.errors import EdgeanomError

REPO = Path(__file__).resolve().parent.parent
TRITON_PYTHON = Path(
    os.environ.get("EDGEANOM_TRITON_PYTHON", REPO / "build" / "triton-venv" / "bin" / "python")
)
pytestmark = pytest.mark.skipif(
    not TRITON_PYTHON.is_file(),
    reason=f"no Triton server venv at {TRITON_PYTHON} (bash tools/setup.sh --services makes it)",
)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    import tritonclient.grpc as grpcclient

    from bundle_factory import grating_images, train_tiny_conv_ae
    from edgeanom.export.pipeline import ExportOptions, export_bundle

    root = tmp_path_factory.mktemp("triton")
    train_tiny_conv_ae(root / "m", grating_images(root / "train", 24))
    grating_images(
        root / "images", 12, seed=1, defect=lambda i: i % 2 == 1
    )  # defects in half the test images
    export_bundle(root / "m", ExportOptions(triton_dir=root / "repo", triton_name="edgeanom"))
    grpc, http, metrics = free_ports(3)
    log = (root / "server.log").open("w")
    server = subprocess.Popen(
        [str(TRITON_PYTHON), str(REPO / "tests" / "triton_serve.py"), str(root / "repo"), "edgeanom-python",
         str(grpc), str(http), str(metrics)],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    client = grpcclient.InferenceServerClient(url=f"127.0.0.1:{grpc}")
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if client.is_model_ready("edgeanom-python"):
                    break
            except Exception:  # not listening yet
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail(f"Triton did not start: {(root / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
        url = f"triton://127.0.0.1:{grpc}/edgeanom-python"
        yield {"root": root, "bundle": root / "m", "url": url, "grpc": grpc}
    finally:
        client.close()
        stop_process(server, timeout=20)
        log.close()


def _run(bundle: Path, images: Path, backend: str, events: Path) -> list[dict]:
    from edgeanom.cli.main import app

    args = ["run", "-m", str(bundle), "--images", str(images), "--backend", backend, "--batch", "4"]
    result = CliRunner().invoke(app, [*args, "--events", str(events), "--status-interval", "0"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    return [s for s in lines if s["kind"] == "sample"]


def test_remote_scores_and_flags_equal_local_ones(served: dict, tmp_path: Path) -> None:
    local = _run(served["bundle"], served["root"] / "images", "onnxruntime", tmp_path / "local.jsonl")
    remote = _run(served["bundle"], served["root"] / "images", served["url"], tmp_path / "remote.jsonl")
    assert len(remote) == len(local) == 12
    for a, b in zip(local, remote):
        assert a["index"] == b["index"] and a["flag"] == b["flag"]
        assert b["score"] == pytest.approx(a["score"], rel=1e-5, abs=1e-7)
    assert [s["flag"] for s in remote] == [bool(i % 2) for i in range(12)]  # the defects, flagged remotely


def test_the_client_example_prints_runs_scores(served: dict, tmp_path: Path) -> None:
    import cv2

    from edgeanom.backends.onnxruntime import OnnxRuntimeRunner
    from edgeanom.bundle import load_bundle
    from edgeanom.preprocess import Preprocessor
    from edgeanom.scorer import Scorer

    bundle = load_bundle(served["bundle"])
    frames = [cv2.imread(str(p)) for p in sorted((served["root"] / "images").glob("*.png"))[:6]]
    x = Preprocessor(bundle)(frames).copy()
    np.save(tmp_path / "batch.npy", x)
    with OnnxRuntimeRunner(bundle.onnx_path) as runner:
        want = Scorer(bundle)(x, runner.infer(x)).scores
    done = subprocess.run(
        [sys.executable, str(REPO / "export" / "triton" / "client_example.py"), "--url", f"127.0.0.1:{served['grpc']}",
         "--model", "edgeanom-python", "--bundle", str(served["bundle"]), "--npy", str(tmp_path / "batch.npy")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("sample ")]
    assert len(lines) == 6
    for line, score in zip(lines, want):
        printed = float(line.split("score ")[1].split()[0])
        assert printed == pytest.approx(float(score), rel=1e-5)
        assert ("ANOMALY" in line) == (score > bundle.threshold.value)


def test_bad_urls_and_unreachable_servers_are_one_line_errors(served: dict) -> None:
    from edgeanom.backends import open_runner
    from edgeanom.bundle import load_bundle

    bundle = load_bundle(served["bundle"])
    with pytest.raises(EdgeanomError, match=r"expected triton://HOST:PORT/MODEL"):
        open_runner(bundle, "triton://nowhere/edgeanom")
    with pytest.raises(EdgeanomError, match="no ready model 'other'"):
        open_runner(bundle, served["url"].replace("/edgeanom-python", "/other"))
    (port,) = free_ports(1)
    with pytest.raises(EdgeanomError, match=r"cannot reach the Triton server"):
        open_runner(bundle, f"triton://127.0.0.1:{port}/edgeanom")
    with pytest.raises(EdgeanomError, match="--precision fp16 is chosen when the repository is exported"):
        open_runner(bundle, served["url"], precision="fp16")
