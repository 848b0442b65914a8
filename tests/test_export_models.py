"""Every model type x {FP32, FP16, fused}: tiny bundles trained through `train_bundle`, exported, and checked
against PyTorch, the C++ core and scikit-learn on real labelled data read from files (PNG folders, CSVs).

One bundle per model type is trained once per session (1 epoch, tiny data); each test exports a copy.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")
pytest.importorskip("edgeanom.scoring", reason="the C++ scoring core is not built")

from edgeanom import scoring  # noqa: E402
from edgeanom.backends.onnxruntime import OnnxRuntimeRunner  # noqa: E402
from edgeanom.bundle import load_bundle  # noqa: E402
from edgeanom.errors import EdgeanomError  # noqa: E402
from edgeanom.export.parity import compare  # noqa: E402
from edgeanom.export.pipeline import ExportOptions, export_bundle  # noqa: E402
from edgeanom.inference import score_arrays  # noqa: E402

TORCH_MODELS = [
    ("conv-ae", "image", {"channels": [4, 8], "latent": 8}),
    ("conv-vae", "image", {"channels": [4, 8], "latent": 8}),
    ("deep-svdd", "image", {"channels": [4, 8], "rep_dim": 8}),
    ("window-ae", "window", {"channels": [8, 4]}),
    ("lstm-ae", "window", {"hidden": 8, "latent": 4}),
    ("deep-svdd", "window", {"hidden": [16], "rep_dim": 4}),
    ("dense-ae", "vector", {"hidden": [16, 8], "bottleneck": 4}),
    ("vae", "vector", {"hidden": [16, 8], "latent": 3}),
    ("deep-svdd", "vector", {"hidden": [16], "rep_dim": 4}),
]
# train_bundle's own ONNX export traces the LSTM model, which warns about Python-side shape logic
pytestmark = pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
BASELINES = [("iforest", {"n_estimators": 20}), ("lof", {"n_neighbors": 5}), ("ocsvm", {})]


# --- data: normal training data in memory, labelled test data as real files --------------------------------
def _image(rng: np.random.Generator, anomalous: bool) -> np.ndarray:
    _, xx = np.mgrid[0:32, 0:32]
    img = 110 + 40 * np.sin(xx / 4.0 + rng.random()) + rng.normal(0, 4, (32, 32))
    if anomalous:
        y0, x0 = rng.integers(4, 20, 2)
        img[y0 : y0 + 10, x0 : x0 + 10] = 250
    return np.clip(img, 0, 255).astype(np.uint8)


def _series(rng: np.random.Generator, n: int) -> np.ndarray:
    t = np.arange(n)
    return np.stack([np.sin(t / 5), np.cos(t / 7), 0.1 * rng.standard_normal(n)], 1)


@pytest.fixture(scope="session")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    import cv2

    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("export-data")
    images = root / "images"
    for cls, anomalous, count in (("good", False, 12), ("scratch", True, 12)):
        (images / cls).mkdir(parents=True)
        for i in range(count):
            assert cv2.imwrite(str(images / cls / f"{i:03d}.png"), _image(rng, anomalous))
    series = _series(rng, 200)
    labels = np.zeros(200, dtype=int)
    series[120:124, 0] += 6.0  # spikes
    labels[120:124] = 1
    header = "f0,f1,f2,label"
    np.savetxt(
        root / "series.csv", np.column_stack([series, labels]), delimiter=",", header=header, comments=""
    )
    table = rng.standard_normal((80, 6))
    ylab = np.zeros(80, dtype=int)
    table[:10] += 6.0
    ylab[:10] = 1
    header = ",".join([f"f{i}" for i in range(6)] + ["label"])
    np.savetxt(root / "table.csv", np.column_stack([table, ylab]), delimiter=",", header=header, comments="")
    return {
        "train": {
            "image": {"frames": [_image(rng, False) for _ in range(24)], "image_size": 32},
            "window": {"series": _series(rng, 240), "window": 16},
            "vector": {"table": rng.standard_normal((120, 6))},
        },
        "test": {"image": images, "window": root / "series.csv", "vector": root / "table.csv"},
    }


@pytest.fixture(scope="session")
def trained(data: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from edgeanom.train.api import train_bundle

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("export-bundles")
    out = {}
    for model, kind, params in TORCH_MODELS:
        name = f"{model}-{kind}"
        train_bundle(
            model=model, out=root / name, epochs=1, progress=False, threads=1, **data["train"][kind], **params
        )
        out[name] = root / name
    for model, params in BASELINES:
        train_bundle(
            model=model, out=root / model, progress=False, threads=1, **data["train"]["vector"], **params
        )
        out[model] = root / model
    return out


def fresh_copy(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / src.name
    shutil.copytree(src, dst)
    return dst


def reference_scores(bundle_dir: Path, x: np.ndarray) -> np.ndarray:
    """The deployed score through the un-fused FP32 graph and the C++ core (what `run` did before export)."""
    bundle = load_bundle(bundle_dir)
    meta = json.loads((bundle_dir / "bundle.json").read_text())
    meta["onnx"] = {**meta["onnx"], "file": "model.onnx", "fused": None}
    from edgeanom.bundle import Bundle

    plain = Bundle(bundle.path, meta)
    with OnnxRuntimeRunner(plain.onnx_path, providers=["CPUExecutionProvider"]) as runner:
        return score_arrays(plain, runner, x, 64, preprocessed=True).scores


# --- torch models ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("model", "kind", "params"), TORCH_MODELS, ids=[f"{m}-{k}" for m, k, _ in TORCH_MODELS]
)
def test_fp32_fused_fp16_parity(
    model: str, kind: str, params: dict, trained: dict, data: dict, tmp_path: Path
) -> None:
    bundle_dir = fresh_copy(trained[f"{model}-{kind}"], tmp_path)
    result = export_bundle(bundle_dir, ExportOptions(fp16=True, data=data["test"][kind]))
    rows = {(r.what, r.inputs): r for r in result.parity}
    # FP32 graph vs PyTorch, on the bundle's training and held-out samples, the labelled files and random inputs
    assert set(result.inputs) == {"train", "held-out", "data", "random"}
    for inputs in ("train", "held-out", "data", "random"):
        r = rows[("model.onnx vs PyTorch", inputs)]
        assert r.n > 0 and r.max_rel < 1e-5, r
        expects_map = kind == "image" and model != "deep-svdd"
        # image bundles that score a map get the whole map score (blur, normalisation, top-k) in the graph
        fused_row = "fused map score vs C++ core" if expects_map else "fused score vs C++ core"
        assert rows[(fused_row, inputs)].max_rel < 1e-5, rows[(fused_row, inputs)]
        if expects_map:
            assert rows[("fused final map vs C++ core", inputs)].max_rel < 1e-5
    bundle = load_bundle(bundle_dir)
    onnx_meta = bundle.onnx
    assert onnx_meta["file"] == "model.fused.onnx" and onnx_meta["fp32_file"] == "model.onnx"
    assert onnx_meta["fp16_file"] == "model.fp16.onnx" and onnx_meta["opset"] >= 17
    assert onnx_meta["fused"] == (
        {"score": "score", "error_map": "error_map", "map_scored": True}
        if expects_map
        else {"score": "score", "error_map": None}
    )
    assert onnx_meta["parity"]["checks"] and onnx_meta["parity"]["fp16"]["n"] > 0
    for name in ("model.onnx", "model.fused.onnx", "model.fp16.onnx"):
        assert (bundle_dir / name).is_file()

    # the runtime reads fused outputs and gets the scores the un-fused graph + C++ core gave
    samples = result_samples(bundle, data["test"][kind])
    with OnnxRuntimeRunner(bundle.onnx_path, providers=["CPUExecutionProvider"]) as runner:
        assert "score" in runner.output_names and bundle.onnx["output"] not in runner.output_names
        fused_scores = score_arrays(bundle, runner, samples.x, 64, preprocessed=True).scores
    want = reference_scores(bundle_dir, samples.x)
    assert compare(want, fused_scores)[1] < 1e-5

    # independent float64 check of the fused score (not through the core)
    check_fused_against_float64(bundle, samples.x)

    # FP16: what it costs on the labelled data
    cost = result.fp16_cost
    assert cost is not None and cost["samples"] == "data"
    assert cost["spearman"] > 0.99, cost
    assert cost["score_rel_err_median"] < 1e-2, cost
    assert cost["n_anomalous"] > 0 and abs(cost["delta_auroc"]) <= 0.005, cost
    # ... and on the bundle's held-out normal samples (no labels there: no AUROC)
    held = result.fp16_costs["held-out"]
    assert held["n"] == bundle.meta["holdout"]["n_normal"] and held["spearman"] > 0.99, held
    assert held["delta_auroc"] is None and "pass --data with labels" in held["auroc_note"]
    assert onnx_meta["parity"]["fp16_by_inputs"]["held-out"]["n"] == held["n"]


def result_samples(bundle: Any, source: Path) -> Any:
    from edgeanom.export.samples import load_samples

    return load_samples(bundle, source)


def check_fused_against_float64(bundle: Any, x: np.ndarray) -> None:
    from edgeanom.export.parity import onnx_session, run_onnx
    from edgeanom.models.checkpoint import load_model

    model = load_model(bundle)
    with torch.no_grad():
        out = model(torch.from_numpy(x)).numpy().astype(np.float64)
    center = bundle.center()
    spec = bundle.score.get("map")
    if center is not None:
        want = ((out - center.astype(np.float64)) ** 2).sum(1)
    elif spec:  # the map score, with scipy's Gaussian filter as the blur's reference
        from scipy.ndimage import gaussian_filter

        maps = ((x.astype(np.float64) - out) ** 2).mean(1)
        sigma = float(spec["blur_sigma"])
        maps = np.stack([gaussian_filter(m, sigma, mode="reflect", truncate=4.0) for m in maps])
        norm = spec.get("normalize")
        if norm:
            maps = (maps - np.load(bundle.path / norm["mean"])) * np.load(bundle.path / norm["scale"])
        flat = np.sort(maps.reshape(len(x), -1), axis=1)[:, ::-1]
        want = (
            flat[:, : int(spec["k"])].mean(1) if spec.get("mode", "topk_mean") == "topk_mean" else flat[:, 0]
        )
    else:
        want = ((x.astype(np.float64) - out) ** 2).reshape(len(x), -1).mean(1)
    got = run_onnx(onnx_session(str(bundle.onnx_path)), x)["score"]
    assert compare(want, got)[1] < 1e-5


def test_no_fused_score_keeps_the_plain_graph(trained: dict, data: dict, tmp_path: Path) -> None:
    bundle_dir = fresh_copy(trained["conv-ae-image"], tmp_path)
    export_bundle(bundle_dir, ExportOptions(fused=False, fp16=True, data=data["test"]["image"]))
    bundle = load_bundle(bundle_dir)
    assert bundle.onnx["file"] == "model.onnx" and bundle.onnx["fused"] is None
    assert not (bundle_dir / "model.fused.onnx").exists()
    import onnxruntime as ort

    half = ort.InferenceSession(str(bundle_dir / "model.fp16.onnx"), providers=["CPUExecutionProvider"])
    assert [o.name for o in half.get_outputs()] == ["reconstruction"]
    assert half.get_outputs()[0].type == "tensor(float)" and half.get_inputs()[0].type == "tensor(float)"
    # exporting again without --fp16 refreshes the FP16 file instead of leaving a stale one behind
    result = export_bundle(bundle_dir, ExportOptions())
    assert any("refreshed" in n for n in result.notes)
    assert load_bundle(bundle_dir).onnx["fp16_file"] == "model.fp16.onnx"


def test_fused_map_scores_match_the_core_path(trained: dict, data: dict, tmp_path: Path) -> None:
    """Image bundles score with blurred error maps: the fused map gives the same map score."""
    bundle_dir = fresh_copy(trained["conv-ae-image"], tmp_path)
    result = export_bundle(bundle_dir, ExportOptions(data=data["test"]["image"]))
    bundle = load_bundle(bundle_dir)
    assert bundle.score["map"]
    assert all(r.max_rel < 1e-5 for r in result.parity if r.what == "fused map score vs C++ core")
    x = result_samples(bundle, data["test"]["image"]).x
    with OnnxRuntimeRunner(bundle.onnx_path, providers=["CPUExecutionProvider"]) as runner:
        fused = score_arrays(bundle, runner, x, 64, preprocessed=True, keep_maps=True)
    sigma = float(bundle.score["map"]["blur_sigma"])
    with OnnxRuntimeRunner(bundle_dir / "model.onnx", providers=["CPUExecutionProvider"]) as runner:
        recon = runner.infer(x)["reconstruction"]
    maps = scoring.error_map(x, recon, blur_sigma=sigma)
    norm = bundle.score["map"]["normalize"]  # train's default: blur first, then the per-pixel z-score
    maps = (maps - np.load(bundle_dir / norm["mean"])) * np.load(bundle_dir / norm["scale"])
    assert fused.maps is not None and compare(maps, fused.maps)[1] < 1e-5


# --- scikit-learn baselines -------------------------------------------------------------------------------
@pytest.mark.parametrize(("model", "params"), BASELINES, ids=[m for m, _ in BASELINES])
def test_baseline_onnx_matches_sklearn(
    model: str, params: dict, trained: dict, data: dict, tmp_path: Path
) -> None:
    from edgeanom.export.samples import load_samples
    from edgeanom.models.checkpoint import load_sklearn

    bundle_dir = fresh_copy(trained[model], tmp_path)
    (bundle_dir / "model.onnx").unlink()  # export re-creates it from the pickled estimator
    opts = ExportOptions(data=data["test"]["vector"], engine=True, trust_pickle=True)  # our own bundle
    result = export_bundle(bundle_dir, opts)
    assert {r.inputs for r in result.parity} == {"train", "held-out", "data", "random"}
    assert all(r.ok for r in result.parity), result.parity
    assert "TensorRT cannot run scikit-learn graphs" in (result.engine_note or "")
    bundle = load_bundle(bundle_dir)
    x = load_samples(bundle, data["test"]["vector"]).x
    want = -load_sklearn(bundle).decision_function(x.reshape(len(x), -1))
    with OnnxRuntimeRunner(bundle.onnx_path, providers=["CPUExecutionProvider"]) as runner:
        got = score_arrays(bundle, runner, x, 64, preprocessed=True).scores
    assert compare(want, got)[1] < 1e-5


def test_a_bundle_pickle_never_runs_without_trust(trained: dict, tmp_path: Path) -> None:
    """A stranger's model.pkl that would create a file when unpickled: export checks the ONNX graph alone."""
    import pickle

    bundle_dir = fresh_copy(trained["iforest"], tmp_path)
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):  # what a hostile pickle does: call anything on load
            return (Path.touch, (marker,))

    (bundle_dir / "model.pkl").write_bytes(pickle.dumps(Payload()))
    result = export_bundle(bundle_dir, ExportOptions())
    assert not marker.exists()
    assert any("model.pkl was not loaded" in n for n in result.notes)
    (bundle_dir / "model.onnx").unlink()
    with pytest.raises(
        EdgeanomError, match=r"model.onnx is missing and rebuilding it means loading model.pkl"
    ):
        export_bundle(bundle_dir, ExportOptions())
    assert not marker.exists()


def test_fp16_graph_runs_in_the_runtime_runner(trained: dict, data: dict, tmp_path: Path) -> None:
    """`run --backend onnxruntime --precision fp16` loads model.fp16.onnx (the LSTM one crashed ORT's NCHWc pass)."""
    from edgeanom.backends import open_runner

    bundle_dir = fresh_copy(trained["lstm-ae-window"], tmp_path)
    export_bundle(bundle_dir, ExportOptions(fp16=True))
    bundle = load_bundle(bundle_dir)
    x = result_samples(bundle, data["test"]["window"]).x
    with open_runner(bundle, backend="onnxruntime", precision="fp16") as runner:
        assert runner.output_names == ["score"]
        half = score_arrays(bundle, runner, x, 64, preprocessed=True).scores
    want = reference_scores(bundle_dir, x)
    assert compare(want, half)[1] < 1e-2
