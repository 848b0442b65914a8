"""Models: shapes, ONNX export parity with ONNX Runtime, checkpoint round trips, losses, baselines."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edgeanom.bundle import Bundle  # noqa: E402
from edgeanom.errors import EdgeanomError  # noqa: E402
from edgeanom.models import build_model, model_names  # noqa: E402
from edgeanom.models.checkpoint import TORCH_CHECKPOINT, load_model, save_torch  # noqa: E402
from edgeanom.models.onnx_export import export_onnx  # noqa: E402

torch.set_num_threads(1)

CASES = [
    ("dense-ae", (12,), {}),
    ("vae", (12,), {"latent": 3}),
    ("conv-ae", (1, 32, 32), {"channels": [4, 8], "latent": 8}),
    ("conv-ae", (3, 16, 24), {"channels": [4, 8], "latent": 0}),
    ("conv-vae", (3, 16, 16), {"channels": [4, 8], "latent": 6}),
    ("window-ae", (21, 3), {"channels": [8, 4]}),
    ("window-ae", (16, 2), {"channels": [8], "latent": 4}),
    ("lstm-ae", (10, 3), {"hidden": 8, "latent": 4}),
    ("deep-svdd", (12,), {"hidden": [16], "rep_dim": 4}),
    ("deep-svdd", (1, 16, 16), {"channels": [4, 8], "rep_dim": 4}),
    ("deep-svdd", (8, 2), {"hidden": [16], "rep_dim": 4}),
]


def _bundle(tmp_path, model) -> Bundle:
    meta = {
        "model": {"type": model.type_name, "family": "torch", "params": model.params},
        "input": {"kind": "vector", "shape": list(model.input_shape)},
        "checkpoint": TORCH_CHECKPOINT,
        "threshold": {"value": 1.0, "method": "percentile:99"},
    }
    return Bundle(tmp_path, meta)


@pytest.mark.parametrize(
    ("model_type", "shape", "params"), CASES, ids=[f"{c[0]}-{'x'.join(map(str, c[1]))}" for c in CASES]
)
def test_model_exports_and_reloads_with_identical_outputs(tmp_path, model_type, shape, params):
    import onnxruntime as ort

    torch.manual_seed(0)
    model = build_model(model_type, shape, params)
    x = torch.rand(5, *shape)
    model.train()
    loss = model.training_loss(x, torch.nn.functional.mse_loss)
    loss.backward()
    assert torch.isfinite(loss)
    model.eval()
    with torch.no_grad():
        out = model(x)
        again = model(x)
    expected_shape = (5, *shape) if model.output_name == "reconstruction" else (5, params["rep_dim"])
    assert tuple(out.shape) == expected_shape
    assert torch.equal(out, again), "eval-mode forward must be deterministic (VAE decodes its mean)"

    parity = export_onnx(model, tmp_path / "model.onnx")
    assert parity["max_abs_diff_vs_torch"] <= 1e-4
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input"]
    assert [o.name for o in session.get_outputs()] == [model.output_name]
    got = session.run(None, {"input": x.numpy()})[0]  # batch 5 != the export batch: dynamic axis works
    np.testing.assert_allclose(got, out.numpy(), atol=1e-5, err_msg="ONNX Runtime vs torch")

    save_torch(model, tmp_path / TORCH_CHECKPOINT)
    reloaded = load_model(_bundle(tmp_path, model))
    assert not reloaded.training
    with torch.no_grad():
        assert torch.equal(reloaded(x), out)


def test_vae_samples_only_in_training_mode():
    torch.manual_seed(0)
    vae = build_model("vae", (6,), {"latent": 2})
    x = torch.rand(8, 6)
    vae.eval()
    assert float(vae.training_loss(x, torch.nn.functional.mse_loss)) == float(
        vae.training_loss(x, torch.nn.functional.mse_loss)
    )
    vae.train()
    assert float(vae.training_loss(x, torch.nn.functional.mse_loss)) != float(
        vae.training_loss(x, torch.nn.functional.mse_loss)
    )


def test_deep_svdd_centre_avoids_near_zero_coordinates():
    torch.manual_seed(0)
    model = build_model("deep-svdd", (6,), {"hidden": [8], "rep_dim": 16, "eps": 0.1})
    x = torch.randn(40, 6) * 1e-3  # tiny inputs -> tiny embeddings, the guard must kick in
    model.prepare(lambda: iter([x[:20], x[20:]]))
    c = model.center
    assert torch.all(c.abs() >= 0.1 - 1e-7)
    assert not any(isinstance(m, torch.nn.Linear) and m.bias is not None for m in model.modules())


def test_model_errors_name_the_problem():
    with pytest.raises(EdgeanomError, match=r"image size 30x30 must be divisible by 4"):
        build_model("conv-ae", (1, 30, 30), {"channels": [4, 8]})
    with pytest.raises(EdgeanomError, match=r"no hyper-parameter 'latnet'.*valid: beta, hidden, latent"):
        build_model("vae", (4,), {"latnet": 3})
    with pytest.raises(EdgeanomError, match=r"unknown model 'bogus'"):
        build_model("bogus", (4,))
    assert set(model_names()) == {
        "iforest",
        "lof",
        "ocsvm",
        "dense-ae",
        "vae",
        "conv-ae",
        "conv-vae",
        "window-ae",
        "lstm-ae",
        "deep-svdd",
        "frame-pred",
        "synth-seg",
        "grad-knn",
        "feat-vae",
        "feat-svdd",
        "feat-map",
        "clip-lstm",
        "zscore",
        "ewma",
        "cusum",
        "seasonal",
    }


def test_ssim_loss():
    from edgeanom.train.losses import get_loss, ssim

    torch.manual_seed(0)
    a = torch.rand(2, 3, 24, 24)
    assert float(ssim(a, a)) == pytest.approx(1.0, abs=1e-5)
    noisy = (a + 0.2 * torch.randn_like(a)).clamp(0, 1).requires_grad_()
    loss = get_loss("ssim+l2", "image")(noisy, a)
    loss.backward()
    assert float(loss) > 0.05 and noisy.grad is not None and torch.isfinite(noisy.grad).all()
    with pytest.raises(EdgeanomError, match="needs image input"):
        get_loss("ssim+l2", "vector")


@pytest.mark.parametrize("model_type", ["iforest", "lof", "ocsvm"])
def test_baseline_onnx_score_is_negated_decision_function(tmp_path, model_type):
    import onnxruntime as ort

    from edgeanom.models.baselines import export_baseline, fit_baseline

    rng = np.random.default_rng(0)
    train = rng.normal(size=(200, 6, 2)).astype(np.float32)  # windows (T=6, C=2), flattened inside the graph
    est, params = fit_baseline(model_type, train, {}, seed=0)
    assert params
    export_baseline(est, (6, 2), tmp_path / "model.onnx")
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    probe = np.concatenate([rng.normal(size=(10, 6, 2)), rng.normal(size=(5, 6, 2)) + 4]).astype(np.float32)
    got = session.run(["score"], {"input": probe})[0]
    want = -est.decision_function(probe.reshape(15, -1))
    assert got.shape == (15,)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert got[10:].min() > np.median(got[:10]), "higher score must mean more anomalous"


def test_a_checkpoint_saved_before_a_hyper_parameter_existed_keeps_its_architecture(tmp_path) -> None:
    """conv-ae's decoder_kernel came later: a checkpoint without it was a 4x4 decoder, whatever today's
    default; the 2x2 decoder reconstructs with the same shapes and exports like the other."""
    old = build_model("conv-ae", (1, 16, 16), {"channels": [4, 8], "latent": 8, "decoder_kernel": 4}).eval()
    old.params = {k: v for k, v in old.params.items() if k != "decoder_kernel"}  # as bundles saved it then
    bundle = _bundle(tmp_path, old)
    save_torch(old, tmp_path / TORCH_CHECKPOINT)
    loaded = load_model(bundle)
    assert loaded.decoder.net[0].kernel_size == (4, 4) and loaded.params["decoder_kernel"] == 4
    x = torch.rand(2, 1, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded(x), old(x))
    fast = build_model("conv-ae", (1, 16, 16), {"channels": [4, 8], "latent": 8, "decoder_kernel": 2}).eval()
    assert all(m.kernel_size == (2, 2) for m in fast.modules() if isinstance(m, torch.nn.ConvTranspose2d))
    with torch.no_grad():
        assert fast(x).shape == x.shape
    parity = export_onnx(fast, tmp_path / "fast.onnx")
    assert parity["max_abs_diff_vs_torch"] < 1e-5, parity
    with pytest.raises(EdgeanomError, match="decoder_kernel must be 2 or 4, got 3"):
        build_model("conv-ae", (1, 16, 16), {"channels": [4, 8], "decoder_kernel": 3})


def test_frame_pred_gradient_difference_term_against_a_float64_reference() -> None:
    from edgeanom.models.frame_pred import gradient_difference

    gen = torch.Generator().manual_seed(0)
    pred, target = torch.rand(2, 1, 8, 12, generator=gen), torch.rand(2, 1, 8, 12, generator=gen)
    p, t = pred.double().numpy(), target.double().numpy()
    ref = sum(np.abs(np.abs(np.diff(p, axis=a)) - np.abs(np.diff(t, axis=a))).mean() for a in (2, 3))
    assert abs(float(gradient_difference(pred, target)) - ref) < 1e-6
    x = torch.rand(2, 3, 8, 8, generator=gen)
    plain = build_model("frame-pred", (3, 8, 8), {"width": 4}).eval()
    sharp = build_model("frame-pred", (3, 8, 8), {"width": 4, "gradient_weight": 2.0}).eval()
    sharp.load_state_dict(plain.state_dict())
    mse = lambda a, b: torch.nn.functional.mse_loss(a, b)  # noqa: E731
    with torch.no_grad():
        out = plain(x)
        assert float(plain.training_loss(x, mse)) == pytest.approx(float(mse(out, x)))
        extra = 2.0 * float(gradient_difference(out[:, -1:], x[:, -1:]))
        assert float(sharp.training_loss(x, mse)) == pytest.approx(float(mse(out, x)) + extra, rel=1e-6)
    with pytest.raises(EdgeanomError, match="gradient_weight must be >= 0"):
        build_model("frame-pred", (3, 8, 8), {"gradient_weight": -1})
